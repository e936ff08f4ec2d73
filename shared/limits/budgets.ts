/**
 * Budgets by peer. A peer is what enforces a limit: a Kite account, an AWS account's endpoint and region, an IoT
 * hub, a webhook URL, a broker. Whoever talks to a peer asks `Budgets` for its budget by the peer's id, so that
 * all clients of one peer share one bucket: in the process (`localBudgets`), or across every worker in Redis
 * (`redisBudgets`, what the worker uses).
 */
import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { LocalDailyBudget, RedisDailyBudget, type DailyBudget } from './daily-budget';
import { TokenBucket, type RateBudget, type RateLimit } from './rate-budget';
import { RedisRateBudget } from './redis-rate-budget';

export interface Budgets {
  /** The rate budget of `peer` (see `peerId`) for one kind of call, e.g. `peerId('aws', …)` + `:shadow`. */
  rate(peer: string, limit: RateLimit): RateBudget;
  /** The daily allowance of `peer`, starting again at 00:00 UTC. */
  daily(peer: string, limit: number): DailyBudget;
}

/**
 * A peer's id: its kind and a digest of what identifies it (URLs, regions, certificate fingerprints), so that
 * Redis keys name the peer without carrying a URL's token or a certificate.
 */
export function peerId(kind: string, ...identity: string[]): string {
  return `${kind}:${createHash('sha256').update(identity.join('\n')).digest('hex').slice(0, 16)}`;
}

/** Budgets of this process only: peers shared with other workers get N times their budget. For tests and tools. */
export function localBudgets(): Budgets {
  const rates = new Map<string, TokenBucket>();
  const days = new Map<string, LocalDailyBudget>();
  return {
    rate(peer, limit) {
      const key = `${peer}|${limit.perSecond}|${limit.burst ?? 1}`;
      let bucket = rates.get(key);
      if (!bucket) rates.set(key, (bucket = new TokenBucket(limit)));
      return bucket;
    },
    daily(peer, limit) {
      const key = `${peer}|${limit}`;
      let budget = days.get(key);
      if (!budget) days.set(key, (budget = new LocalDailyBudget(limit)));
      return budget;
    },
  };
}

export interface RedisBudgetsOptions {
  /** First segment of the budget keys, as the state store's. @default 'cc' */
  prefix?: string;
  /** Told when Redis could not be reached; the budgets keep waiting (fail closed). @default none */
  onUnavailable?: (key: string, error: Error) => void;
}

/**
 * Budgets every worker shares through Redis: `<prefix>:budget:{<peer>}` holds a bucket, `<prefix>:daily:{<peer>}`
 * a daily allowance. Each key is its own hash tag, so any Redis Cluster slot will do.
 */
export function redisBudgets(redis: Redis | Cluster, options: RedisBudgetsOptions = {}): Budgets {
  const prefix = options.prefix ?? 'cc';
  const warn = (key: string) => (error: Error) => options.onUnavailable?.(key, error);
  return {
    rate(peer, limit) {
      const key = `${prefix}:budget:{${peer}}`;
      return new RedisRateBudget(redis, key, limit, { onUnavailable: warn(key) });
    },
    daily(peer, limit) {
      const key = `${prefix}:daily:{${peer}}`;
      return new RedisDailyBudget(redis, key, limit, warn(key));
    },
  };
}
