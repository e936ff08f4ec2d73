/**
 * The hub's daily message allowance, as the connector spends it: every reported patch costs ⌈size / chunk⌉
 * billed messages. When this target's budget for the UTC day is spent, or the hub says its quota is exceeded
 * (403002, or connections closed right after the CONNACK), publishing pauses until 00:00 UTC; the changes stay
 * pending. The counter must be shared by every worker publishing to the hub (see `DailyCounter`).
 */
import { nextUtcMidnight, utcDay } from './tiers';

/** A per-UTC-day counter shared by every worker (Redis in production, in-process in tests of one worker). */
export interface DailyCounter {
  /** Adds `n` to `day`'s count if it stays within `limit`; returns whether it did. */
  spend(day: string, n: number, limit: number): Promise<boolean>;
  /** Marks `day` as spent (the hub said so). */
  exhaust(day: string, limit: number): Promise<void>;
  /** `day`'s count. */
  used(day: string): Promise<number>;
}

/** A DailyCounter in this process only. */
export class LocalDailyCounter implements DailyCounter {
  private readonly counts = new Map<string, number>();

  async spend(day: string, n: number, limit: number): Promise<boolean> {
    const used = this.counts.get(day) ?? 0;
    if (used + n > limit) return false;
    this.counts.set(day, used + n);
    return true;
  }

  async exhaust(day: string, limit: number): Promise<void> {
    this.counts.set(day, Math.max(limit, this.counts.get(day) ?? 0));
  }

  async used(day: string): Promise<number> {
    return this.counts.get(day) ?? 0;
  }
}

export type Spend = { ok: true } | { ok: false; retryAfterMs: number; reason: string };

export class DailyMessageBudget {
  constructor(
    private readonly hub: string,
    readonly limit: number,
    private readonly counter: DailyCounter,
    private readonly now: () => number
  ) {}

  /** Spends `n` messages of today's budget, or says how long until 00:00 UTC. */
  async spend(n: number): Promise<Spend> {
    const now = this.now();
    if (await this.counter.spend(utcDay(now), n, this.limit)) return { ok: true };
    return this.paused(now);
  }

  /** The hub said its daily quota is exceeded: stop until 00:00 UTC. */
  async exhaust(): Promise<Spend> {
    const now = this.now();
    await this.counter.exhaust(utcDay(now), this.limit);
    return this.paused(now);
  }

  /** Today's spend and whether the target is paused, for status and metrics. */
  async state(): Promise<{ used: number; limit: number; pausedUntil?: number }> {
    const now = this.now();
    const used = await this.counter.used(utcDay(now));
    return { used, limit: this.limit, ...(used >= this.limit ? { pausedUntil: nextUtcMidnight(now) } : {}) };
  }

  private paused(now: number): Spend {
    const until = new Date(nextUtcMidnight(now)).toISOString();
    return {
      ok: false,
      retryAfterMs: nextUtcMidnight(now) - now,
      reason: `daily message budget of hub ${this.hub} spent (${this.limit} messages): paused until ${until}`,
    };
  }
}
