/**
 * Budgets shared in Redis: several clients (as several workers) take from one bucket per peer, fairly, within the
 * rate and the burst; the budget waits while Redis is down, never sends unchecked; daily allowances reset at
 * 00:00 UTC.
 */
import type { ChildProcess } from 'node:child_process';
import Redis from 'ioredis';
import {
  LocalDailyBudget,
  peerId,
  RedisDailyBudget,
  RedisRateBudget,
  redisBudgets,
  type RateBudget,
} from '../../shared/limits';
import { PACING_STRETCH } from '../../shared/limits/rate-budget';
import { connectRedis, type RedisClient } from '../../state/redis';
import { freePort, startRedis, stop } from '../setup/processes';
import { testStack, uniqueName } from '../setup/stack';
import { waitUntil } from '../support/wait-until';

const clients: Redis[] = [];
function worker(url = testStack.redisUrl): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 3 });
  clients.push(client);
  return client;
}
afterAll(() => clients.forEach((c) => c.disconnect()));

/** Runs `lanes` concurrent callers on `budget` until `stop()` says so; records when each was granted. */
async function drive(budget: RateBudget, lanes: number, grants: number[], stop: () => boolean): Promise<number> {
  let taken = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (!stop()) {
        await budget.take();
        if (stop()) return; // granted after the run ended: not counted, like a request not sent
        grants.push(Date.now());
        taken++;
      }
    })
  );
  return taken;
}

/** The most grants in any window of `ms`. */
function peakIn(grants: number[], ms: number): number {
  const sorted = [...grants].sort((a, b) => a - b);
  let peak = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i] - sorted[j] >= ms) j++;
    peak = Math.max(peak, i - j + 1);
  }
  return peak;
}

describe('RedisRateBudget', () => {
  it('is one bucket for every worker: the peer sees the rate, and groups of equal concurrency get equal shares', async () => {
    const peer = peerId('test', uniqueName('shared'));
    const limit = { perSecond: 20, burst: 1 };
    // Three workers, each working for one group with 4 callers in flight.
    const budgets = [worker(), worker(), worker()].map((r) => redisBudgets(r, { prefix: 'test' }).rate(peer, limit));
    const grants: number[] = [];
    const total = 60;
    const started = Date.now();
    const shares = await Promise.all(budgets.map((b) => drive(b, 4, grants, () => grants.length >= total)));
    const elapsed = Date.now() - started;

    expect(grants.length).toBe(total);
    expect(elapsed).toBeGreaterThanOrEqual(((total - limit.burst) / limit.perSecond) * 1000 - 100);
    // Timers never fire early by more than a millisecond; allow one grant of slack for that.
    expect(peakIn(grants, 1000)).toBeLessThanOrEqual(limit.perSecond + limit.burst + 1);
    for (const share of shares) expect(share).toBeGreaterThanOrEqual(total / 3 - 6);
  });

  it('lets a full bucket go in one burst, then spaces the rest', async () => {
    const budget = redisBudgets(worker(), { prefix: 'test' }).rate(peerId('test', uniqueName('burst')), {
      perSecond: 2,
      burst: 5,
    });
    const started = Date.now();
    await Promise.all(Array.from({ length: 5 }, () => budget.take()));
    expect(Date.now() - started).toBeLessThan(400);
    const reservation = await budget.reserve(1);
    expect(reservation).toMatchObject({ ok: true });
    expect((reservation as { waitMs: number }).waitMs).toBeGreaterThan(300); // 500 ms, less what has passed
    expect(await budget.reserve(1, 100)).toMatchObject({ ok: false }); // would wait ~1 s: nothing taken
  });

  it('a pause (a 429 from the peer) holds back every worker once, however many of them report it', async () => {
    const peer = peerId('test', uniqueName('pause'));
    const [a, b] = [worker(), worker()].map((r) => redisBudgets(r, { prefix: 'test' }).rate(peer, { perSecond: 10 }));
    await a.take();
    await Promise.all([a.pause(1_000), b.pause(1_000)]); // one overload, seen by two workers
    const reservation = await b.reserve(1);
    expect(reservation).toMatchObject({ ok: true });
    const waitMs = (reservation as { waitMs: number }).waitMs;
    expect(waitMs).toBeGreaterThan(900); // 100 ms to the next token, plus the pause, less what has passed
    // Not two pauses: one pause and at most one token's interval as paced (102 ms at 10/s, PACING_STRETCH).
    expect(waitMs).toBeLessThanOrEqual(1_000 + Math.ceil(100 * PACING_STRETCH));
  });

  it('fails closed: while Redis is down callers wait, and they go on once it is back', async () => {
    const port = await freePort();
    let server: ChildProcess | undefined = await startRedis(port);
    try {
      const failures: Error[] = [];
      const budget = new RedisRateBudget(
        worker(`redis://127.0.0.1:${port}`),
        'test:budget:{down}',
        {
          perSecond: 1000,
        },
        { timeoutMs: 300, onUnavailable: (e) => failures.push(e) }
      );
      await budget.take();
      await stop(server);
      server = undefined;

      let granted = false;
      const waiting = budget.take().then(() => (granted = true));
      await waitUntil(() => failures.length >= 3, 'the budget has found Redis unavailable three times');
      expect(granted).toBe(false);

      server = await startRedis(port);
      await waiting;
      expect(granted).toBe(true);
    } finally {
      await stop(server);
    }
  });
});

describe('daily budgets', () => {
  it('share one allowance in Redis and refuse beyond it until 00:00 UTC', async () => {
    const key = `test:daily:{${uniqueName('hub')}}`;
    const [a, b] = [new RedisDailyBudget(worker(), key, 10), new RedisDailyBudget(worker(), key, 10)];
    expect(await a.spend(6)).toEqual({ ok: true, left: 4 });
    const refused = await b.spend(5);
    expect(refused).toMatchObject({ ok: false, why: 'spent' });
    const toMidnight = 86_400_000 - (Date.now() % 86_400_000);
    expect((refused as { retryAfterMs: number }).retryAfterMs).toBeLessThanOrEqual(toMidnight + 5_000);
    await a.refund(2);
    expect(await b.spend(5)).toEqual({ ok: true, left: 1 });

    // What was spent yesterday does not count today.
    const yesterday = Math.floor(Date.now() / 86_400_000) - 1;
    await worker().hset(key, 'day', String(yesterday), 'used', '10');
    expect(await a.spend(10)).toEqual({ ok: true, left: 0 });
  });

  it('start again at 00:00 UTC in the process too', async () => {
    let now = Date.UTC(2026, 0, 1, 23, 59, 0);
    const budget = new LocalDailyBudget(3, () => now);
    expect(await budget.spend(3)).toEqual({ ok: true, left: 0 });
    expect(await budget.spend(1)).toEqual({ ok: false, retryAfterMs: 60_000, why: 'spent' });
    now += 60_000;
    expect(await budget.spend(1)).toEqual({ ok: true, left: 2 });
  });
});

describe('on a Redis Cluster', () => {
  const cluster: RedisClient[] = [];
  afterAll(() => cluster.forEach((c) => c.disconnect()));
  /** A worker's connection as the worker makes it from KITE_REDIS_URL=redis-cluster://… */
  const clusterWorker = () => {
    const client = connectRedis(testStack.redisClusterUrl);
    cluster.push(client);
    return client;
  };

  it('every worker takes from one bucket per peer, within the rate, and a daily allowance is one too', async () => {
    const peer = peerId('test', uniqueName('cluster'));
    const limit = { perSecond: 20, burst: 1 };
    const workers = [clusterWorker(), clusterWorker(), clusterWorker()];
    expect(workers.every((w) => w.isCluster)).toBe(true);
    const budgets = workers.map((r) => redisBudgets(r, { prefix: 'test' }).rate(peer, limit));
    const grants: number[] = [];
    const total = 40;
    const started = Date.now();
    await Promise.all(budgets.map((b) => drive(b, 3, grants, () => grants.length >= total)));
    expect(grants.length).toBe(total);
    expect(Date.now() - started).toBeGreaterThanOrEqual(((total - limit.burst) / limit.perSecond) * 1000 - 100);
    expect(peakIn(grants, 1000)).toBeLessThanOrEqual(limit.perSecond + limit.burst + 1);

    const [a, b] = workers.map((r) => redisBudgets(r, { prefix: 'test' }).daily(peer, 10));
    expect(await a.spend(6)).toEqual({ ok: true, left: 4 });
    expect(await b.spend(5)).toMatchObject({ ok: false, why: 'spent' });
    await a.refund(2);
    expect(await b.spend(5)).toEqual({ ok: true, left: 1 });
  });
});
