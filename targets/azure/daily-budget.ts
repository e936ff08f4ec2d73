/**
 * The hub's daily message allowance, as the connector spends it: every reported patch costs ⌈size / chunk⌉
 * billed messages, taken from a daily budget per hub that every worker shares (the limits toolkit's, in Redis in
 * a worker). When it is spent, or the hub says its quota is exceeded (403002, or connections closed right after
 * the CONNACK), publishing pauses until 00:00 UTC; the changes stay pending.
 */
import type { DailyBudget } from '../../shared/limits';
import { nextUtcMidnight } from './tiers';

export type Spend =
  | { ok: true }
  /** `pausedUntil`: spent until then (00:00 UTC); absent when the budget could not be checked. */
  | { ok: false; retryAfterMs: number; reason: string; pausedUntil?: number };

export class DailyMessageBudget {
  /** Until when this worker knows the budget or the hub's quota to be spent. */
  private pausedUntil = 0;

  constructor(
    private readonly hub: string,
    readonly limit: number,
    private readonly budget: DailyBudget,
    private readonly now: () => number
  ) {}

  /** Spends `n` messages of today's budget, or says how long until 00:00 UTC. */
  async spend(n: number): Promise<Spend> {
    const paused = this.paused();
    if (paused) return paused;
    const spent = await this.budget.spend(n);
    if (spent.ok) return { ok: true };
    if (spent.why === 'unavailable') {
      return { ok: false, retryAfterMs: spent.retryAfterMs, reason: 'daily message budget unavailable (Redis)' };
    }
    return this.exhaust();
  }

  /** The hub said its daily quota is exceeded, or the budget is spent: stop until 00:00 UTC. */
  exhaust(): Spend {
    this.pausedUntil = nextUtcMidnight(this.now());
    return this.paused()!;
  }

  /** The pause, while it lasts. */
  paused(): Spend | undefined {
    const now = this.now();
    if (now >= this.pausedUntil) return undefined;
    const until = new Date(this.pausedUntil).toISOString();
    return {
      ok: false,
      pausedUntil: this.pausedUntil,
      retryAfterMs: this.pausedUntil - now,
      reason: `daily message budget of hub ${this.hub} spent (${this.limit} messages): paused until ${until}`,
    };
  }
}
