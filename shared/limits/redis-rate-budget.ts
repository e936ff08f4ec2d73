/**
 * A rate budget kept in Redis, so that every worker takes from one bucket per peer. One key per bucket and one
 * Lua script per step, so it works on Redis Cluster as on a single server. The script reads Redis's own clock
 * (`TIME`), so workers with skewed clocks still share one bucket.
 *
 * It fails closed: while Redis does not answer, nothing is reserved and callers wait (retrying with a short
 * backoff); a worker never sends on a budget it could not check.
 */
import type { Cluster, Redis } from 'ioredis';
import { realClock, type Clock } from './clock';
import { RateBudget, type RateLimit, type Reservation } from './rate-budget';

/** KEYS[1] the bucket's `tat` (ms); ARGV n, interval ms, burst, longest accepted wait (ms, -1 = any). */
const RESERVE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n, interval, burst, maxWait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local nextTat = math.max(tat, now) + n * interval
local wait = math.max(0, math.ceil(nextTat - burst * interval - now))
if maxWait >= 0 and wait > maxWait then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%.3f', nextTat), 'PX', math.ceil(nextTat - now) + 60000)
return {1, wait}
`;

/** KEYS[1] the bucket; ARGV tokens × interval to give back. */
const REFUND_SCRIPT = `
local tat = tonumber(redis.call('GET', KEYS[1]) or 'nil')
if tat == nil then return 0 end
redis.call('SET', KEYS[1], string.format('%.3f', tat - tonumber(ARGV[1])), 'KEEPTTL')
return 1
`;

/**
 * KEYS[1] the bucket, KEYS[2] its pause marker (same hash tag); ARGV pause ms: every later token comes `ms` later,
 * unless the bucket was paused less than `ms` ago (see RateBudget.pause).
 */
const PAUSE_SCRIPT = `
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) == false then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 60000)
return 1
`;

type Client = Redis | Cluster;
type ScriptedClient = Client & {
  kiteBudgetReserve(
    key: string,
    n: number,
    interval: number,
    burst: number,
    maxWait: number
  ): Promise<[number, number]>;
  kiteBudgetRefund(key: string, amount: number): Promise<number>;
  kiteBudgetPause(key: string, marker: string, ms: number): Promise<number>;
};

/** Defines the budget scripts on a client once (EVALSHA, loading the script when Redis does not know it). */
export function scripted(redis: Client): ScriptedClient {
  const client = redis as ScriptedClient;
  if (!client.kiteBudgetReserve) {
    redis.defineCommand('kiteBudgetReserve', { numberOfKeys: 1, lua: RESERVE_SCRIPT });
    redis.defineCommand('kiteBudgetRefund', { numberOfKeys: 1, lua: REFUND_SCRIPT });
    redis.defineCommand('kiteBudgetPause', { numberOfKeys: 2, lua: PAUSE_SCRIPT });
  }
  return client;
}

export interface RedisRateBudgetOptions {
  /** How long one Redis call may take before the budget counts Redis as unavailable (and waits). @default 2000 */
  timeoutMs?: number;
  /** Told each time Redis could not be reached (for a log line); the budget keeps waiting. @default none */
  onUnavailable?: (error: Error) => void;
  /** @default the real clock */
  clock?: Clock;
}

/** Wait before asking an unavailable Redis again: 100 ms, doubling to 2 s. */
const UNAVAILABLE_MIN_MS = 100;
const UNAVAILABLE_MAX_MS = 2_000;

export class RedisRateBudget extends RateBudget {
  private readonly redis: ScriptedClient;
  private readonly timeoutMs: number;
  private failures = 0;

  constructor(
    redis: Client,
    /** The bucket's key; `<key>:paused` marks a pause, so on Redis Cluster give the key a hash tag. */
    readonly key: string,
    limit: RateLimit,
    private readonly options: RedisRateBudgetOptions = {}
  ) {
    super(limit, options.clock ?? realClock);
    this.redis = scripted(redis);
    this.timeoutMs = options.timeoutMs ?? 2_000;
  }

  async reserve(n: number, maxWaitMs = Infinity): Promise<Reservation> {
    if (this.intervalMs === 0) return { ok: true, waitMs: 0 };
    const maxWait = Number.isFinite(maxWaitMs) ? Math.max(0, Math.floor(maxWaitMs)) : -1;
    try {
      const [ok, wait] = await this.withTimeout(
        this.redis.kiteBudgetReserve(this.key, n, this.intervalMs, this.burst, maxWait)
      );
      this.failures = 0;
      return ok === 1 ? { ok: true, waitMs: Number(wait) } : { ok: false, retryAfterMs: Number(wait) };
    } catch (err) {
      // Fail closed: nothing is reserved; the caller waits and asks again.
      this.options.onUnavailable?.(err as Error);
      const retryAfterMs = Math.min(UNAVAILABLE_MAX_MS, UNAVAILABLE_MIN_MS * 2 ** this.failures++);
      return { ok: false, retryAfterMs };
    }
  }

  async refund(n: number): Promise<void> {
    if (this.intervalMs === 0) return;
    // Best effort: a refund lost to an unavailable Redis only leaves the budget unused, never exceeded.
    await this.withTimeout(this.redis.kiteBudgetRefund(this.key, n * this.intervalMs)).catch((err: Error) =>
      this.options.onUnavailable?.(err)
    );
  }

  async pause(ms: number): Promise<void> {
    if (this.intervalMs === 0 || !(ms > 0)) return;
    // Best effort: a pause lost to an unavailable Redis leaves each worker's own retry backoff.
    await this.withTimeout(this.redis.kiteBudgetPause(this.key, `${this.key}:paused`, Math.ceil(ms))).catch(
      (err: Error) => this.options.onUnavailable?.(err)
    );
  }

  private withTimeout<T>(call: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Redis did not answer the rate budget ${this.key} within ${this.timeoutMs} ms`)),
        this.timeoutMs
      );
    });
    call.catch(() => undefined); // a late failure after the timeout is already accounted for
    return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
  }
}
