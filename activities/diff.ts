import { ApplicationFailure, Context } from '@temporalio/activity';
import { createHash } from 'node:crypto';
import type { DetectedEvent, EventBaseline, EventPolicy, PublishPolicy, SimEvent, SimRecord } from '../record';
import type { Logger } from '../shared/log';
import {
  applyPublishPolicy,
  canonicalJson,
  detectEvents,
  diffRecords,
  withUncertainKeys,
  type SimPatch,
} from '../record';
import { FailureType } from '../shared/failures';
import type { Entry, StateStore, TargetLookup } from '../state/store';
import type { DiffInput, DiffResult } from './types';

export interface DiffDeps {
  store: StateStore;
  logger: Logger;
  /**
   * Refuse a cycle in which more than this fraction of the group's known SIMs disappeared, whatever the group's
   * size, rather than forgetting them and republishing them in full later: a truncated inventory looks the same.
   * @default 0.5
   */
  maxLeaveFraction?: number;
  /** SIMs compared per Redis round trip. @default 1000 */
  batchSize?: number;
  onDiff?: (group: string, target: string, changed: number) => void;
}

/**
 * Compares the staged snapshot with what each target last acknowledged and writes the pending patches: the
 * whole record for a SIM new to the target, changed keys (null for removed ones) otherwise, nothing when equal.
 * A SIM whose last patch was handed to the target but never acknowledged is uncertain: every key of that patch
 * is sent again with its current value, even when the snapshot equals what was acknowledged (the target may
 * hold the unacknowledged values). SIMs that left the group are forgotten. Idempotent: pending is always
 * recomputed from published + snapshot + uncertain.
 */
export function createDiffActivity(deps: DiffDeps) {
  return async function diffSnapshot({ group, cycle, targets, policy, events }: DiffInput): Promise<DiffResult> {
    const { store } = deps;
    const result: DiffResult = { left: 0, targets: {} };
    for (const target of targets) result.targets[target] = { changed: 0, stillFailing: 0, held: 0 };
    const pendingNonEmpty = await Promise.all(targets.map((t) => store.hasPending(group, t)));
    const eventsOn = !!events?.types?.length;
    if (!eventsOn) await store.dropEventBaselines(group);
    const joining = eventsOn && (await store.eventsBaselined(group));
    let done = 0;
    for await (const entries of store.scanSnapshot(group, cycle, deps.batchSize ?? 1000)) {
      const lookups = await store.lookups(
        group,
        targets,
        entries.map(([iccid]) => iccid)
      );
      await Promise.all(
        targets.map((target, t) =>
          diffTarget(store, { group, target, policy }, entries, lookups[t], pendingNonEmpty[t], result)
        )
      );
      if (eventsOn)
        result.events = (result.events ?? 0) + (await queueEvents(store, group, targets, entries, events!, joining));
      done += entries.length;
      Context.current().heartbeat({ phase: 'diff', done });
    }
    const left = await forgetLeavers(deps, group, cycle, targets, eventsOn ? events : undefined);
    result.left = left.count;
    if (eventsOn) result.events = (result.events ?? 0) + left.events;
    if (eventsOn && !joining) await store.markEventsBaselined(group);
    for (const target of targets) deps.onDiff?.(group, target, result.targets[target].changed);
    deps.logger.info('diffed group snapshot', { group, cycle, ...result });
    return result;
  };
}

async function diffTarget(
  store: StateStore,
  { group, target, policy }: { group: string; target: string; policy?: PublishPolicy },
  entries: Entry[],
  { published, failures, uncertain, countersSentAt }: TargetLookup,
  clearStale: boolean,
  result: DiffResult
): Promise<void> {
  const sets: Entry[] = [];
  const deletes: string[] = [];
  const now = Date.now();
  const countersReleased: string[] = [];
  entries.forEach(([iccid, json], i) => {
    const unsure = uncertain[i];
    if (published[i] === json && !unsure) {
      if (clearStale) deletes.push(iccid);
      return;
    }
    const before = published[i] ? (JSON.parse(published[i]!) as SimRecord) : undefined;
    const next = JSON.parse(json) as SimRecord;
    let patch = diffRecords(before, next);
    if (unsure) {
      patch = withUncertainKeys(patch, JSON.parse(unsure) as SimPatch, next); // resent whole: never held
    } else if (patch) {
      const decision = applyPublishPolicy(before, patch, policy, countersSentAt[i], now);
      if (decision.countersReleased) countersReleased.push(iccid);
      patch = decision.send;
      if (!patch) result.targets[target].held = (result.targets[target].held ?? 0) + 1;
    }
    if (!patch) {
      if (clearStale) deletes.push(iccid);
      return;
    }
    const patchJson = canonicalJson(patch);
    if (failures[i]?.patch === patchJson) {
      result.targets[target].stillFailing++;
      if (clearStale) deletes.push(iccid);
      return;
    }
    sets.push([iccid, patchJson]);
  });
  result.targets[target].changed += sets.length;
  await store.writePending(group, target, sets, deletes, { iccids: countersReleased, at: now });
}

/**
 * Detects the batch's connectivity events against each SIM's baseline, and queues them for every target with
 * the new baselines in one atomic step: a diff retried after it sees no change twice. Returns how many events.
 */
async function queueEvents(
  store: StateStore,
  group: string,
  targets: string[],
  entries: Entry[],
  policy: EventPolicy,
  joining: boolean
): Promise<number> {
  const baselines = await store.eventBaselines(
    group,
    entries.map(([iccid]) => iccid)
  );
  const at = Date.now();
  const sims: { iccid: string; baseline: string | null; events: string[] }[] = [];
  let count = 0;
  entries.forEach(([iccid, json], i) => {
    const before = baselines[i] ? (JSON.parse(baselines[i]!) as EventBaseline) : undefined;
    const record = JSON.parse(json) as SimRecord;
    const detected = detectEvents(before, record, policy, { group, joined: joining });
    const baseline = JSON.stringify(detected.baseline);
    if (baseline === baselines[i] && !detected.events.length) return;
    const events = detected.events.map((e) => JSON.stringify(simEvent(group, record, e, at)));
    count += events.length;
    sims.push({ iccid, baseline, events });
  });
  await store.queueEvents(group, targets, sims);
  return count;
}

/** A detected event with its SIM, time and id: the id is a digest of what it says, the same on every delivery. */
export function simEvent(
  group: string,
  sim: Pick<SimRecord, 'iccid' | 'alias' | 'imei'>,
  event: DetectedEvent,
  at: number
): SimEvent {
  const id = createHash('sha256')
    .update([group, sim.iccid, event.type, JSON.stringify(event.before), JSON.stringify(event.after), at].join('\0'))
    .digest('hex')
    .slice(0, 32);
  const out: SimEvent = { id, type: event.type, group, iccid: sim.iccid, before: event.before, after: event.after, at };
  if (sim.alias !== undefined) out.alias = sim.alias;
  if (sim.imei !== undefined) out.imei = sim.imei;
  return out;
}

/** SIMs known from earlier cycles that are neither in the snapshot nor among the group's invalid SIMs. */
async function forgetLeavers(
  deps: DiffDeps,
  group: string,
  cycle: number,
  targets: string[],
  events?: EventPolicy
): Promise<{ count: number; events: number }> {
  const { store } = deps;
  const known = await store.knownCount(group);
  const leavers = await store.leavers(group, cycle, deps.batchSize ?? 1000);
  const maxFraction = deps.maxLeaveFraction ?? 0.5;
  if (leavers.length > 0 && leavers.length > known * maxFraction) {
    const listed = await store.snapshotCount(group, cycle);
    const answer =
      listed === 0
        ? "Kite's inventory held none of the group's SIMs"
        : `Kite's inventory held ${listed} of the group's SIMs`;
    throw ApplicationFailure.nonRetryable(
      `${leavers.length} of ${known} known SIMs of group ${group} are missing from Kite's inventory this cycle (${answer}); ` +
        `refusing to forget them (limit ${Math.round(maxFraction * 100)}% of the group). If they really left the group, raise KITE_MAX_LEAVE_FRACTION.`,
      FailureType.SuspiciousInventoryDrop
    );
  }
  let queued = 0;
  for (let i = 0; i < leavers.length; i += 1000) {
    const batch = leavers.slice(i, i + 1000);
    if (events?.types?.includes('leftGroup')) queued += await queueLeftGroup(store, group, targets, batch);
    await store.forget(group, targets, batch);
  }
  return { count: leavers.length, events: queued };
}

/**
 * Queues a `leftGroup` event per leaver for every target, named by what the first target holding it last had.
 * Only leavers with an event baseline: queueing drops it atomically, so a diff retried after this says it once.
 */
async function queueLeftGroup(store: StateStore, group: string, targets: string[], iccids: string[]): Promise<number> {
  const [baselines, ...held] = await Promise.all([
    store.eventBaselines(group, iccids),
    ...targets.map((t) => store.publishedRecords(group, t, iccids)),
  ]);
  const at = Date.now();
  const sims = iccids.flatMap((iccid, i) => {
    if (baselines[i] === null) return [];
    const json = held.map((records) => records[i]).find((r) => r !== null);
    const record: Pick<SimRecord, 'iccid' | 'alias' | 'imei'> = json ? (JSON.parse(json) as SimRecord) : { iccid };
    const event = simEvent(group, record, { type: 'leftGroup', before: group, after: null }, at);
    return [{ iccid, baseline: null, events: [JSON.stringify(event)] }];
  });
  await store.queueEvents(group, targets, sims);
  return sims.length;
}
