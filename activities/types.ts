/** Inputs and results of the sync activities: keys and counts only, never SIM data (claim check in Redis). */
import type { EventPolicy, PublishPolicy } from '../record';

export interface CycleRef {
  group: string;
  /** The cycle number; names the cycle's staging keys in Redis. */
  cycle: number;
}

export interface FetchResult {
  /** SIMs read from Kite, all groups. */
  seen: number;
  /** SIMs of the group with a valid record, staged for the diff. */
  inGroup: number;
  invalid: number;
  invalidReasons: Record<string, number>;
  /** Presence details fetched (new SIMs and changed connectivity hints). */
  presenceFetched: number;
  /**
   * SIMs whose presence read failed, by `presence-error:<code>`: published with their last known presence (or
   * without presence keys), and read again next cycle.
   */
  presenceErrors: Record<string, number>;
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
}

export interface DiffResult {
  /** SIMs that left the group and were forgotten. */
  left: number;
  /**
   * Per target: SIMs with a change to publish, SIMs whose unchanged patch already failed permanently, and SIMs
   * whose only changes (daily counters) the publish policy holds for a later cycle.
   */
  targets: Record<string, { changed: number; stillFailing: number; held?: number }>;
  /** Connectivity events detected and queued for every target (absent while the group's events are off). */
  events?: number;
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
}
