/**
 * Kite's per-account request budget, enforced as Kite does: every API request of an account (its client
 * certificate), whatever the connection or the client, takes from one bucket; beyond it Kite answers 429 with
 * POL.1005 "Request rate per period control not pass." and a Retry-After. Kite publishes no figure; customers
 * report about 4 requests/s per customer (getSubscriptions "capped at 4 TPS", POL 1005) — see
 * /work/shared/reference/kite-api.md §1.9. The bucket is a GCRA token bucket: `perSecond` tokens a second, at most
 * `burst` at once. It also keeps what a soak reports: requests admitted and refused, and the peak admitted in
 * any one-second window.
 */

/** The account budget. */
export interface SimulatorRateLimit {
  /** API requests per second per account; 0 = unlimited. @default 0 (the demo and most tests) */
  perSecond: number;
  /** Requests admitted at once after a quiet spell. @default 2 (tolerates a client's network jitter of one interval) */
  burst?: number;
}

/** What the budget saw. */
export interface RateLimitStats {
  perSecond: number;
  burst: number;
  /** API requests admitted. */
  admitted: number;
  /** API requests answered 429 POL.1005. */
  limited: number;
  /** The most requests admitted in any window of one second. */
  peakPerSecond: number;
}

/** One API request as the budget judged it, for tests that check who backed off when. */
export interface RequestLogEntry {
  /** Arrival, epoch ms (real time). */
  at: number;
  /** 200 when admitted (whatever the answer then was), 429 when refused. */
  status: 200 | 429;
  /** The request's path and query. */
  path: string;
  /** The request's User-Agent, if any: tells clients of one account apart in tests. */
  agent?: string;
}

const LOG_MAX = 100_000;

/** Per-account buckets, keyed by the client certificate's fingerprint ('anonymous' without mTLS). */
export class AccountBudgets {
  private readonly tat = new Map<string, number>();
  /** Times of the admitted requests; those before `windowStart` fell out of the last second. */
  private window: number[] = [];
  private windowStart = 0;
  private readonly stats: RateLimitStats = { perSecond: 0, burst: 2, admitted: 0, limited: 0, peakPerSecond: 0 };
  /** A ring of the last LOG_MAX requests: once full, `oldest` is where the next entry goes. */
  private readonly entries: RequestLogEntry[] = [];
  private oldest = 0;

  constructor(
    limit: SimulatorRateLimit = { perSecond: 0 },
    private readonly now: () => number = Date.now
  ) {
    this.setLimit(limit);
  }

  /**
   * Changes the budget from now on (e.g. a soak's first sync unlimited, then Kite's 4/s); the counts go on, and
   * `peakPerSecond` starts again from the requests of the last second.
   */
  setLimit(limit: SimulatorRateLimit): void {
    const burst = limit.burst ?? 2;
    if (!(limit.perSecond >= 0)) throw new Error(`rateLimit.perSecond must be >= 0, got ${limit.perSecond}`);
    if (!(burst >= 1)) throw new Error(`rateLimit.burst must be >= 1, got ${burst}`);
    const lastSecond = this.window.length - this.windowStart;
    Object.assign(this.stats, { perSecond: limit.perSecond, burst, peakPerSecond: lastSecond });
    this.tat.clear();
  }

  /** Admits one request of `account` (returns undefined) or refuses it (returns Retry-After in whole seconds, ≥ 1). */
  take(account: string, path: string, agent?: string): number | undefined {
    const now = this.now();
    const { perSecond, burst } = this.stats;
    let retryAfterSec: number | undefined;
    if (perSecond > 0) {
      const interval = 1000 / perSecond;
      const next = Math.max(this.tat.get(account) ?? 0, now) + interval;
      const early = next - burst * interval - now;
      if (early > 0) retryAfterSec = Math.max(1, Math.ceil(early / 1000));
      else this.tat.set(account, next);
    }
    this.log({ at: now, status: retryAfterSec === undefined ? 200 : 429, path, agent });
    if (retryAfterSec !== undefined) {
      this.stats.limited++;
      return retryAfterSec;
    }
    this.stats.admitted++;
    // Indices, not shift(): at thousands of requests a second, shifting the window cost the simulator more CPU
    // than answering.
    this.window.push(now);
    while (this.window[this.windowStart] <= now - 1000) this.windowStart++;
    if (this.windowStart > 4096) {
      this.window = this.window.slice(this.windowStart);
      this.windowStart = 0;
    }
    this.stats.peakPerSecond = Math.max(this.stats.peakPerSecond, this.window.length - this.windowStart);
    return undefined;
  }

  snapshot(): RateLimitStats {
    return { ...this.stats };
  }

  /** The last API requests (at most 100,000), oldest first. */
  requestLog(): RequestLogEntry[] {
    return [...this.entries.slice(this.oldest), ...this.entries.slice(0, this.oldest)];
  }

  /**
   * A ring, not splice(): dropping the oldest of 100,000 entries moved every other one, once per request, which
   * made the simulator's CPU per request grow 2.5 times once the log was full (a 100,000-SIM bench cycle).
   */
  private log(entry: RequestLogEntry): void {
    if (this.entries.length < LOG_MAX) {
      this.entries.push(entry);
      return;
    }
    this.entries[this.oldest] = entry;
    this.oldest = (this.oldest + 1) % LOG_MAX;
  }
}
