/**
 * Client-side request budget: requests are spaced 1/rate seconds apart (no bursts), because Kite is said to
 * refuse more than about 4 requests/s per customer with POL.* faults. Shared by every call of one client,
 * retries included. The clock is injectable so that tests need no real waiting.
 */
export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => (signal?.removeEventListener('abort', onAbort), resolve()), ms);
      const onAbort = () => (clearTimeout(timer), reject(signal?.reason));
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export class RateBudget {
  private next = 0;
  private readonly intervalMs: number;

  /** @param requestsPerSecond 0 or Infinity = unlimited. */
  constructor(
    requestsPerSecond: number,
    private readonly clock: Clock = realClock
  ) {
    if (!(requestsPerSecond >= 0)) throw new Error(`requestsPerSecond must be >= 0, got ${requestsPerSecond}`);
    this.intervalMs = requestsPerSecond === 0 || requestsPerSecond === Infinity ? 0 : 1000 / requestsPerSecond;
  }

  /** Resolves when the caller may send one request; slots are handed out in call order. */
  async take(signal?: AbortSignal): Promise<void> {
    if (this.intervalMs === 0) return;
    const now = this.clock.now();
    const slot = Math.max(now, this.next);
    this.next = slot + this.intervalMs;
    if (slot > now) await this.clock.sleep(slot - now, signal);
  }
}
