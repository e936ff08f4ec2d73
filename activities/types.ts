/** Inputs and results of the sync activities: keys and counts only, never SIM data (claim check in Redis). */
import type { EventPolicy, PublishPolicy } from '../record';

export interface CycleRef {
  group: string;
  /** The cycle number; names the cycle's staging keys in Redis. */
  cycle: number;
}

export interface FetchInput extends CycleRef {
  /**
   * When an operator asked for this cycle (syncNow, enable, resync --now), the workflow time of the request
   * (epoch ms): a fetch sharing its Kite account's sweeps then reads a sweep begun at or after it, so the cycle
   * shows Kite as it is now. @default undefined (any sweep begun after the group's previous fetch will do)
   */
  freshAfter?: number;
  /**
   * The group's presence max age (GroupConfig.presenceMaxAgeMs): every SIM's presence is re-read at least this
   * often, within Kite's budget (see activities/presence-refresh.ts). @default 3600000 (1 hour)
   */
  presenceMaxAgeMs?: number;
  /** The group's interval: it paces the presence refresh. @default 300000 (5 minutes) */
  intervalMs?: number;
}

/**
 * The presence figures of one fetch (`kite-cc status`): how fresh the group's presence is, and whether Kite's
 * budget keeps up with the refresh.
 */
export interface PresenceFreshness {
  /** The group's presence max age, ms. */
  maxAgeMs: number;
  /** SIMs of the group this fetch looked at. */
  members: number;
  /** The age of the oldest presence after this fetch, ms (of SIMs with a known read time). */
  oldestAgeMs: number;
  /** SIMs whose presence is older than the max age after this fetch. */
  overdue: number;
  /** SIMs whose presence read time is not known yet (entries from before the refresh; refreshed within a max age). */
  unknownAge: number;
  /** Presence reads because connectivity hints changed (or the SIM is new). */
  hintReads: number;
  /** Presence reads to keep within the max age (refreshes). */
  refreshed: number;
  /** SIMs that were due for a refresh this fetch (read, or deferred by the budget). */
  due: number;
  /**
   * Refreshes one cycle needs on average: every SIM once per slot period (the max age less one interval and the
   * recovery margin), or more often when the age rule comes first (presence-refresh.ts refreshSpacing).
   */
  neededPerCycle: number;
  /**
   * Refreshes Kite's budget leaves per cycle, after the list pages and this fetch's hint reads. Absent: no Kite
   * budget configured (KITE_REQUESTS_PER_SECOND 0), no cap.
   */
  budgetPerCycle?: number;
  /**
   * Set when the budget cannot keep up (neededPerCycle > budgetPerCycle > 0): the presence age the refresh can
   * reach, ms, a worker crash included (every SIM read once in members / budget cycles, plus the delivery horizon).
   * With a budget of 0 it reaches none.
   */
  reachableAgeMs?: number;
}

export interface FetchResult {
  /** SIMs read from Kite, all groups. */
  seen: number;
  /** SIMs of the group with a valid record, staged for the diff. */
  inGroup: number;
  invalid: number;
  invalidReasons: Record<string, number>;
  /** Presence details fetched (new SIMs, changed connectivity hints, and refreshes of presence due by age). */
  presenceFetched: number;
  /**
   * SIMs whose presence read failed, by `presence-error:<code>`: published with their last known presence (or
   * without presence keys), and read again next cycle.
   */
  presenceErrors: Record<string, number>;
  /** How fresh the group's presence is after this fetch (absent for a preview). */
  presence?: PresenceFreshness;
}

/** `kite-cc resync`: forget what targets hold, so the next cycle publishes full records. */
export interface ResyncInput {
  group: string;
  targets: string[];
  /** Only these SIMs; all of the group's when absent. */
  sims?: string[];
}

export interface DiffInput extends CycleRef {
  targets: string[];
  /** The group's publish policy (which changes wait). @default every field's default, see PublishPolicy */
  policy?: PublishPolicy;
  /** The group's connectivity events (which types, the spike rule). @default off */
  events?: EventPolicy;
  /**
   * The group's limit: hold the cycle when more than this fraction of its known SIMs vanished at once.
   * @default the worker's (KITE_MAX_LEAVE_FRACTION, 0.5)
   */
  maxLeaveFraction?: number;
  /** The operator approved a drop of this many SIMs (`kite-cc accept-drop`): up to this many are forgotten. */
  approvedDrop?: number;
}

/** Too many of a group's SIMs vanished from Kite's inventory at once: the cycle holds until the drop is approved. */
export interface InventoryDrop {
  /** Known SIMs missing from Kite's inventory this cycle. */
  missing: number;
  /** SIMs of the group known from earlier cycles. */
  known: number;
  /** SIMs of the group Kite's inventory held this cycle. */
  listed: number;
  /** The limit that was exceeded (a fraction of `known`). */
  maxLeaveFraction: number;
}

export interface DiffResult {
  /** SIMs that left the group and were forgotten. */
  left: number;
  /**
   * Per target: SIMs with a change to publish, SIMs whose unchanged patch already failed permanently, and SIMs
   * whose only changes (daily counters, a small move) the publish policy holds for a later cycle.
   */
  targets: Record<string, { changed: number; stillFailing: number; held?: number }>;
  /** Connectivity events detected and queued for every target (absent while the group's events are off). */
  events?: number;
  /** Set when too many SIMs vanished: nothing was written or forgotten, and every count is 0. */
  drop?: InventoryDrop;
}

/** `kite-cc preview`: a diff that writes nothing, on a snapshot staged for the preview. */
export interface PreviewInput extends DiffInput {
  /** SIMs whose patch is returned as a sample, per target (at most 10). @default 3 */
  sampleSize?: number;
}

/** What one target would get from a cycle run now. */
export interface TargetPreview {
  /** SIMs that would be published. */
  publish: number;
  /** Of those, SIMs new to the target (their whole record). */
  full: number;
  /** SIMs whose only changes (daily counters, a small move) the publish policy would hold. */
  held: number;
  /** SIMs whose unchanged patch already failed permanently (not sent again). */
  stillFailing: number;
  /** Some of the SIMs that would be published, with their patch (`null`: a key that disappeared). */
  sample: { iccid: string; full: boolean; patch: Record<string, unknown> }[];
}

export interface PreviewResult {
  /** SIMs of the group known from earlier cycles and missing from Kite now: they would be forgotten. */
  left: number;
  /** Set when the cycle would hold for approval instead (the counts say what it would publish once approved). */
  drop?: InventoryDrop;
  targets: Record<string, TargetPreview>;
}

export interface PublishInput extends CycleRef {
  target: string;
}

export interface PublishResult {
  /** Acknowledged in this cycle, over all attempts of the publish activity (carried in its heartbeat details). */
  published: number;
  /** Failed permanently in this cycle, over all attempts (recorded with their reason). */
  failed: number;
  /** Throttled responses met along the way. */
  throttled: number;
  /** SIMs whose last publish failed permanently, after this cycle. */
  failing: number;
  /** SIMs still waiting for the target after this attempt, read from Redis (0 when the attempt succeeds). */
  pending?: number;
  /** Connectivity events the target acknowledged in this cycle, over all attempts. */
  eventsSent?: number;
  /** The target is paused as a whole until this epoch ms (e.g. its daily quota is spent); the changes stay pending. */
  pausedUntil?: number;
  /** Why it is paused, as the target said. */
  pauseReason?: string;
}
