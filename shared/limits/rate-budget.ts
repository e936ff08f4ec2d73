/**
 * Rate budgets: token buckets with a burst, taken in arrival order. `RateBudget` is what a peer's client
 * depends on; `TokenBucket` keeps the bucket in the process, a shared budget (see `redis-rate-budget.ts`) keeps
 * it in Redis so that every worker takes from one bucket per peer.
 *
 * The bucket is kept as a GCRA "theoretical arrival time" (`tat`): the moment the bucket would be full again.
 * A reservation moves `tat` forward by n / rate, and may push it past `now + burst / rate`: the caller then waits
 * until its tokens exist. Reservations are thus handed out in arrival order, and every caller holds at most the
 * tokens it asked for, so callers (and the groups they work for) with equal concurrency get equal shares.
 */
import { abortError } from './abort';
import { realClock, type Clock } from './clock';

/** A rate with a burst. */
export interface RateLimit {
  /** Tokens added per second; 0 or Infinity = unlimited. */
  perSecond: number;
  /** Tokens the bucket holds when full: how many may be taken at once after a quiet spell. @default 1 (evenly spaced) */
  burst?: number;
}

/** The answer to `reserve`. */
export type Reservation =
  /** The tokens are the caller's; it may use them after `waitMs`. */
  | { ok: true; waitMs: number }
  /** Nothing was taken: the tokens would not exist within the wait the caller accepts. */
  | { ok: false; retryAfterMs: number };

/**
 * A budget paces a little under its peer's rate: its tokens come this many times further apart than `perSecond`
 * says (1.02: 98 % of the rate), so that sends that leave a little after their tokens' time still keep every second
 * at the peer within `perSecond + burst` (see LATE_TOLERANCE_MS).
 */
export const PACING_STRETCH = 1.02;

/**
 * How long after a send leaves the budget allows for it to reach the peer and be counted there (the network, the
 * peer reading its sockets): part of the pacing's slack is kept for it (see LATE_TOLERANCE_MS).
 */
export const ARRIVAL_MARGIN_MS = 10;

/**
 * How late after its tokens' time a caller may still spend them, beyond one token's interval: a caller that wakes
 * later (the process was stalled: GC, a long synchronous step, a busy machine) reserves anew instead. Its tokens'
 * time is taken as no later than when it asked plus the wait it was given, so a reply the process was too busy to
 * read in time counts as late too.
 *
 * Tokens come `I = PACING_STRETCH × 1 s / perSecond` apart. A token that reaches the peer D late shares a second
 * with the tokens due less than `1 s + D` after it: at most `perSecond + burst` while D is at most
 * `(PACING_STRETCH − 1) × 1 s + I`. Sends are spent at most ARRIVAL_MARGIN_MS less late than that (10 ms and one
 * interval: 12 ms at 500/s, 30 ms at 50/s, 112 ms at 10/s, 265 ms at 4/s), so each may take ARRIVAL_MARGIN_MS more
 * to arrive. Spent the whole `(PACING_STRETCH − 1) × 1 s + I` late, as before, any delay on the way put
 * `perSecond + burst + 1` into a second at the peer (the soak's 52 AWS shadow updates and 502 MQTT messages at
 * budgets of 50 and 500 with a burst of 1).
 */
export const LATE_TOLERANCE_MS = (PACING_STRETCH - 1) * 1000 - ARRIVAL_MARGIN_MS;

/** How many times one take reserves again after waking late (see RateBudget.take) before it spends late. */
export const LATE_RESERVATIONS = 3;

/** Budget of one peer, shared by every caller that talks to it. */
export abstract class RateBudget {
  /** Milliseconds per token as paced (see PACING_STRETCH), 0 when unlimited. */
  protected readonly intervalMs: number;
  /** Tokens the bucket holds when full. */
  protected readonly burst: number;
  /** The latest a caller may spend its tokens after their time: LATE_TOLERANCE_MS and one interval. */
  private readonly lateToleranceMs: number;

  constructor(
    limit: RateLimit,
    protected readonly clock: Clock = realClock
  ) {
    this.intervalMs = tokenIntervalMs(limit) * PACING_STRETCH;
    this.burst = limit.burst ?? 1;
    this.lateToleranceMs = LATE_TOLERANCE_MS + this.intervalMs;
  }

  /**
   * Takes `n` tokens if they exist within `maxWaitMs` and says how long to wait before using them; otherwise
   * takes nothing and says when they would exist.
   */
  abstract reserve(n: number, maxWaitMs?: number): Reservation | Promise<Reservation>;

  /** Gives back tokens reserved but not spent (the caller was aborted), for later callers. */
  abstract refund(n: number): void | Promise<void>;

  /**
   * The peer said "slow down" (a 429 with a Retry-After of `ms`): every token not yet reserved comes `ms` later,
   * for every caller, so the load backs off by a Retry-After's worth instead of going on at the full rate. Pauses
   * within `ms` of an earlier one are one pause: the 429s of one overload, from many callers, count once.
   */
  abstract pause(ms: number): void | Promise<void>;

  /**
   * Waits until the caller may spend `n` tokens (default 1). Rejects with the signal's reason if it aborts
   * first, and then gives the tokens back.
   *
   * A caller that wakes much later than its tokens' time (see LATE_TOLERANCE_MS) reserves once more instead of
   * spending them: after a stall every waiting caller wakes at once, and spending all their past tokens together
   * would reach the peer as a burst above its rate. The stale tokens are not given back (that would hand their
   * past time to the next caller, the same burst); the stall's share of the budget is lost, as it was to the stall.
   * At most LATE_RESERVATIONS times per take: a caller late again after its new reservation (a worker lagging for
   * longer) tries again rather than spend late, and a process lagging all the time still sends.
   */
  async take(n = 1, signal?: AbortSignal): Promise<void> {
    let reservedAgain = 0;
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      const asked = this.clock.now();
      const reservation = await this.reserve(n, Infinity);
      // Refused although any wait is accepted: the budget could not be checked (e.g. Redis is unavailable).
      // Fail closed: wait, then ask again.
      if (!reservation.ok) {
        await this.clock.sleep(reservation.retryAfterMs, signal);
        continue;
      }
      // The bucket answered between `asked` and now: the tokens' time is no earlier than `asked + waitMs`, and
      // waiting `waitMs` from now never spends them early.
      const due = asked + reservation.waitMs;
      try {
        await this.clock.sleep(reservation.waitMs, signal);
      } catch (err) {
        await this.refund(n);
        throw err;
      }
      if (reservedAgain >= LATE_RESERVATIONS || this.clock.now() - due <= this.lateToleranceMs) return;
      reservedAgain++;
    }
  }
}

/** Milliseconds per token of a limit, 0 when unlimited. Refuses a rate or burst that is not a positive number. */
export function tokenIntervalMs(limit: RateLimit): number {
  const { perSecond, burst = 1 } = limit;
  if (!(perSecond >= 0)) throw new RangeError(`rate must be >= 0 per second, got ${perSecond}`);
  if (!(burst >= 1)) throw new RangeError(`burst must be >= 1, got ${burst}`);
  return perSecond === 0 || perSecond === Infinity ? 0 : 1000 / perSecond;
}

/**
 * One reservation against a bucket state, as the Redis script does it: returns the reservation and the bucket's
 * new `tat` (unchanged when refused).
 */
export function reserveTokens(
  tat: number,
  now: number,
  n: number,
  intervalMs: number,
  burst: number,
  maxWaitMs: number
): { reservation: Reservation; tat: number } {
  if (intervalMs === 0) return { reservation: { ok: true, waitMs: 0 }, tat };
  const next = Math.max(tat, now) + n * intervalMs;
  const waitMs = Math.max(0, Math.ceil(next - burst * intervalMs - now));
  if (waitMs > maxWaitMs) return { reservation: { ok: false, retryAfterMs: waitMs }, tat };
  return { reservation: { ok: true, waitMs }, tat: next };
}

/** A token bucket in this process: the budget of a peer only this process talks to, or a test's. */
export class TokenBucket extends RateBudget {
  private tat = 0;
  private pausedAt = -Infinity;

  constructor(limit: RateLimit, clock: Clock = realClock) {
    super(limit, clock);
  }

  reserve(n: number, maxWaitMs = Infinity): Reservation {
    const { reservation, tat } = reserveTokens(this.tat, this.clock.now(), n, this.intervalMs, this.burst, maxWaitMs);
    this.tat = tat;
    return reservation;
  }

  refund(n: number): void {
    this.tat -= n * this.intervalMs;
  }

  pause(ms: number): void {
    const now = this.clock.now();
    if (this.intervalMs === 0 || !(ms > 0) || now < this.pausedAt + ms) return;
    this.pausedAt = now;
    this.tat = Math.max(this.tat, now) + ms;
  }
}
