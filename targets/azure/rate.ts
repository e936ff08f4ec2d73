/**
 * Client-side rate budgets. IoT Hub throttles per hub and per operation class, so one bucket per class is shared
 * by every publish of the target; a 429 pauses the whole class, not just the request that saw it.
 */

/** The wait a caller should accept before giving the item back as throttled. */
export const MAX_QUEUE_WAIT_MS = 15_000;

/** Hub throttling: at least 10 s (the hub's own "Wait 10 seconds" text), doubling, at most 60 s. */
const THROTTLE_MIN_MS = 10_000;
const THROTTLE_MAX_MS = 60_000;
/** A dropped connection may be the hub shedding load (it disconnects on 429002): back off briefly. */
const DROP_MIN_MS = 500;
const DROP_MAX_MS = 30_000;

export type Reservation =
  | { ok: true; waitMs: number }
  /** `paused`: the hub throttled this class recently; otherwise the client-side budget is spent. */
  | { ok: false; retryAfterMs: number; paused: boolean };

/** A token bucket with burst `capacity`, refilled at `capacity` tokens per `periodMs`, plus a shared pause. */
export class RateBudget {
  private tokens: number;
  private last = Date.now();
  /** After a 429: callers are told to come back, not queued (the hub asked everyone to slow down). */
  private throttledUntil = 0;
  /** After a drop: callers wait it out. */
  private pausedUntil = 0;
  private throttleStreak = 0;
  private dropStreak = 0;

  constructor(
    readonly capacity: number,
    private readonly periodMs: number
  ) {
    this.tokens = capacity;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.capacity) / this.periodMs);
    this.last = now;
  }

  /**
   * Takes `n` tokens if they will be available within `maxWaitMs`, and says how long to wait before using them.
   * Otherwise takes nothing and says when to come back. Tokens may go negative: that queues later callers.
   */
  reserve(n: number, maxWaitMs = MAX_QUEUE_WAIT_MS): Reservation {
    const now = Date.now();
    this.refill(now);
    if (this.throttledUntil > now) return { ok: false, retryAfterMs: this.throttledUntil - now, paused: true };
    const pauseMs = Math.max(0, this.pausedUntil - now);
    const refillMs = this.tokens >= n ? 0 : ((n - this.tokens) * this.periodMs) / this.capacity;
    const waitMs = Math.ceil(Math.max(pauseMs, refillMs));
    if (waitMs > maxWaitMs) return { ok: false, retryAfterMs: waitMs, paused: false };
    this.tokens -= n;
    return { ok: true, waitMs };
  }

  /** Gives back tokens that were reserved but not spent (e.g. the caller was aborted). */
  refund(n: number): void {
    this.tokens = Math.min(this.capacity, this.tokens + n);
  }

  /** The hub said 429: pause the class. Returns the pause in ms, for the outcome's retryAfterMs. */
  throttled(retryAfterMs?: number): number {
    const backoff = Math.min(THROTTLE_MAX_MS, THROTTLE_MIN_MS * 2 ** this.throttleStreak++);
    const ms = Math.max(backoff, retryAfterMs ?? 0);
    this.throttledUntil = Math.max(this.throttledUntil, Date.now() + ms);
    return ms;
  }

  /** A connection dropped mid-operation: pause briefly, growing while drops repeat. */
  dropped(): number {
    const ms = Math.min(DROP_MAX_MS, DROP_MIN_MS * 2 ** this.dropStreak++);
    this.pausedUntil = Math.max(this.pausedUntil, Date.now() + ms);
    return ms;
  }

  succeeded(): void {
    this.throttleStreak = 0;
    this.dropStreak = 0;
  }
}

/** Resolves after `ms`, or early (with false) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (ms <= 0) return Promise.resolve(!signal?.aborted);
  return new Promise((resolve) => {
    const onAbort = () => (clearTimeout(timer), resolve(false));
    const timer = setTimeout(() => (signal?.removeEventListener('abort', onAbort), resolve(true)), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A counting semaphore: bounds the device connections open at once. */
export class Semaphore {
  private waiters: (() => void)[] = [];
  private free: number;

  constructor(size: number) {
    this.free = size;
  }

  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiters.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/** Serialises work per key across overlapping publishes: one device id, one operation at a time. */
export class KeyedLock {
  private tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      done();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** The reason given for an item that the rate budget sends back. */
export function budgetReason(operation: string, paused: boolean): string {
  return paused ? `${operation}s paused after the hub throttled` : `${operation} budget exhausted`;
}
