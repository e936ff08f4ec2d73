/**
 * The hub's daily message allowance, as the connector spends it: every reported patch costs ⌈size / chunk⌉
 * billed messages, taken from a daily budget per hub that every worker shares (the limits toolkit's, in Redis in
 * a worker). When it is spent, or the hub says its own quota is exceeded (403002, or connections closed right
 * after the CONNACK), publishing pauses until 00:00 UTC; the changes stay pending. The pause says which of the
 * two it is: the connector's budget (`dailyMessageBudget`, a setting) or the hub's quota (the hub's tier and units,
 * and everything else that sends messages to it).
 */
import type { DailyBudget } from '../../shared/limits';
import { nextUtcMidnight } from './tiers';

/**
 * Why a target pauses until 00:00 UTC, as the `cause` label of `kite_cc_target_paused_until`:
 * `hub-quota`: the hub refused with 403002 IotHubQuotaExceeded (its daily quota is spent);
 * `daily-budget`: the connector's own `dailyMessageBudget` for the hub is spent (the hub was never refused).
 */
export type DailyPauseCause = 'hub-quota' | 'daily-budget';

export type Spend =
  | { ok: true }
  /** `pausedUntil`: spent until then (00:00 UTC), and by whom; absent when the budget could not be checked. */
  | { ok: false; retryAfterMs: number; reason: string; pausedUntil?: number; pauseCause?: DailyPauseCause };

export class DailyMessageBudget {
  /** Until when this worker knows the budget or the hub's quota to be spent. */
  private pausedUntil = 0;
  private cause: DailyPauseCause = 'daily-budget';

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
    return this.exhaust('daily-budget');
  }

  /**
   * Stop until 00:00 UTC: the connector's budget is spent (`daily-budget`), or the hub said its own daily quota
   * is exceeded (`hub-quota`, which wins over the budget while both apply: it is what the operator must look at).
   */
  exhaust(cause: DailyPauseCause): Spend {
    const until = nextUtcMidnight(this.now());
    if (this.now() >= this.pausedUntil || cause === 'hub-quota') this.cause = cause;
    this.pausedUntil = until;
    return this.paused()!;
  }

  /** The pause, while it lasts. */
  paused(): Spend | undefined {
    const now = this.now();
    if (now >= this.pausedUntil) return undefined;
    const until = new Date(this.pausedUntil).toISOString();
    const reason =
      this.cause === 'hub-quota'
        ? `hub ${this.hub} refused with 403002 IotHubQuotaExceeded: the hub's own daily message quota is spent ` +
          `(its tier and units set it; other senders to the hub count too); paused until ${until}, when the hub ` +
          `resets it`
        : `the connector's daily message budget for hub ${this.hub} is spent (dailyMessageBudget: ${this.limit} ` +
          `messages, shared by every worker); the hub did not refuse anything; paused until ${until}`;
    return {
      ok: false,
      pausedUntil: this.pausedUntil,
      pauseCause: this.cause,
      retryAfterMs: this.pausedUntil - now,
      reason,
    };
  }
}
