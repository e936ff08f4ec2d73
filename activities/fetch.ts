import { randomUUID } from 'node:crypto';
import { setTimeout } from 'node:timers/promises';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { mapPool } from '../shared/concurrency';
import { throwIfCancelled, whileNotCancelled } from './cancellation';
import { FailureType } from '../shared/failures';
import type { Logger } from '../shared/log';
import { canonicalJson } from '../record';
import type { Entry, StateStore } from '../state/store';
import { KiteApiError, mapSim, pageEntries, type KiteEntries, type KitePresence } from '../kite';
import type { SweepChunk, SweepHeader } from '../state/sweeps';
import { groupSimsOf, unusableEntries } from './group-sims';
import { encodeConnectivity, StoredConnectivity, type Connectivity } from './stored-connectivity';
import { decodeSweepChunk, encodeSweepChunk, type SweepMember } from './sweep-chunk';
import { isAccountWide, kiteFailure, type KiteSource } from './kite-source';
import {
  budgetPeriod,
  DEFAULT_PRESENCE_MAX_AGE_MS,
  decodeReadTime,
  emptyFreshness,
  encodeReadTime,
  keepUpFigures,
  listRequestsFor,
  presenceReadBudget,
  recoveryMarginOf,
  refreshAllowance,
  refreshPeriod,
  selectRefresh,
  type RefreshCandidate,
  type RefreshClock,
} from './presence-refresh';
import type { FetchInput, FetchResult, PresenceFreshness } from './types';

export interface FetchDeps {
  store: StateStore;
  kite: KiteSource;
  logger: Logger;
  /** Presence requests in flight at once; the Kite client's rate budget still applies. @default 8 */
  presenceConcurrency?: number;
  onProgress?: (group: string, fetched: number) => void;
  /**
   * A group sharing its Kite account's inventory sweeps reuses a finished sweep that began after its previous
   * fetch began, but never one older than this. @default 3600000 (1 hour)
   */
  sweepMaxAgeMs?: number;
  /**
   * The sweep lock's lifetime; the sweeper renews it while it pages, and another group's fetch takes the sweep
   * over (resuming at its cursor) once it expired. @default 15000
   */
  sweepLockTtlMs?: number;
  /**
   * A group's very first fetch waits this long before it sweeps the account or, alone, lists it: groups started
   * together (a deployment) register meanwhile and share that first listing instead of each making its own. Once
   * per group. 0: no wait. @default 500
   */
  sweepGatherMs?: number;
  /**
   * Skip settled SIMs whose Kite entry did not change (staged as KEPT, not mapped nor diffed). Off: every SIM of
   * the group is mapped and staged with its record each cycle. @default true
   */
  skipUnchanged?: boolean;
  /**
   * Kite's request budget per second for the account (`KITE_REQUESTS_PER_SECOND`, shared by every worker): it caps
   * the presence refresh (see presence-refresh.ts). 0: no budget, no cap. @default 0
   */
  kiteRequestsPerSecond?: number;
  /**
   * The share of Kite's budget over a cycle that one group's list pages and presence reads may spend; presence
   * refreshes get what the list pages and hint-driven reads leave of it. @default 0.8
   */
  presenceBudgetShare?: number;
  /** The clock of the presence refresh: read times and the time between fetches (tests move it). @default Date.now */
  now?: () => number;
}

/** The group's page size of Kite's listing when the Kite source does not say. */
const DEFAULT_PAGE_SIZE = 1000;
/** The group's interval when the fetch input does not say (a fetch scheduled by an older workflow). */
const DEFAULT_INTERVAL_MS = 300_000;

export const DEFAULT_SWEEP_MAX_AGE_MS = 3_600_000;
export const DEFAULT_SWEEP_LOCK_TTL_MS = 15_000;
/** A group is staged by an account's sweeps for at least this long after its fetch last asked for one. */
const MIN_SWEEP_REGISTRATION_MS = 30 * 60_000;

interface FetchCheckpoint {
  phase: 'fetch';
  done: number;
  /** The listing's next page index; with a shared sweep, the chunks of the sweep's partition staged so far. */
  cursor: number;
  counts: FetchResult;
  /**
   * With a shared sweep: this fetch's lock token, and the sweep whose partition the cycle took; `own` when the
   * group was the account's only reader and listed the inventory itself (then `cursor` is a page index).
   */
  sweep?: { token: string; id?: number; own?: boolean };
  /**
   * Present while every page of the cycle was staged by a fetch that indexes its records (changed:<cycle>):
   * `unknown` counts the SIMs it staged without conn. Absent in checkpoints of workers from before.
   */
  indexed?: { unknown: number };
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
 * Pages the Kite inventory, keeps the group's SIMs, reads presence where connectivity hints changed and where a
 * refresh is due (at least every `presenceMaxAgeMs`, within Kite's budget: presence-refresh.ts), maps and
 * validates each SIM, and stages the snapshot in Redis. Resumes from its last heartbeat on retry.
 */
export function createFetchActivity(deps: FetchDeps) {
  return async function fetchSnapshot(input: FetchInput): Promise<FetchResult> {
    const { group, cycle, freshAfter } = input;
    const ctx = Context.current();
    const resumed = ctx.info.heartbeatDetails as FetchCheckpoint | undefined;
    const counts = { ...emptyCounts(), ...resumed?.counts };
    if (!resumed) {
      await deps.store.dropStaging(group, cycle);
      await deps.store.dropStaging(group, cycle - 1);
    }
    const run: FetchRun = {
      group,
      cycle,
      freshAfter,
      counts,
      checkpoint: {
        phase: 'fetch',
        done: counts.seen,
        cursor: resumed?.cursor ?? 0,
        counts: structuredClone(counts),
        sweep: resumed?.sweep,
        indexed: resumed ? resumed.indexed : { unknown: 0 },
      },
      beat: () => ctx.heartbeat(run.checkpoint),
      keepAlive: () => undefined,
      call: { signal: ctx.cancellationSignal, onWaiting: () => run.keepAlive(), newPresenceFailures: 0 },
      input,
    };
    // Presence reads may take minutes for a page at Kite's rate budget, and one slow Kite request may outlast the
    // heartbeat timeout: keep heartbeating the last checkpoint while waiting, at most once a second. Every
    // heartbeat is serialised and handed to the SDK core; one per presence read cost a 100k-SIM first sync about
    // a fifth of its CPU (BENCHMARKS.md). Each page's new checkpoint is always sent.
    let lastBeat = 0;
    run.keepAlive = () => {
      const now = Date.now();
      if (now - lastBeat < 1_000) return;
      lastBeat = now;
      run.beat();
    };
    if (ctx.info.attempt > 1) {
      deps.logger.warn('fetch resumed after a failed attempt (a worker crash, a heartbeat timeout or a Kite fault)', {
        activity: ctx.info.activityType,
        group,
        cycle,
        attempt: ctx.info.attempt,
        cursor: run.checkpoint.cursor,
      });
    }
    // A preview (a negative cycle: kite-cc preview) lists Kite itself: taking the group's share of a shared sweep
    // would leave its next real cycle without one, and a preview should see Kite as it is now.
    const account = cycle >= 0 ? deps.kite.sweepAccount?.(group) : undefined;
    try {
      await whileNotCancelled(() => (account ? fetchFromSweep(deps, run, account) : fetchOwnListing(deps, run)));
    } catch (err) {
      throw withProgress(err, counts.seen);
    }
    const { indexed } = run.checkpoint;
    if (indexed) await deps.store.recordStagingIndexed(group, cycle, indexed.unknown === 0);
    deps.logger.info('fetched group snapshot', { group, cycle, ...counts });
    return counts;
  };
}

/** One fetch attempt: its group and cycle, counts, checkpoint and Kite call options. */
interface FetchRun {
  group: string;
  cycle: number;
  /** See FetchInput.freshAfter. */
  freshAfter?: number;
  counts: FetchResult;
  checkpoint: FetchCheckpoint;
  /** Heartbeats the checkpoint now. */
  beat: () => void;
  /** Heartbeats the checkpoint at most once a second (while waiting on Kite or on another group's sweep). */
  keepAlive: () => void;
  call: FetchCall;
  input: FetchInput;
  /** The presence refresh of this fetch; undefined for a preview, which refreshes nothing. */
  refresh?: RefreshPlan;
}

/** How one fetch refreshes presence: its clock, its read budget, and the members it expects (for pacing). */
interface RefreshPlan {
  clock: RefreshClock;
  /** Presence reads (hint-driven and refreshes) this fetch may make: Kite's budget since the last; undefined: no cap. */
  readBudget?: number;
  /** The same over a whole period: whether the budget keeps up with the refresh (status), not this fetch's cap. */
  cycleBudget?: number;
  /** The group's SIMs known before this fetch: pages get shares of the budget by their members among these. */
  expectedMembers: number;
}

/**
 * Plans the presence refresh of a real cycle's fetch (a preview refreshes nothing): the period since the group's
 * previous fetch began, the recovery margin from this activity's own heartbeat timeout and retry policy, and the
 * reads Kite's budget leaves after the listing's `listRequests`, shared by `groups`.
 */
async function planRefresh(
  deps: FetchDeps,
  run: FetchRun,
  listing: { listRequests: number; groups: number }
): Promise<void> {
  const { group, cycle, input } = run;
  if (cycle < 0) return;
  const maxAgeMs = input.presenceMaxAgeMs ?? DEFAULT_PRESENCE_MAX_AGE_MS;
  const intervalMs = input.intervalMs ?? DEFAULT_INTERVAL_MS;
  const [started, expectedMembers] = await Promise.all([
    deps.store.fetchStarted(group, cycle, (deps.now ?? Date.now)()),
    deps.store.knownCount(group),
  ]);
  const since = started.previous === undefined ? undefined : started.current - started.previous;
  const clock: RefreshClock = {
    maxAgeMs,
    intervalMs,
    periodMs: refreshPeriod(intervalMs, maxAgeMs, since),
    recoveryMarginMs: recoveryMarginOf(Context.current().info),
  };
  const budget = (periodMs: number) =>
    presenceReadBudget({
      requestsPerSecond: deps.kiteRequestsPerSecond ?? 0,
      periodMs,
      share: deps.presenceBudgetShare,
      ...listing,
    });
  const readBudget = budget(budgetPeriod(intervalMs, maxAgeMs, since));
  run.refresh = { clock, readBudget, cycleBudget: budget(clock.periodMs), expectedMembers };
  run.counts.presence ??= emptyFreshness(maxAgeMs);
}

/** Completes the presence figures once the fetch has staged every page. */
function finishRefresh(run: FetchRun): void {
  if (run.refresh && run.counts.presence)
    keepUpFigures(run.counts.presence, run.refresh.clock, run.refresh.cycleBudget);
}

/** The group's own listing of the inventory (a Kite search configured for the group, or no shared sweeps). */
async function fetchOwnListing(deps: FetchDeps, run: FetchRun): Promise<void> {
  const { group, counts } = run;
  const listed = await deps.store.lastListed(group);
  const pageSize = deps.kite.listPageSize?.(group) ?? DEFAULT_PAGE_SIZE;
  await planRefresh(deps, run, { listRequests: listRequestsFor(listed, pageSize), groups: 1 });
  // Paging ceiling: a Kite that never stops paging (new ICCs on every page) fails instead of looping.
  const maxSims = listed === undefined ? undefined : Math.max(2 * listed, listed + MIN_LISTING_HEADROOM);
  const staged = new StagedPages(run);
  await staged.all(async () => {
    for await (const page of deps.kite.pages(group, run.checkpoint.cursor, { ...run.call, maxSims })) {
      const entries = pageEntries(page);
      counts.seen += entries.length;
      const { written, unknown } = await stageGroupPage(deps, run, entries, (i) => page.startIndex + i);
      await staged.add(written, page.nextIndex, unknown, () => deps.onProgress?.(group, entries.length));
      throwIfCancelled();
    }
  });
  finishRefresh(run);
  await deps.store.recordListed(group, run.checkpoint.cursor);
}

/**
 * The group's members from a sweep of its Kite account shared with the account's other groups: the newest
 * finished sweep that began no earlier than this group's previous fetch (nor longer ago than sweepMaxAgeMs), or
 * else one this fetch waits for or runs itself. Then each of its pages' members is staged like a listing's page;
 * the checkpoint's cursor counts the partition's chunks.
 */
async function fetchFromSweep(deps: FetchDeps, run: FetchRun, account: string): Promise<void> {
  const { group, cycle } = run;
  const sweeps = deps.store.sweeps;
  if (run.checkpoint.sweep?.own) return fetchOwnListing(deps, run);
  const header = await takeSweep(deps, run, account);
  if (!header) {
    // The account's only reader lists the inventory itself, as a group with its own search does: staging every
    // page in Redis to read it back would only cost time. Its registration lets a second group's sweep include it.
    if (run.checkpoint.sweep?.id !== undefined) await deps.store.dropStaging(group, cycle);
    Object.assign(run.counts, emptyCounts());
    delete run.counts.presence;
    run.checkpoint = {
      ...run.checkpoint,
      cursor: 0,
      sweep: { token: run.checkpoint.sweep!.token, own: true },
      indexed: { unknown: 0 },
    };
    return fetchOwnListing(deps, run);
  }
  if (run.checkpoint.sweep?.id !== header.id) {
    // A fresh start, or the sweep this attempt's checkpoint read from is gone: stage the cycle from this one.
    if (run.checkpoint.sweep?.id !== undefined) await deps.store.dropStaging(group, cycle);
    Object.assign(run.counts, emptyCounts());
    delete run.counts.presence;
    run.checkpoint = {
      ...run.checkpoint,
      cursor: 0,
      sweep: { ...run.checkpoint.sweep!, id: header.id },
      indexed: { unknown: 0 },
    };
  }
  const { counts } = run;
  counts.seen = header.seen;
  // The sweep's pages were one listing for every group it staged: each group's budget bears its share of them.
  const state = await sweeps.state(account);
  const pageSize = deps.kite.listPageSize?.(group) ?? DEFAULT_PAGE_SIZE;
  await planRefresh(deps, run, {
    listRequests: listRequestsFor(state?.listed ?? header.seen, pageSize),
    groups: state?.groups.length ?? 1,
  });
  const total = await sweeps.chunkCount(account, group, cycle);
  const staged = new StagedPages(run);
  await staged.all(async () => {
    for (let chunk = run.checkpoint.cursor; chunk < total; chunk++) {
      const [json] = await sweeps.chunks(account, group, cycle, chunk, 1);
      if (json === undefined) throw new Error(`the inventory sweep ${header.id} of group ${group} vanished; retrying`);
      const { positions, entries } = decodeSweepChunk(json, `the inventory sweep ${header.id} of group ${group}`);
      const { written, unknown } = await stageGroupPage(deps, run, entries, (i) => positions[i]);
      await staged.add(written, chunk + 1, unknown);
      throwIfCancelled();
    }
  });
  finishRefresh(run);
  await sweeps.dropTaken(account, group, cycle);
}

/** How often a fetch waiting for another group's sweep looks again. */
const SWEEP_POLL_MS = 250;

export const DEFAULT_SWEEP_GATHER_MS = 500;

/**
 * Takes the cycle's sweep partition: reuses a young enough one, waits for a running sweep, or sweeps itself.
 * Undefined when the group is the account's only reader and no sweep is running: it lists the inventory itself.
 */
async function takeSweep(deps: FetchDeps, run: FetchRun, account: string): Promise<SweepHeader | undefined> {
  const { group, cycle } = run;
  const sweeps = deps.store.sweeps;
  const started = await deps.store.fetchStarted(group, cycle, Date.now());
  const maxAge = deps.sweepMaxAgeMs ?? DEFAULT_SWEEP_MAX_AGE_MS;
  // A cycle an operator asked for reads a sweep begun after the request, not one another group ran before it.
  const minStartedAt = Math.max(started.previous ?? started.current, started.current - maxAge, run.freshAfter ?? 0);
  // Registered groups are staged by every sweep until they have missed about three of their intervals.
  const interval = started.previous === undefined ? 0 : started.current - started.previous;
  const registration = Math.max(3 * interval, MIN_SWEEP_REGISTRATION_MS);
  const token = (run.checkpoint.sweep ??= { token: randomUUID() }).token;
  let waitingSince: number | undefined;
  // The group's first fetch: let the groups started with it register before anyone lists for them.
  let gatherMs = started.previous === undefined ? (deps.sweepGatherMs ?? DEFAULT_SWEEP_GATHER_MS) : 0;
  for (;;) {
    throwIfCancelled();
    const header = await sweeps.take(account, group, cycle, minStartedAt);
    if (header) return header;
    await sweeps.register(account, group, Date.now() + registration);
    if (gatherMs > 0) {
      run.keepAlive();
      await setTimeout(gatherMs, undefined, { signal: run.call.signal });
      gatherMs = 0;
      continue;
    }
    if (waitingSince === undefined && (await sweeps.readers(account, Date.now())).every((g) => g === group)) {
      if (await sweeps.acquire(account, token, lockTtl(deps))) {
        // No sweep is running either (the lock was free): nobody else needs this listing.
        await sweeps.release(account, token);
        return undefined;
      }
    }
    if (await sweeps.acquire(account, token, lockTtl(deps))) {
      // The sweep it waited for may have finished between the look above and the lock: take it rather than
      // sweep again.
      const finished = await sweeps.take(account, group, cycle, minStartedAt);
      if (finished) {
        await sweeps.release(account, token);
        return finished;
      }
      await sweep(deps, run, account, token);
      continue;
    }
    if (waitingSince === undefined) {
      waitingSince = Date.now();
      deps.logger.debug("waiting for the Kite account's inventory sweep run by another group", { group, cycle });
    }
    run.keepAlive();
    await setTimeout(SWEEP_POLL_MS, undefined, { signal: run.call.signal });
  }
}

function lockTtl(deps: FetchDeps): number {
  return deps.sweepLockTtlMs ?? DEFAULT_SWEEP_LOCK_TTL_MS;
}

/**
 * Runs (or resumes, after a sweeper that died) the account's sweep while holding its lock: every page's members
 * of each staged group are appended to that group's partition with the cursor, in one script that checks the
 * lock. Returns when the sweep is finished or the lock was lost (another fetch took over); a Kite failure
 * releases the lock, so that a waiting group takes over at once (and meets the failure itself).
 */
async function sweep(deps: FetchDeps, run: FetchRun, account: string, token: string): Promise<void> {
  const sweeps = deps.store.sweeps;
  const ttl = lockTtl(deps);
  const renewal = setInterval(() => void sweeps.renew(account, token, ttl).catch(() => undefined), ttl / 3);
  try {
    let state = await sweeps.state(account);
    if (!state || state.done) {
      state = await sweeps.begin(account, token, ttl, run.group, Date.now());
      if (!state) return;
      deps.logger.info("sweeping the Kite account's inventory for its groups", {
        group: run.group,
        sweep: state.id,
        groups: state.groups.length,
      });
    } else {
      deps.logger.info("resuming the Kite account's inventory sweep", { group: run.group, sweep: state.id });
    }
    const groups = new Set(state.groups);
    const listed = state.listed;
    const maxSims = listed === undefined ? undefined : Math.max(2 * listed, listed + MIN_LISTING_HEADROOM);
    for await (const page of deps.kite.pages(run.group, state.cursor, { ...run.call, maxSims })) {
      const entries = pageEntries(page);
      // Each group's members, the SIM as Kite sent it (sweep-chunk.ts). An entry of no staged group
      // is not parsed when its group can be read without (a member is, so that a malformed one fails the sweep).
      const members = new Map<string, SweepMember[]>();
      for (let i = 0; i < entries.length; i++) {
        const peek = entries.peek(i);
        if (peek && (peek.group === undefined || !groups.has(peek.group))) continue;
        const sim = entries.sim(i);
        const group = sim !== null && typeof sim === 'object' ? sim.supervisionGroup : undefined;
        if (typeof group !== 'string' || !groups.has(group)) continue;
        if (!members.has(group)) members.set(group, []);
        members.get(group)!.push({ position: page.startIndex + i, text: entries.text(i) });
      }
      const chunks: SweepChunk[] = [...members].map(([group, list]) => [group, encodeSweepChunk(list)]);
      const kept = await sweeps.append(account, token, ttl, {
        cursor: page.nextIndex,
        listed: entries.length,
        chunks,
      });
      if (!kept) return;
      deps.onProgress?.(run.group, entries.length);
      run.keepAlive();
      throwIfCancelled();
    }
    const done = await sweeps.state(account);
    if (done) await sweeps.finish(account, token, done, Date.now());
  } catch (err) {
    await sweeps.release(account, token).catch(() => undefined);
    throw err;
  } finally {
    clearInterval(renewal);
  }
}

/**
 * A fetch's pages whose write went out to Redis: each page's checkpoint (its cursor, and the counts as they stood
 * after it) is heartbeated once its write and every write before it succeeded, so a retried attempt never resumes
 * past a page Redis did not take. At most one page's write is in flight while the next page is worked on.
 */
class StagedPages {
  private last: Promise<void> = Promise.resolve();

  constructor(private readonly run: FetchRun) {}

  /**
   * Waits for the page before, then commits `cursor` once `written` succeeded; `unknown`: the page's SIMs staged
   * without conn.
   */
  async add(written: Promise<void>, cursor: number, unknown: number, onWritten?: () => void): Promise<void> {
    await this.last;
    const { run } = this;
    const checkpoint: FetchCheckpoint = {
      phase: 'fetch',
      done: run.counts.seen,
      cursor,
      counts: structuredClone(run.counts),
      sweep: run.checkpoint.sweep,
      indexed: run.checkpoint.indexed && { unknown: run.checkpoint.indexed.unknown + unknown },
    };
    this.last = written.then(() => {
      run.checkpoint = checkpoint;
      run.beat();
      onWritten?.();
    });
    this.last.catch(() => undefined); // awaited by the next add or by all
  }

  /**
   * Runs `staging` (which adds each page), then waits until every page's write succeeded and its checkpoint was
   * heartbeated. When `staging` fails (Kite refused the next page, say), the pages whose writes succeed are still
   * committed before the failure goes on: the next attempt resumes after them, not at the last page before.
   */
  async all(staging: () => Promise<void>): Promise<void> {
    try {
      await staging();
    } catch (err) {
      await this.last.catch(() => undefined);
      throw err;
    }
    await this.last;
  }
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

/**
 * Stages one page of the listing: the group's members, each mapped with its presence (read when its connectivity
 * hints changed, or when a refresh is due and the budget allows), or kept when settled and unchanged. Resolves,
 * with the counts updated, once the page's write is sent: `written` settles when Redis answered it.
 * The next page's reads go out after this write on the group's one connection, so they see it.
 */
async function stageGroupPage(
  deps: FetchDeps,
  run: FetchRun,
  entries: KiteEntries,
  positionOf: (i: number) => number
): Promise<{ written: Promise<void>; unknown: number }> {
  const { group, cycle, counts, call, refresh } = run;
  const { kite, store } = deps;
  const grouped = groupSimsOf(entries, 0, group, kite.filterOf(group));
  const { unusable, members: all } = grouped;
  for (const u of unusable) u.index = positionOf(u.index);
  const invalid = unusableEntries(
    unusable,
    await store.lastKnownIccs(
      group,
      unusable.map((u) => u.identity ?? '')
    )
  );
  if (invalid.length) deps.logger.warn('SIMs of the group with an unusable ICC in Kite are kept under their last known ICC', { group, cycle, sims: invalid.slice(0, 10).map(([icc]) => icc), count: invalid.length }); // prettier-ignore
  const states = await store.memberStates(
    group,
    all.map((m) => m.icc)
  );
  const known = states.connectivity;
  const settled = deps.skipUnchanged === false ? all.map(() => false) : states.settled;
  const now = (deps.now ?? Date.now)();
  const was = new StoredConnectivity(known);
  // A settled SIM (every target holds its record, nothing held or in flight) whose Kite entry hashes as last time
  // is neither mapped nor staged with a record nor diffed: it is staged as KEPT, so the diff knows it stayed.
  const hashes = all.map((m) => m.hash);
  const keepable = all.map((_, i) => settled[i] && was.entryHash(i) === hashes[i] && !was.failed(i));
  // Presence is read for a SIM that is new or whose connectivity hints changed, and for one due for a refresh.
  const byHints = all.map((m, i) => !keepable[i] && was.hints(i) !== m.hints);
  const refreshing = refresh ? chooseRefreshes(run, refresh, all, was, byHints, now) : new Set<number>();
  // Each read's time is when Kite answered, not when the page began: the reads of a page may take minutes at
  // Kite's rate, and a SIM read late must not look due as early as one read first.
  const clock = deps.now ?? Date.now;
  // Only the members read are pooled: a settled page reads none, and a promise per member is garbage.
  const toRead = all.flatMap((_, i) => (byHints[i] || refreshing.has(i) ? [i] : []));
  const reads = new Array<({ presence?: KitePresence; error?: string } & { at: number }) | undefined>(all.length);
  await mapPool(toRead, deps.presenceConcurrency ?? 8, async (i) => {
    const read = await readPresence(kite, all[i].icc, counts, call, was.failed(i));
    reads[i] = { ...read, at: clock() };
  });

  const kept: string[] = [];
  const settledAgain: string[] = [];
  const records: Entry[] = [];
  const connectivity: Entry[] = [];
  const identities: Entry[] = [];
  const droppedIdentities: string[] = [];
  // Each member's presence read time (as stored) once the page is staged: for the freshness figures.
  const readTimes = all.map((_, i) => was.readTime(i));
  // Members staged with a record whose conn this page neither had nor writes (none, as the rules stand: a new SIM's
  // presence is always read, and a failed read is recorded too). The diff counts leavers only when there are none.
  let unknown = 0;
  all.forEach((m, i) => {
    const read = reads[i];
    // A kept SIM whose refreshed presence is what its targets hold stays kept: only its read time is recorded.
    if (keepable[i] && (!read || (!read.error && samePresence(read.presence, was.full(i)?.p)))) {
      kept.push(m.icc);
      if (read) {
        readTimes[i] = encodeReadTime(read.at);
        connectivity.push([m.icc, encodeConnectivity({ ...was.full(i), t: readTimes[i] })]);
        settledAgain.push(m.icc);
      }
      return;
    }
    // When Kite failed this SIM's presence, it is published with its last known presence (or none), and read again
    // next cycle, since its hints (or, for a refresh, its read time) are not recorded as seen.
    const before = was.full(i);
    const presence = read && !read.error ? read.presence : before?.p;
    const mapped = mapSim(m.sim, presence);
    if (mapped.ok) records.push([m.icc, canonicalJson(mapped.record)]);
    else invalid.push([m.icc, mapped.reason]);
    // A presence is cached only when it made a good record: a rejected one is read again next cycle.
    // Its identity is recorded with it, so that the SIM keeps its place should Kite send its ICC unusable.
    // The entry's hash is recorded only with a good record and presence: anything else is looked at next cycle.
    const hash = mapped.ok && !read?.error ? hashes[i] : undefined;
    const next: Connectivity | undefined = read?.error
      ? { ...before, e: read.error }
      : read && mapped.ok
        ? { h: m.hints, p: read.presence, t: (readTimes[i] = encodeReadTime(read.at)) }
        : before && (before.i !== m.identity || before.r !== hash)
          ? { ...before }
          : undefined;
    if (!next) {
      if (mapped.ok && !before) unknown++;
      return;
    }
    next.i = m.identity;
    next.r = hash;
    connectivity.push([m.icc, encodeConnectivity(next)]);
    if (m.identity !== before?.i) {
      if (before?.i) droppedIdentities.push(before.i);
      if (m.identity) identities.push([m.identity, m.icc]);
    }
  });
  if (counts.presence) {
    tallyFreshness(counts.presence, readTimes.map(decodeReadTime), now);
    counts.presence.hintReads += byHints.filter(Boolean).length;
    counts.presence.refreshed += refreshing.size;
  }
  for (const [, reason] of invalid) counts.invalidReasons[reason] = (counts.invalidReasons[reason] ?? 0) + 1;
  counts.invalid += invalid.length;
  counts.inGroup += records.length + kept.length;
  const keptSet = new Set(kept);
  const unsettled = all.filter((m) => !keptSet.has(m.icc)).map((m) => m.icc);
  const written = store.stagePage(group, cycle, {
    records,
    connectivity,
    invalid,
    identities,
    droppedIdentities,
    kept,
    unsettled,
    settledAgain,
  });
  written.catch(() => undefined); // awaited by the caller; a failure it never reaches (a cancellation) is dropped
  return { written, unknown };
}

/**
 * The SIMs of a page whose presence is refreshed now: those due (presence-refresh.ts) among the SIMs read before
 * and not read for their hints anyway, as many as the page's share of the budget allows after its hint reads.
 */
function chooseRefreshes(
  run: FetchRun,
  refresh: RefreshPlan,
  all: { icc: string }[],
  was: StoredConnectivity,
  byHints: boolean[],
  now: number
): Set<number> {
  const f = run.counts.presence!;
  const candidates: RefreshCandidate[] = [];
  all.forEach((m, index) => {
    if (!byHints[index] && was.hints(index) !== undefined)
      candidates.push({ icc: m.icc, readAt: decodeReadTime(was.readTime(index)), index });
  });
  const hintReads = byHints.filter(Boolean).length;
  const allowance = refreshAllowance(
    refresh.readBudget,
    refresh.expectedMembers,
    f.members + all.length,
    f.hintReads + f.refreshed + hintReads
  );
  const { chosen, due } = selectRefresh(candidates, now, refresh.clock, allowance);
  f.due += due;
  return new Set(chosen);
}

/** Adds a page's members to the figures, given each one's presence read time after the page (undefined: unknown). */
function tallyFreshness(f: PresenceFreshness, readTimes: (number | undefined)[], now: number): void {
  f.members += readTimes.length;
  for (const at of readTimes) {
    if (at === undefined) {
      f.unknownAge++;
      continue;
    }
    const age = Math.max(0, now - at);
    if (age > f.oldestAgeMs) f.oldestAgeMs = age;
    if (age > f.maxAgeMs) f.overdue++;
  }
}

/** Whether a presence read equals the cached one (as Kite sent it: the record made from it is the same). */
function samePresence(a: KitePresence | undefined, b: KitePresence | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
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
