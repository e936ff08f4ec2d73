import { parseDuration } from '../shared/durations';
import type { PresenceFreshness } from './types';

/**
 * Presence freshness: which SIMs fetch re-reads although their connectivity hints did not change, so that every
 * SIM's presence reaches the targets at least every `maxAgeMs`, and how many such reads Kite's budget leaves. Pure;
 * fetch.ts applies it page by page.
 *
 * A SIM with a known read time `t` is **due** when
 * - its age plus the **delivery horizon** would pass the max age: `now - t > maxAge - horizon`. The horizon is how
 *   long a SIM left unread now may wait for its next read to reach the targets: one period (the next fetch begins
 *   within it), that cycle's own duration (the period less the interval), and the **recovery margin** (a worker
 *   that dies in that cycle delays it by the heartbeat timeout and Temporal's first retry). So a cycle that
 *   crashes and is retried on another worker still delivers within the max age; or
 * - it was not read since its **slot**: slots recur every `maxAge - interval - recoveryMargin` (at least half the max
 *   age) at a phase from a hash of its ICC, so that after a first sync, which reads every SIM at once, the refreshes
 *   are spread evenly over the following max age instead of coming as a burst every max age. A read at most one
 *   period before its slot counts as the slot's read, so the two rules never read a SIM twice in a row.
 *
 * A SIM whose read time is unknown (an entry written before read times were recorded) is due when its slot fell
 * since the previous fetch: such entries are refreshed gradually over one slot period, not all at once.
 *
 * **Budget.** Kite's request budget (`KITE_REQUESTS_PER_SECOND`) is shared by every worker through Redis. Of what
 * it allows since the previous fetch began (budgetPeriod: seconds, for a cycle an operator asked for right after
 * another), fetch spends at most `share` (0.8) on this group's listing and presence reads: the list pages (a shared
 * sweep's pages split between the groups it stages) come first, then the reads driven by changed hints, and only
 * what is left goes to refreshes, paced over the group's pages in proportion to its members so that SIMs late in
 * the listing get their share. Due SIMs beyond the cap wait for the next cycle, oldest first.
 */

/** A SIM's presence read time as stored: epoch seconds in base 36 (6 characters until 2038). */
export function encodeReadTime(ms: number): string {
  return Math.floor(ms / 1000).toString(36);
}

/** The epoch ms of a stored read time; undefined when absent or unreadable. */
export function decodeReadTime(stored: string | undefined): number | undefined {
  if (stored === undefined) return undefined;
  const seconds = parseInt(stored, 36);
  return Number.isFinite(seconds) ? seconds * 1000 : undefined;
}

/** The default `presenceMaxAgeMs` of a group: one hour. */
export const DEFAULT_PRESENCE_MAX_AGE_MS = 3_600_000;

/** The share of Kite's budget over a period that fetch spends on one group's list pages and presence reads. */
export const DEFAULT_PRESENCE_BUDGET_SHARE = 0.8;

/** Temporal's first retry backoff when an activity's retry policy does not say (its default `initialInterval`). */
export const TEMPORAL_DEFAULT_INITIAL_INTERVAL_MS = 1_000;

/** The part of an activity's settings a crash's recovery takes: `Context.current().info` has both. */
export interface ActivityRecoverySettings {
  /** The activity's heartbeat timeout, ms; undefined: none. */
  heartbeatTimeoutMs?: number;
  /** Its retry policy: `initialInterval` in ms (as the worker gives it) or a duration such as `1s`. */
  retryPolicy?: { initialInterval?: number | string };
}

/**
 * The recovery margin of a fetch: how much later a cycle delivers when the worker running one of its activities
 * dies, from the activity's own settings: Temporal gives the attempt up after the heartbeat timeout and starts the
 * next one, on any worker, after the retry policy's first backoff (`initialInterval`, Temporal's 1 s when unset).
 * With the group workflow's settings (workflows/group-sync.ts): 10 s + 1 s = 11 s. 0 without a heartbeat timeout:
 * a dead worker is then noticed only at the start-to-close timeout, which no margin could cover.
 */
export function recoveryMarginOf(settings: ActivityRecoverySettings): number {
  const heartbeat = settings.heartbeatTimeoutMs;
  if (!heartbeat || !(heartbeat > 0)) return 0;
  const initial = settings.retryPolicy?.initialInterval;
  const retry = typeof initial === 'string' ? parseDuration(initial) : initial;
  return heartbeat + (retry !== undefined && retry >= 0 ? retry : TEMPORAL_DEFAULT_INITIAL_INTERVAL_MS);
}

/** How the refresh paces itself this fetch. */
export interface RefreshClock {
  /** The group's presence max age, ms. */
  maxAgeMs: number;
  /** The group's configured interval, ms: it sets the slot period, which must stay stable between cycles. */
  intervalMs: number;
  /**
   * The period: the time from the previous fetch's start to this one's (the interval plus a cycle's duration), or
   * the interval when unknown; at most the larger of the interval and the max age.
   */
  periodMs: number;
  /**
   * The recovery margin, ms: how much later a cycle delivers when its worker dies mid-cycle (the activities'
   * heartbeat timeout plus Temporal's first retry; recoveryMarginOf). A SIM is due this much earlier, so that a
   * crashed and retried cycle still delivers within the max age. fetch.ts takes it from the fetch activity's own
   * settings. @default recoveryMarginOf(the activity's info): 11000 with the workflow's settings (10 s + 1 s)
   */
  recoveryMarginMs: number;
}

/**
 * The period of a fetch from the time since the previous fetch began (undefined for a group's first): at least the
 * interval, since after any cycle, one an operator asked for included, the workflow waits a whole interval.
 */
export function refreshPeriod(intervalMs: number, maxAgeMs: number, sincePreviousMs: number | undefined): number {
  const measured = sincePreviousMs !== undefined && sincePreviousMs > 0 ? sincePreviousMs : intervalMs;
  return Math.min(Math.max(intervalMs, measured), Math.max(intervalMs, maxAgeMs));
}

/**
 * The time whose Kite budget a fetch may spend: since the previous fetch began (the interval for a group's first),
 * at most the larger of the interval and the max age. Unlike the period it may be shorter than the interval: a
 * cycle an operator asks for (syncNow) seconds after the last spends what those seconds allow, not a whole
 * interval's budget, so frequent syncs of a long-interval group do not re-read every presence each time.
 */
export function budgetPeriod(intervalMs: number, maxAgeMs: number, sincePreviousMs: number | undefined): number {
  const measured = sincePreviousMs !== undefined && sincePreviousMs >= 0 ? sincePreviousMs : intervalMs;
  return Math.min(measured, Math.max(intervalMs, maxAgeMs));
}

/**
 * Time between a SIM's slots: the max age less one interval and the recovery margin, at least half the max age.
 * Stable between cycles (the measured period does not enter it), so that each SIM keeps its phase.
 */
export function slotPeriod(clock: Pick<RefreshClock, 'maxAgeMs' | 'intervalMs' | 'recoveryMarginMs'>): number {
  return Math.max(clock.maxAgeMs - clock.intervalMs - clock.recoveryMarginMs, clock.maxAgeMs / 2, 1);
}

/**
 * The delivery horizon: how long a SIM not read in this fetch may wait until its next read reaches the targets:
 * the period (the next fetch begins within it, the workflow waiting one interval after each cycle), that cycle's own
 * duration (measured as the period less the interval; a retried attempt does it again), and the recovery margin
 * should its worker die. The duration counts at most the larger of the interval and the margin, so that one long
 * cycle (a first sync reading every SIM, a crash) does not make the next ones read every SIM and grow as long.
 */
export function deliveryHorizon(clock: RefreshClock): number {
  const duration = Math.min(
    Math.max(0, clock.periodMs - clock.intervalMs),
    Math.max(clock.intervalMs, clock.recoveryMarginMs)
  );
  return clock.periodMs + duration + clock.recoveryMarginMs;
}

/**
 * How often the rule reads each SIM when the budget allows: at its slots, or sooner when the age rule comes first
 * (at the first fetch, one a period, where the age passes the max age less the horizon); never more than once a
 * period.
 */
export function refreshSpacing(clock: RefreshClock): number {
  const threshold = clock.maxAgeMs - deliveryHorizon(clock);
  const byAge = threshold < 0 ? clock.periodMs : clock.periodMs * (Math.floor(threshold / clock.periodMs) + 1);
  return Math.max(clock.periodMs, Math.min(slotPeriod(clock), byAge), 1);
}

/**
 * The SIM's phase among its group, a fraction in [0, 1): FNV-1a (32 bits) of its ICC, mixed by MurmurHash3's
 * finaliser so that ICCs that differ in their last digits (consecutive ones) spread evenly.
 */
export function iccPhase(icc: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < icc.length; i++) {
    h ^= icc.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 0x1_0000_0000;
}

/** The latest slot time of the SIM at or before `now`. */
export function lastSlot(
  icc: string,
  now: number,
  clock: Pick<RefreshClock, 'maxAgeMs' | 'intervalMs' | 'recoveryMarginMs'>
): number {
  const q = slotPeriod(clock);
  const phase = iccPhase(icc) * q;
  return now - ((((now - phase) % q) + q) % q);
}

/**
 * Whether the SIM's presence is due for a refresh at `now`, read last at `readAt` (undefined: unknown).
 */
export function refreshDue(icc: string, readAt: number | undefined, now: number, clock: RefreshClock): boolean {
  const slot = lastSlot(icc, now, clock);
  if (readAt === undefined) return now - slot < clock.periodMs;
  return now - readAt > clock.maxAgeMs - deliveryHorizon(clock) || readAt < slot - clock.periodMs;
}

/** A SIM fetch may refresh: its ICC, its read time (undefined: unknown) and its index on the page. */
export interface RefreshCandidate {
  icc: string;
  readAt: number | undefined;
  index: number;
}

/**
 * The due candidates to read now, at most `allowance` of them, oldest first (an unknown read time counts as one
 * max age old). Returns their indexes, and how many were due.
 */
export function selectRefresh(
  candidates: RefreshCandidate[],
  now: number,
  clock: RefreshClock,
  allowance: number
): { chosen: number[]; due: number } {
  const due = candidates.filter((c) => refreshDue(c.icc, c.readAt, now, clock));
  const age = (c: RefreshCandidate) => (c.readAt === undefined ? clock.maxAgeMs : now - c.readAt);
  const chosen = due
    .sort((a, b) => age(b) - age(a) || a.index - b.index)
    .slice(0, Math.max(0, allowance))
    .map((c) => c.index);
  return { chosen, due: due.length };
}

export interface ReadBudgetInput {
  /** Kite's requests per second for the account (KITE_REQUESTS_PER_SECOND); 0 or not finite: no budget. */
  requestsPerSecond: number;
  periodMs: number;
  /** @default DEFAULT_PRESENCE_BUDGET_SHARE */
  share?: number;
  /** Groups the listing is shared by (a sweep stages several groups); 1 for a listing of the group's own. */
  groups: number;
  /** List requests of the listing (all of a shared sweep's pages). */
  listRequests: number;
}

/**
 * Presence reads (hint-driven and refreshes together) the group may make in one fetch: `share` of Kite's budget
 * over the period, less the list pages, split between the groups sharing the listing. Undefined: no budget is
 * configured, so no cap.
 */
export function presenceReadBudget(input: ReadBudgetInput): number | undefined {
  const rate = input.requestsPerSecond;
  if (!(rate > 0) || !Number.isFinite(rate)) return undefined;
  const requests = (input.share ?? DEFAULT_PRESENCE_BUDGET_SHARE) * rate * (input.periodMs / 1000);
  return Math.max(0, Math.floor((requests - input.listRequests) / Math.max(1, input.groups)));
}

/** List requests of a listing of `listed` SIMs in pages of `pageSize` (the short last page included). */
export function listRequestsFor(listed: number | undefined, pageSize: number): number {
  return Math.floor((listed ?? 0) / Math.max(1, pageSize)) + 1;
}

/**
 * Refreshes a page may make: the budget (undefined: unlimited) paced in proportion to the members seen so far
 * (this page's included) among those expected, less the presence reads made so far (this page's hint-driven
 * reads included). Pages early in the listing cannot starve later ones.
 */
export function refreshAllowance(
  budget: number | undefined,
  expectedMembers: number,
  membersThrough: number,
  readsSoFar: number
): number {
  if (budget === undefined) return Number.POSITIVE_INFINITY;
  const share = expectedMembers > 0 ? Math.min(1, membersThrough / expectedMembers) : 1;
  return Math.max(0, Math.floor(budget * share) - readsSoFar);
}

/** Empty figures for a fetch of a group with `maxAgeMs`. */
export function emptyFreshness(maxAgeMs: number): PresenceFreshness {
  return {
    maxAgeMs,
    members: 0,
    oldestAgeMs: 0,
    overdue: 0,
    unknownAge: 0,
    hintReads: 0,
    refreshed: 0,
    due: 0,
    neededPerCycle: 0,
  };
}

/**
 * Completes the figures once every page is staged: refreshes needed per cycle (`members × period / spacing`, the
 * spacing being how often the rule reads each SIM: refreshSpacing) against those the budget leaves (`readBudget`
 * less hint reads); when the budget cannot keep up, the age it can reach: every SIM read once in
 * `members / budget` cycles, plus the delivery horizon (the next cycle, its duration, a crash's recovery); none
 * when the budget leaves nothing.
 */
export function keepUpFigures(f: PresenceFreshness, clock: RefreshClock, readBudget: number | undefined): void {
  f.neededPerCycle = Math.ceil((f.members * clock.periodMs) / refreshSpacing(clock));
  if (readBudget === undefined) {
    delete f.budgetPerCycle;
    delete f.reachableAgeMs;
    return;
  }
  f.budgetPerCycle = Math.max(0, readBudget - f.hintReads);
  if (f.neededPerCycle > f.budgetPerCycle && f.budgetPerCycle > 0)
    f.reachableAgeMs = Math.ceil((f.members / f.budgetPerCycle) * clock.periodMs + deliveryHorizon(clock));
  else delete f.reachableAgeMs;
}
