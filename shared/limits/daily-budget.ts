/**
 * A daily allowance (e.g. an IoT hub's messages per day): a counter that starts again at 00:00 UTC. In the process
 * (`LocalDailyBudget`) or in Redis (`RedisDailyBudget`, one key, so every worker spends from one allowance; the
 * day is Redis's own clock). The Redis one fails closed: while Redis does not answer, nothing is spent.
 */
import type { Cluster, Redis } from 'ioredis';

export type DailySpend =
  /** Spent; `left` is what remains of today's allowance. */
  | { ok: true; left: number }
  /** Not spent: today's allowance is used up (`spent`), or it could not be checked (`unavailable`). */
  | { ok: false; retryAfterMs: number; why: 'spent' | 'unavailable' };

export interface DailyBudget {
  /** Spends `n` from today's allowance if it has them; else spends nothing. */
  spend(n: number): Promise<DailySpend>;
  /** Gives back `n` spent today but not used (the send did not happen). */
  refund(n: number): Promise<void>;
}

const DAY_MS = 86_400_000;

/** Milliseconds from `now` to the next 00:00 UTC. */
export function msUntilUtcMidnight(now: number): number {
  return DAY_MS - (now % DAY_MS);
}

function checkLimit(limit: number): void {
  if (!(Number.isInteger(limit) && limit >= 0))
    throw new RangeError(`daily limit must be an integer >= 0, got ${limit}`);
}

export class LocalDailyBudget implements DailyBudget {
  private day = -1;
  private used = 0;

  constructor(
    readonly limit: number,
    private readonly now: () => number = Date.now
  ) {
    checkLimit(limit);
  }

  async spend(n: number): Promise<DailySpend> {
    const now = this.now();
    const day = Math.floor(now / DAY_MS);
    if (day !== this.day) {
      this.day = day;
      this.used = 0;
    }
    if (this.used + n > this.limit) return { ok: false, retryAfterMs: msUntilUtcMidnight(now), why: 'spent' };
    this.used += n;
    return { ok: true, left: this.limit - this.used };
  }

  async refund(n: number): Promise<void> {
    if (Math.floor(this.now() / DAY_MS) === this.day) this.used = Math.max(0, this.used - n);
  }
}

/** KEYS[1] a hash {day, used}; ARGV n, limit. Returns {1, left} or {0, ms until 00:00 UTC}. */
const SPEND_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = tostring(math.floor(now / 86400000))
local n, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local used = 0
if redis.call('HGET', KEYS[1], 'day') == day then used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0') end
if used + n > limit then return {0, 86400000 - (now % 86400000)} end
redis.call('HSET', KEYS[1], 'day', day, 'used', used + n)
redis.call('PEXPIRE', KEYS[1], 2 * 86400000)
return {1, limit - used - n}
`;

/** KEYS[1] the hash; ARGV n. Gives back only within the same UTC day. */
const REFUND_SCRIPT = `
local t = redis.call('TIME')
local day = tostring(math.floor(tonumber(t[1]) / 86400))
if redis.call('HGET', KEYS[1], 'day') ~= day then return 0 end
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
redis.call('HSET', KEYS[1], 'used', math.max(0, used - tonumber(ARGV[1])))
return 1
`;

type ScriptedClient = (Redis | Cluster) & {
  kiteDailySpend(key: string, n: number, limit: number): Promise<[number, number]>;
  kiteDailyRefund(key: string, n: number): Promise<number>;
};

export class RedisDailyBudget implements DailyBudget {
  private readonly redis: ScriptedClient;

  constructor(
    redis: Redis | Cluster,
    readonly key: string,
    readonly limit: number,
    private readonly onUnavailable?: (error: Error) => void
  ) {
    checkLimit(limit);
    this.redis = redis as ScriptedClient;
    if (!this.redis.kiteDailySpend) {
      redis.defineCommand('kiteDailySpend', { numberOfKeys: 1, lua: SPEND_SCRIPT });
      redis.defineCommand('kiteDailyRefund', { numberOfKeys: 1, lua: REFUND_SCRIPT });
    }
  }

  async spend(n: number): Promise<DailySpend> {
    try {
      const [ok, value] = await this.redis.kiteDailySpend(this.key, n, this.limit);
      return ok === 1 ? { ok: true, left: Number(value) } : { ok: false, retryAfterMs: Number(value), why: 'spent' };
    } catch (err) {
      this.onUnavailable?.(err as Error);
      return { ok: false, retryAfterMs: 1_000, why: 'unavailable' };
    }
  }

  async refund(n: number): Promise<void> {
    await this.redis.kiteDailyRefund(this.key, n).catch((err: Error) => this.onUnavailable?.(err));
  }
}
