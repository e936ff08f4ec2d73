/**
 * Client-side rate budgets. IoT Hub throttles per hub and per operation class, so each class takes from one
 * bucket per hub shared by every worker (the limits toolkit's budgets, in Redis in a worker); a 429 or clustered
 * drops pause the whole class: in this worker at once, and in every other one by taking the pause's worth of
 * tokens from the shared bucket.
 */
import { sleepUnlessAborted, type RateBudget, type RateLimit } from '../../shared/limits';

/** The share of the hub's per-second rate the connector paces itself at (see `pacedLimit`). */
export const PACE_SHARE = 0.95;

/**
 * The client-side limit of a class the hub counts per second (twin updates, connections): `PACE_SHARE` of the
 * hub's rate, with a burst of only the rest of one period's worth. Any period-long window then holds at most the
 * hub's limit (burst + paced rate ≤ capacity), and so does any longer one. With the hub's own burst and rate, a
 * busy spell would open with burst + rate in its first second, drain the hub's bucket, and the jitter of arrival
 * times would then get single requests refused; 5 % under the rate, the hub's bucket stays full and absorbs it.
 */
export function pacedLimit(capacity: number, periodMs: number): RateLimit {
  return {
    perSecond: (capacity * 1000 * PACE_SHARE) / periodMs,
    burst: Math.max(1, Math.floor(capacity * (1 - PACE_SHARE))),
  };
}

/** The share of the hub's burst the connector keeps for identity operations (see `registryLimit`). */
export const REGISTRY_BURST_SHARE = 0.9;

/**
 * The client-side limit of identity operations (the hub counts them per minute): `PACE_SHARE` of the hub's rate
 * and `REGISTRY_BURST_SHARE` of its burst, which a bulk call of up to 100 devices needs. Not the whole burst: the
 * hub's bucket stops filling while it is full, and the shared bucket does not know when requests arrive. When the
 * first requests of a busy spell reach the hub late (a loaded machine), the hub has not refilled what the client
 * counted as refilled meanwhile, and a client with the hub's own burst gets its next request refused (seen with
 * two worker processes: 1 of 240). The tenth of the burst kept back covers six seconds of such delay.
 */
export function registryLimit(capacityPerMinute: number): RateLimit {
  return {
    perSecond: (capacityPerMinute * PACE_SHARE) / 60,
    burst: Math.max(1, Math.floor(capacityPerMinute * REGISTRY_BURST_SHARE)),
  };
}

/** The wait a caller should accept before giving the item back as throttled. */
export const MAX_QUEUE_WAIT_MS = 15_000;

/** Hub throttling: at least 10 s (the hub's own "Wait 10 seconds" text), doubling, at most 60 s. */
const THROTTLE_MIN_MS = 10_000;
const THROTTLE_MAX_MS = 60_000;
/** A dropped connection may be the hub shedding load (it disconnects on 429002): back off briefly. */
const DROP_MIN_MS = 500;
const DROP_MAX_MS = 30_000;
/** Backoffs start small again only after this long without throttling or drops. */
const QUIET_RESET_MS = 60_000;

export type HubReservation =
  | { ok: true; waitMs: number }
  /** `paused`: the hub throttled this class recently; otherwise the client-side budget is spent. */
  | { ok: false; retryAfterMs: number; paused: boolean };

/**
 * Lets one caller at a time through, at least `spacingMs` after the previous one, in the order they arrive. The
 * shared bucket schedules each request ahead of time; a process that stalls (a loaded machine) wakes up with every
 * request whose time has come meanwhile, and without this they would reach the hub at once.
 */
class SendSpacing {
  private last = -Infinity;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly spacingMs: number) {}

  /** Resolves true at this caller's turn; false when `signal` aborts it first (the next caller goes on). */
  turn(signal?: AbortSignal): Promise<boolean> {
    const mine = this.queue.then(async () => {
      const waitMs = this.last + this.spacingMs - Date.now();
      if (signal?.aborted || (waitMs > 0 && !(await sleepUnlessAborted(waitMs, signal)))) return false;
      this.last = Date.now();
      return true;
    });
    this.queue = mine;
    return mine;
  }
}

export interface HubBudgetOptions {
  /** The client-side bucket's burst: the most tokens one reservation gets without waiting. @default 1 */
  burst?: number;
  /**
   * Space this process's requests of the class at least one hub token apart (1/rate of the hub), whatever the
   * shared bucket allows after a stall. For the classes the hub counts per second. @default false
   */
  spaceSends?: boolean;
}

/** A shared bucket of `capacity` tokens refilled at `capacity` per `periodMs`, plus the hub's pauses. */
export class HubBudget {
  /** The client-side bucket's burst (what a bulk call can take at once). */
  readonly burst: number;
  private readonly perMs: number;
  private readonly spacing?: SendSpacing;
  /** After a 429: callers are told to come back, not queued (the hub asked everyone to slow down). */
  private throttledUntil = 0;
  /** After a drop: callers wait it out. */
  private pausedUntil = 0;
  private throttleStreak = 0;
  private dropStreak = 0;
  private lastTroubleAt = 0;

  constructor(
    private readonly bucket: RateBudget,
    readonly capacity: number,
    periodMs: number,
    options: HubBudgetOptions = {}
  ) {
    this.perMs = capacity / periodMs;
    this.burst = options.burst ?? 1;
    if (options.spaceSends) this.spacing = new SendSpacing(1 / this.perMs);
  }

  /**
   * After a reservation's wait: this caller's turn to send (at once unless the class spaces its sends). False
   * when aborted meanwhile; the caller then refunds its tokens.
   */
  async turn(signal?: AbortSignal): Promise<boolean> {
    return this.spacing ? this.spacing.turn(signal) : !signal?.aborted;
  }

  /**
   * Takes `n` tokens if they will be available within `maxWaitMs`, and says how long to wait before using them.
   * Otherwise takes nothing and says when to come back. Tokens may go negative: that queues later callers.
   */
  async reserve(n: number, maxWaitMs = MAX_QUEUE_WAIT_MS): Promise<HubReservation> {
    const now = Date.now();
    if (this.throttledUntil > now) return { ok: false, retryAfterMs: this.throttledUntil - now, paused: true };
    const pauseMs = Math.max(0, this.pausedUntil - now);
    if (pauseMs > maxWaitMs) return { ok: false, retryAfterMs: pauseMs, paused: false };
    const r = await this.bucket.reserve(n, maxWaitMs);
    if (!r.ok) return { ok: false, retryAfterMs: r.retryAfterMs, paused: false };
    return { ok: true, waitMs: Math.max(pauseMs, r.waitMs) };
  }

  /** Gives back tokens that were reserved but not spent (e.g. the caller was aborted). */
  async refund(n: number): Promise<void> {
    await this.bucket.refund(n);
  }

  /** The hub said 429: pause the class. Returns the pause in ms, for the outcome's retryAfterMs. */
  throttled(retryAfterMs?: number): number {
    const backoff = Math.min(THROTTLE_MAX_MS, THROTTLE_MIN_MS * 2 ** this.throttleStreak++);
    const ms = Math.max(backoff, retryAfterMs ?? 0);
    this.lastTroubleAt = Date.now();
    this.throttledUntil = Math.max(this.throttledUntil, Date.now() + ms);
    // Every other worker: the pause's worth of tokens, taken and never used, holds their callers back as long.
    void Promise.resolve(this.bucket.reserve(Math.ceil(ms * this.perMs), Infinity)).catch(() => undefined);
    return ms;
  }

  /** A connection dropped mid-operation: pause briefly, growing while drops repeat. */
  dropped(): number {
    const ms = Math.min(DROP_MAX_MS, DROP_MIN_MS * 2 ** this.dropStreak++);
    this.lastTroubleAt = Date.now();
    this.pausedUntil = Math.max(this.pausedUntil, Date.now() + ms);
    return ms;
  }

  /**
   * A success. It never ends a pause, and the backoff only starts small again after a quiet spell: with many
   * connections in flight one lucky success must not undo what the hub just asked for.
   */
  succeeded(): void {
    if (Date.now() - this.lastTroubleAt < QUIET_RESET_MS) return;
    this.throttleStreak = 0;
    this.dropStreak = 0;
  }
}

/** The reason given for an item that the rate budget sends back. */
export function budgetReason(operation: string, paused: boolean): string {
  return paused ? `${operation}s paused after the hub throttled` : `${operation} budget exhausted`;
}
