import { ApplicationFailure, Context } from '@temporalio/activity';
import { throwIfCancelled, whileNotCancelled } from './cancellation';
import type { SimEvent, SimPatch, SimRecord } from '../record';
import { FailureType } from '../shared/failures';
import { redact, type Logger } from '../shared/log';
import { applyPatch, canonicalJson } from '../record';
import type { CommitItem, Entry, FailureItem, StateStore } from '../state/store';
import { DEFAULT_DEVICE_ID_TEMPLATE, deviceIdFor } from '../targets/device-id';
import type { EventItem, PublishItem, PublishOutcome, Target } from '../targets/target';
import type { PublishInput, PublishResult } from './types';

export interface ConfiguredTarget {
  target: Target;
  /** @default '{iccid}' */
  deviceIdTemplate?: string;
  /**
   * Tell the target when a SIM leaves the group (`monitoring: "off"` and a `leftGroup` event; `monitoring: "on"`
   * on a SIM's first publish): the target's `leftGroupNotice` setting. @default false
   */
  leftGroupNotice?: boolean;
}

export interface PublishDeps {
  store: StateStore;
  targets: ReadonlyMap<string, ConfiguredTarget>;
  logger: Logger;
  /** SIMs handed to a target in one call, at most. @default 500 */
  batchSize?: number;
  /** Batches in flight at once. Bounds the SIMs a crash may send twice: batchSize × inFlightBatches. @default 4 */
  inFlightBatches?: number;
  /**
   * How long one batch should last at the target's rate (`Target.itemsPerSecond`): batches shrink below
   * `batchSize` for slow targets, so progress is committed every few seconds. @default 5000
   */
  batchMs?: number;
  onOutcomes?: (group: string, target: string, outcomes: PublishOutcome[], ms: number) => void;
}

interface Retry {
  entries: Entry[];
  /** sendBatch's own result only (not merged): the SIMs of its batch that left pending, acknowledged or failed. */
  gone?: string[];
  delayMs: number;
  reason: string;
  /** Of `entries`, those the target refused because it is paused as a whole, until `pausedUntil`. */
  paused: number;
  pausedUntil: number;
  pauseReason: string;
}

const NO_RETRY: Retry = { entries: [], delayMs: 0, reason: '', paused: 0, pausedUntil: 0, pauseReason: '' };

/** The heartbeat details: progress for `kite-cc sync --wait`, and the cycle's counts for the next attempt. */
interface PublishProgress {
  phase: 'publish';
  target: string;
  /** SIMs acknowledged in this cycle so far, over all attempts. */
  done: number;
  failed: number;
  throttled: number;
  /** SIMs handed to the target and not yet answered. */
  inFlight: number;
  /** Connectivity events acknowledged in this cycle so far, over all attempts. */
  eventsSent?: number;
}

/** Heartbeat at most this often on the timer, however long the heartbeat timeout. */
const MAX_BEAT_INTERVAL_MS = 5_000;

/** SIMs per batch: `batchMs` worth of the target's rate, shared by the batches in flight, within 1..batchSize. */
export function batchSizeFor(
  target: Pick<Target, 'itemsPerSecond'>,
  options: { batchSize: number; inFlightBatches: number; batchMs: number }
): number {
  const rate = target.itemsPerSecond;
  if (!rate || !Number.isFinite(rate)) return options.batchSize;
  const paced = Math.floor((rate * options.batchMs) / 1000 / options.inFlightBatches);
  return Math.max(1, Math.min(options.batchSize, paced));
}

/**
 * Sends a target's pending patches with bounded concurrency. After the target acknowledges a SIM, records it as
 * published and drops its pending patch in one atomic step; a crash resumes with only what is left, so a SIM
 * is never lost and at most the in-flight ones are sent twice. Permanent failures are recorded and skipped.
 *
 * One pass per attempt: SIMs the target could not take now (throttled, transient) stay pending and the attempt
 * fails with TargetUnavailable, so Temporal's retry policy is the only retry layer above the target's own
 * honouring of Retry-After. It heartbeats on a timer (at most every heartbeat timeout / 3) while batches are in
 * flight, so a slow target never looks like a dead worker.
 */
export function createPublishActivity(deps: PublishDeps) {
  const options = {
    batchSize: deps.batchSize ?? 500,
    inFlightBatches: deps.inFlightBatches ?? 4,
    batchMs: deps.batchMs ?? 5_000,
  };
  return async function publishChanges({ group, cycle, target: name }: PublishInput): Promise<PublishResult> {
    const configured = deps.targets.get(name);
    if (!configured) {
      const known = [...deps.targets.keys()].join(', ') || 'none';
      throw ApplicationFailure.nonRetryable(
        `target ${name} is not configured on this worker (configured: ${known})`,
        FailureType.UnknownTarget
      );
    }
    // The cycle's diff is done once it publishes: nothing reads its snapshot any more (the next fetch stages its
    // own), so it does not stay in Redis until then, a record per changed SIM and a marker per unchanged one.
    await deps.store.dropSnapshot(group, cycle);
    const ctx = Context.current();
    const before = ctx.info.heartbeatDetails as Partial<PublishProgress> | undefined;
    const counts = {
      published: before?.done ?? 0,
      failed: before?.failed ?? 0,
      throttled: before?.throttled ?? 0,
      inFlight: 0,
      eventsSent: before?.eventsSent ?? 0,
    };
    const send = (entries: Entry[]) =>
      sendBatch(deps, group, name, configured, entries, counts, ctx.cancellationSignal);
    const heartbeat = () =>
      ctx.heartbeat({
        phase: 'publish',
        target: name,
        done: counts.published,
        failed: counts.failed,
        throttled: counts.throttled,
        inFlight: counts.inFlight,
        eventsSent: counts.eventsSent,
      } satisfies PublishProgress);

    heartbeat(); // progress shows `publish` at once, before the first batch is acknowledged
    if (ctx.info.attempt > 1) {
      deps.logger.warn(
        'publish resumed after a failed attempt (a worker crash, a heartbeat timeout or a target fault)',
        {
          activity: ctx.info.activityType,
          group,
          target: name,
          attempt: ctx.info.attempt,
        }
      );
    }
    const timeoutMs = ctx.info.heartbeatTimeoutMs || 3 * MAX_BEAT_INTERVAL_MS;
    const timer = setInterval(heartbeat, Math.min(MAX_BEAT_INTERVAL_MS, Math.floor(timeoutMs / 3)));
    let retry: Retry = NO_RETRY;
    try {
      await whileNotCancelled(() =>
        sendEachPendingOnce(deps, group, name, batchSizeFor(configured.target, options), async (entries) => {
          const again = await send(entries); // awaited first: batches finish concurrently
          retry = mergeRetry(retry, again);
          heartbeat();
          return again.gone ?? [];
        })
      );
      // Events after the records: a consumer reading an event finds the state it speaks of already there.
      await whileNotCancelled(async () => {
        retry = mergeRetry(retry, await sendEvents(deps, group, name, configured, counts, ctx.cancellationSignal));
      });
    } finally {
      clearInterval(timer);
    }
    heartbeat(); // the counts so far reach the next attempt, if this one fails
    const pending = await deps.store.pendingCount(group, name);
    // The target is paused as a whole (e.g. a daily quota, until 00:00 UTC), and that is all that is left: the
    // step ends with the changes pending and says until when, instead of retrying for hours and holding the
    // group's other targets back. The next cycle tries again; the target itself refuses cheaply until then.
    const pausedUntil = retry.entries.length && retry.paused === retry.entries.length ? retry.pausedUntil : 0;
    if (pausedUntil) {
      const failing = await deps.store.failingCount(group, name);
      const { published, failed, throttled, eventsSent } = counts;
      const pause = { pausedUntil, pauseReason: retry.pauseReason };
      deps.logger.warn('target paused: changes stay pending', { group, target: name, pending, ...pause });
      return { published, failed, throttled, failing, pending, ...(eventsSent ? { eventsSent } : {}), ...pause };
    }
    if (retry.entries.length) {
      throw ApplicationFailure.create({
        message: `${retry.entries.length} SIMs not yet acknowledged by target ${name}: ${retry.reason}`,
        type: FailureType.TargetUnavailable,
        nextRetryDelay: retry.delayMs > 0 ? retry.delayMs : undefined,
        details: [{ ...counts, pending }],
      });
    }
    const failing = await deps.store.failingCount(group, name);
    const { published, failed, throttled, eventsSent } = counts;
    deps.logger.info('published changes', {
      group,
      target: name,
      published,
      failed,
      throttled,
      failing,
      pending,
      eventsSent,
    });
    return { published, failed, throttled, failing, pending, ...(eventsSent ? { eventsSent } : {}) };
  };
}

/**
 * Hands every pending patch to `send` once, in batches, with at most `inFlightBatches` batches at a time. `send`
 * returns the SIMs of its batch that left the pending hash (acknowledged, or failed for good).
 */
async function sendEachPendingOnce(
  deps: PublishDeps,
  group: string,
  name: string,
  batchSize: number,
  send: (entries: Entry[]) => Promise<string[]>
): Promise<void> {
  // HSCAN may return an entry again while the hash shrinks, but never one deleted before the call was made. So a
  // SIM is remembered while its batch is in flight, after it while it stays pending, and until the scan's next
  // call is made: its page is only asked for once the loop's body is done. Remembering every SIM sent held a
  // million ICCs (61 MB of the worker's heap) in a first sync of a million.
  const seen = new Set<string>();
  let left: string[] = [];
  const inFlight = new Set<Promise<void>>();
  try {
    for await (const entries of deps.store.scanPending(group, name, batchSize)) {
      const fresh = entries.filter(([iccid]) => !seen.has(iccid) && seen.add(iccid));
      for (let i = 0; i < fresh.length; i += batchSize) {
        throwIfCancelled(); // stop between batches: what was sent is committed, the rest stays pending
        const tracked = send(fresh.slice(i, i + batchSize))
          .then((gone) => void left.push(...gone))
          .finally(() => inFlight.delete(tracked));
        tracked.catch(() => undefined); // observed by Promise.race/all below; this keeps a late rejection handled
        inFlight.add(tracked);
        if (inFlight.size >= (deps.inFlightBatches ?? 4)) await Promise.race(inFlight);
      }
      // Gone from pending before the next page is asked for: no later page holds them.
      for (const iccid of left) seen.delete(iccid);
      left = [];
    }
    await Promise.all(inFlight);
  } finally {
    // Also when cancelled or failing: let sent batches settle and commit, so none of them is sent again.
    await Promise.allSettled(inFlight);
  }
}

async function sendBatch(
  deps: PublishDeps,
  group: string,
  name: string,
  { target, deviceIdTemplate, leftGroupNotice }: ConfiguredTarget,
  entries: Entry[],
  counts: { published: number; failed: number; throttled: number; inFlight: number },
  signal: AbortSignal
): Promise<Retry> {
  const { store } = deps;
  const published = await store.publishedRecords(
    group,
    name,
    entries.map(([iccid]) => iccid)
  );
  const items: PublishItem[] = [];
  const merged = new Map<string, string>();
  const failures: FailureItem[] = [];
  entries.forEach(([iccid, patchJson], i) => {
    const before = published[i] ? (JSON.parse(published[i]!) as SimRecord) : undefined;
    const patch = JSON.parse(patchJson) as SimPatch;
    const after = applyPatch(before, patch);
    merged.set(iccid, canonicalJson(after));
    try {
      const deviceId = deviceIdFor(deviceIdTemplate ?? DEFAULT_DEVICE_ID_TEMPLATE, after);
      // A first publish says the SIM is monitored: it may have left the group and joined again since `off`.
      const on = leftGroupNotice && !before ? ({ monitoring: 'on' } as const) : {};
      items.push({ iccid, deviceId, patch: { ...patch, ...on }, full: !before, state: { ...after, ...on } });
    } catch (err) {
      failures.push({ iccid, patch: patchJson, reason: (err as Error).message });
    }
  });

  // From here until the commit, what the target holds for these SIMs is unknown: a crash, a stop or a disable in
  // between leaves the mark, and the next diff re-sends these keys (even if Kite's values flipped back).
  const handed = new Set(items.map((item) => item.iccid));
  await store.markSent(
    group,
    name,
    entries.filter(([iccid]) => handed.has(iccid))
  );
  const started = Date.now();
  counts.inFlight += items.length;
  const outcomes = await publishSafely(target, items, signal, group).finally(() => (counts.inFlight -= items.length));
  deps.onOutcomes?.(group, name, outcomes, Date.now() - started);

  const patches = new Map(entries);
  const commits: CommitItem[] = [];
  const retry: Retry = { ...NO_RETRY, entries: [] };
  for (const outcome of outcomes) {
    const patch = patches.get(outcome.iccid);
    if (patch === undefined) continue;
    if (outcome.status === 'ok') commits.push({ iccid: outcome.iccid, patch, merged: merged.get(outcome.iccid)! });
    else if (outcome.status === 'permanent') failures.push({ iccid: outcome.iccid, patch, reason: outcome.reason });
    else {
      retry.entries.push([outcome.iccid, patch]);
      retry.reason = outcome.reason;
      if (outcome.status === 'throttled') {
        counts.throttled++;
        retry.delayMs = Math.max(retry.delayMs, outcome.retryAfterMs);
        if (outcome.pausedUntil) {
          retry.paused++;
          retry.pausedUntil = Math.max(retry.pausedUntil, outcome.pausedUntil);
          retry.pauseReason = outcome.reason;
        }
      }
    }
  }
  // Read the awaited counts first: `counts.x += await …` would add to a stale value while other batches run.
  const [committed, failed] = await Promise.all([
    store.commitPublished(group, name, commits),
    store.recordFailures(group, name, failures),
  ]);
  counts.published += committed;
  counts.failed += failed;
  return { ...retry, gone: [...commits.map((c) => c.iccid), ...failures.map((f) => f.iccid)] };
}

/**
 * Sends the target's queued connectivity events, a batch at a time; drops each SIM's events once the target
 * acknowledged them, or refused them for good (logged: events are not retried forever). A crash before the
 * drop sends them again with the same ids: at least once, duplicates only for the SIMs in flight. With
 * `leftGroupNotice`, a SIM whose events say it left the group first gets `monitoring: "off"` as its state, and its
 * events wait (with that notice) until the target took the notice.
 */
async function sendEvents(
  deps: PublishDeps,
  group: string,
  name: string,
  { target, deviceIdTemplate, leftGroupNotice }: ConfiguredTarget,
  counts: { throttled: number; eventsSent: number },
  signal: AbortSignal
): Promise<Retry> {
  const retry: Retry = { ...NO_RETRY, entries: [] };
  const seen = new Set<string>();
  for await (const page of deps.store.scanEvents(group, name, deps.batchSize ?? 500)) {
    throwIfCancelled();
    const entries = page.filter(([iccid]) => !seen.has(iccid) && seen.add(iccid));
    const sent = new Map(entries);
    const done: Entry[] = [];
    const items: EventItem[] = [];
    for (const [iccid, json] of entries) {
      const events = JSON.parse(json) as SimEvent[];
      const last = events[events.length - 1];
      try {
        const deviceId = deviceIdFor(deviceIdTemplate ?? DEFAULT_DEVICE_ID_TEMPLATE, {
          iccid,
          alias: last?.alias,
          imei: last?.imei,
        });
        items.push({ iccid, deviceId, events });
      } catch (err) {
        deps.logger.warn('events dropped: no device id', {
          group,
          target: name,
          iccid,
          reason: (err as Error).message,
        });
        done.push([iccid, json]);
      }
    }
    let notices = leftGroupNotice ? items.filter((item) => item.events.some((e) => e.type === 'leftGroup')) : [];
    if (notices.length) {
      // A SIM that joined again since (the target holds its record anew, `monitoring: "on"`) keeps that state.
      const back = await deps.store.publishedRecords(
        group,
        name,
        notices.map((item) => item.iccid)
      );
      notices = notices.filter((_, i) => back[i] === null);
    }
    const noticeOutcomes = await publishSafely(target, notices.map(monitoringOff), signal, group);
    const noticeFailed = new Set<string>();
    for (const outcome of noticeOutcomes) {
      if (outcome.status === 'permanent') {
        deps.logger.warn('left-group notice refused by the target', { group, target: name, reason: outcome.reason });
      } else if (outcome.status !== 'ok') noticeFailed.add(outcome.iccid);
    }
    const ready = items.filter((item) => !noticeFailed.has(item.iccid));
    const outcomes = [
      ...noticeOutcomes.filter((o) => noticeFailed.has(o.iccid)), // retried with their events, next attempt
      ...(target.publishEvents
        ? await publishEventsSafely(target, ready, signal, group)
        : ready.map((i): PublishOutcome => ({ iccid: i.iccid, status: 'ok' }))), // a target without events drops them
    ];
    let acknowledged = 0;
    for (const outcome of outcomes) {
      const json = sent.get(outcome.iccid);
      if (json === undefined) continue;
      if (outcome.status === 'ok' || outcome.status === 'permanent') {
        done.push([outcome.iccid, json]);
        if (outcome.status === 'ok') acknowledged += (JSON.parse(json) as unknown[]).length;
        else deps.logger.warn('events refused by the target, dropped', { group, target: name, reason: outcome.reason });
      } else {
        retry.entries.push([outcome.iccid, json]);
        retry.reason = outcome.reason;
        if (outcome.status === 'throttled') {
          counts.throttled++;
          retry.delayMs = Math.max(retry.delayMs, outcome.retryAfterMs);
        }
      }
    }
    await deps.store.commitEvents(group, name, done);
    counts.eventsSent += acknowledged;
  }
  return retry;
}

/** The state a SIM that left the group is left with at a target that is told: `monitoring: "off"`. */
function monitoringOff({ iccid, deviceId }: EventItem): PublishItem {
  return { iccid, deviceId, patch: { monitoring: 'off' }, full: false, state: { iccid, monitoring: 'off' } };
}

async function publishEventsSafely(target: Target, items: EventItem[], signal: AbortSignal, group: string) {
  if (!items.length) return [];
  try {
    return await target.publishEvents!(items, signal, { group });
  } catch (err) {
    if (signal.aborted) throw err;
    const reason = `target ${target.name} failed to take events: ${redact((err as Error).message)}`;
    return items.map((i): PublishOutcome => ({ iccid: i.iccid, status: 'retryable', reason }));
  }
}

/** A target that throws instead of reporting outcomes has failed every item transiently. */
async function publishSafely(target: Target, items: PublishItem[], signal: AbortSignal, group: string) {
  if (!items.length) return [];
  try {
    return await target.publish(items, signal, { group });
  } catch (err) {
    if (signal.aborted) throw err;
    const reason = `target ${target.name} failed: ${redact((err as Error).message)}`;
    return items.map((i): PublishOutcome => ({ iccid: i.iccid, status: 'retryable', reason }));
  }
}

function mergeRetry(a: Retry, b: Retry): Retry {
  return {
    entries: a.entries.concat(b.entries),
    delayMs: Math.max(a.delayMs, b.delayMs),
    reason: b.reason || a.reason,
    paused: a.paused + b.paused,
    pausedUntil: Math.max(a.pausedUntil, b.pausedUntil),
    pauseReason: b.pauseReason || a.pauseReason,
  };
}
