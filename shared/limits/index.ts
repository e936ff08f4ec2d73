/**
 * The limits toolkit every peer client bounds itself with: rate budgets (token buckets with a burst, in the
 * process or shared in Redis), a semaphore, a keyed lock, and abortable sleeps that share one abort listener per
 * signal.
 */
export { abortError, onAbort } from './abort';
export { realClock, sleep, sleepUnlessAborted, type Clock } from './clock';
export { KeyedLock } from './keyed-lock';
export {
  RateBudget,
  reserveTokens,
  tokenIntervalMs,
  TokenBucket,
  type RateLimit,
  type Reservation,
} from './rate-budget';
export { backoffMs, parseRetryAfter } from './retry';
export { Semaphore } from './semaphore';
export { localBudgets, peerId, redisBudgets, type Budgets, type RedisBudgetsOptions } from './budgets';
export {
  LocalDailyBudget,
  msUntilUtcMidnight,
  RedisDailyBudget,
  type DailyBudget,
  type DailySpend,
} from './daily-budget';
export { RedisRateBudget, type RedisRateBudgetOptions } from './redis-rate-budget';
