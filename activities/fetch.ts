import { ApplicationFailure, Context } from '@temporalio/activity';
import { mapPool } from '../shared/concurrency';
import { throwIfCancelled, whileNotCancelled } from './cancellation';
import { FailureType } from '../shared/failures';
import type { Logger } from '../shared/log';
import { canonicalJson } from '../record';
import type { Entry, StateStore } from '../state/store';
import { KiteApiError, mapSim, type KitePresence, type KiteSim } from '../kite';
import { groupSimsOf, unusableEntries } from './group-sims';
import { isAccountWide, kiteFailure, type KiteSource } from './kite-source';
import type { CycleRef, FetchResult } from './types';

export interface FetchDeps {
  store: StateStore;
  kite: KiteSource;
  logger: Logger;
  /** Presence requests in flight at once; the Kite client's rate budget still applies. @default 8 */
  presenceConcurrency?: number;
  onProgress?: (group: string, fetched: number) => void;
}

interface FetchCheckpoint {
  phase: 'fetch';
  done: number;
  cursor: number;
  counts: FetchResult;
}

interface Connectivity {
  /** The connectivity hints the presence `p` was read for; absent when never read successfully. */
  h?: string;
  p?: KitePresence;
  /** Set while the SIM's presence read fails: it does not count towards a presence outage again. */
  e?: string;
  /** What identifies the SIM besides its ICC (simIdentity), recorded in the store's `ids` too. */
  i?: string;
}

const emptyCounts = (): FetchResult => ({
  seen: 0,
  inGroup: 0,
  invalid: 0,
  invalidReasons: {},
  presenceFetched: 0,
  presenceErrors: {},
});

/** One fetch attempt's Kite call options, and its count of presence failures of SIMs that were fine before. */
interface FetchCall {
  signal: AbortSignal;
  onWaiting: () => void;
  newPresenceFailures: number;
}

/**
 * The paging ceiling is twice the SIMs of the last complete listing, and at least this many more: a small
 * inventory may grow fast without being endless.
 */
export const MIN_LISTING_HEADROOM = 10_000;

/**
 * Presence failures of single SIMs after which, with not one presence read succeeding in the fetch, Kite's
 * presence service itself is taken as down and the fetch fails.
 */
export const PRESENCE_FAILURES_FOR_OUTAGE = 5;

/**
 * Pages the Kite inventory, keeps the group's SIMs, reads presence only where connectivity hints changed, maps
 * and validates each SIM, and stages the snapshot in Redis. Resumes from its last heartbeat on retry.
 */
export function createFetchActivity(deps: FetchDeps) {
  return async function fetchSnapshot({ group, cycle }: CycleRef): Promise<FetchResult> {
    const ctx = Context.current();
    const resumed = ctx.info.heartbeatDetails as FetchCheckpoint | undefined;
    const counts = { ...emptyCounts(), ...resumed?.counts };
    if (!resumed) {
      await deps.store.dropStaging(group, cycle);
      await deps.store.dropStaging(group, cycle - 1);
    }
    let checkpoint: FetchCheckpoint = {
      phase: 'fetch',
      done: counts.seen,
      cursor: resumed?.cursor ?? 0,
      counts: structuredClone(counts),
    };
    const beat = () => ctx.heartbeat(checkpoint);
    // Presence reads may take minutes for a page at Kite's rate budget, and one slow Kite request may outlast the
    // heartbeat timeout: keep heartbeating the last checkpoint while waiting, at most once a second. Every
    // heartbeat is serialised and handed to the SDK core; one per presence read cost a 100k-SIM first sync about
    // a fifth of its CPU (BENCHMARKS.md). Each page's new checkpoint is always sent.
    let lastBeat = 0;
    const keepAlive = () => {
      const now = Date.now();
      if (now - lastBeat < 1_000) return;
      lastBeat = now;
      beat();
    };
    const call: FetchCall = { signal: ctx.cancellationSignal, onWaiting: keepAlive, newPresenceFailures: 0 };
    const listed = await deps.store.lastListed(group);
    // Paging ceiling: a Kite that never stops paging (new ICCs on every page) fails instead of looping.
    const maxSims = listed === undefined ? undefined : Math.max(2 * listed, listed + MIN_LISTING_HEADROOM);
    if (ctx.info.attempt > 1) {
      deps.logger.warn('fetch resumed after a failed attempt (a worker crash, a heartbeat timeout or a Kite fault)', {
        activity: ctx.info.activityType,
        group,
        cycle,
        attempt: ctx.info.attempt,
        cursor: checkpoint.cursor,
      });
    }
    try {
      await whileNotCancelled(async () => {
        for await (const page of deps.kite.pages(group, checkpoint.cursor, { ...call, maxSims })) {
          counts.seen += page.sims.length;
          await stageGroupPage(deps, group, cycle, page.sims, page.startIndex, counts, call);
          checkpoint = { phase: 'fetch', done: counts.seen, cursor: page.nextIndex, counts: structuredClone(counts) };
          beat();
          deps.onProgress?.(group, page.sims.length);
          throwIfCancelled();
        }
      });
    } catch (err) {
      throw withProgress(err, counts.seen);
    }
    await deps.store.recordListed(group, checkpoint.cursor);
    deps.logger.info('fetched group snapshot', { group, cycle, ...counts });
    return counts;
  };
}

/** A failed fetch says how far it got: the operator sees whether Kite answered at all. */
function withProgress(err: unknown, seen: number): unknown {
  if (!(err instanceof Error) || err.name === 'CancelledFailure') return err;
  const failure = err instanceof ApplicationFailure ? err : undefined;
  return ApplicationFailure.create({
    message: `${err.message} (after reading ${seen} SIMs of Kite's inventory in this attempt and the ones before)`,
    type: failure?.type ?? err.name,
    nonRetryable: failure?.nonRetryable ?? false,
    details: failure?.details ?? undefined,
    nextRetryDelay: failure?.nextRetryDelay ?? undefined,
  });
}

async function stageGroupPage(
  deps: FetchDeps,
  group: string,
  cycle: number,
  sims: KiteSim[],
  startIndex: number,
  counts: FetchResult,
  call: FetchCall
): Promise<void> {
  const { kite, store } = deps;
  const { members, unusable } = groupSimsOf(sims, startIndex, group, kite.filterOf(group));
  const invalid = unusableEntries(
    unusable,
    await store.lastKnownIccs(
      group,
      unusable.map((u) => u.identity ?? '')
    )
  );
  if (invalid.length) deps.logger.warn('SIMs of the group with an unusable ICC in Kite are kept under their last known ICC', { group, cycle, sims: invalid.slice(0, 10).map(([icc]) => icc), count: invalid.length }); // prettier-ignore
  const known = await store.knownConnectivity(
    group,
    members.map((m) => m.icc)
  );
  const previous = known.map((json) => (json ? (JSON.parse(json) as Connectivity) : undefined));
  const stale = members.map((m, i) => previous[i]?.h !== m.hints);
  const read = await mapPool(members, deps.presenceConcurrency ?? 8, (m, i) =>
    stale[i]
      ? readPresence(kite, m.icc, counts, call, previous[i]?.e !== undefined)
      : Promise.resolve({ presence: previous[i]?.p })
  );

  const records: Entry[] = [];
  const connectivity: Entry[] = [];
  const identities: Entry[] = [];
  const droppedIdentities: string[] = [];
  members.forEach((m, i) => {
    // When Kite failed this SIM's presence, it is published with its last known presence (or none), and read again
    // next cycle, since its hints are not recorded as seen.
    const { presence, error } = read[i];
    const mapped = mapSim(m.sim, error ? previous[i]?.p : presence);
    if (mapped.ok) records.push([m.icc, canonicalJson(mapped.record)]);
    else invalid.push([m.icc, mapped.reason]);
    // A presence is cached only when it made a good record: a rejected one is read again next cycle.
    // Its identity is recorded with it, so that the SIM keeps its place should Kite send its ICC unusable.
    const was = previous[i];
    const next: Connectivity | undefined = error
      ? { ...was, e: error }
      : stale[i] && mapped.ok
        ? { h: m.hints, p: presence }
        : was && was.i !== m.identity
          ? { ...was }
          : undefined;
    if (!next) return;
    next.i = m.identity;
    connectivity.push([m.icc, JSON.stringify(next)]);
    if (m.identity !== was?.i) {
      if (was?.i) droppedIdentities.push(was.i);
      if (m.identity) identities.push([m.identity, m.icc]);
    }
  });
  for (const [, reason] of invalid) counts.invalidReasons[reason] = (counts.invalidReasons[reason] ?? 0) + 1;
  counts.invalid += invalid.length;
  counts.inGroup += records.length;
  await store.stagePage(group, cycle, { records, connectivity, invalid, identities, droppedIdentities });
}

/**
 * One SIM's presence read. A fault of that SIM alone is returned as `presence-error:<code>`; an account-wide one
 * (certificate refused, Kite unreachable, or no presence read of the fetch succeeding after several SIMs that
 * were fine before failed) fails the fetch. `failedBefore`: the SIM's read already failed last time.
 */
async function readPresence(
  kite: KiteSource,
  icc: string,
  counts: FetchResult,
  call: FetchCall,
  failedBefore: boolean
): Promise<{ presence?: KitePresence; error?: string }> {
  try {
    const presence = await kite.presence(icc, call);
    counts.presenceFetched++;
    return { presence };
  } catch (err) {
    if (call.signal.aborted || isAccountWide(err)) throw kiteFailure(err);
    const error = `presence-error:${err instanceof KiteApiError ? err.code : 'UNKNOWN'}`;
    counts.presenceErrors[error] = (counts.presenceErrors[error] ?? 0) + 1;
    const failed = failedBefore ? call.newPresenceFailures : ++call.newPresenceFailures;
    if (counts.presenceFetched === 0 && failed >= PRESENCE_FAILURES_FOR_OUTAGE) {
      const message = `Kite's presence service looks down: ${failed} presence reads failed and none succeeded; the last: ${(err as Error).message}`;
      throw ApplicationFailure.retryable(message, FailureType.KitePresenceOutage);
    }
    return { error };
  } finally {
    call.onWaiting();
  }
}
