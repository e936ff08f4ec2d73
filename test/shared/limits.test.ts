import { getEventListeners } from 'node:events';
import { KeyedLock, Semaphore, sleep, sleepUnlessAborted, TokenBucket, type Clock } from '../../shared/limits';
import { ARRIVAL_MARGIN_MS } from '../../shared/limits/rate-budget';

// A budget paces at 98 % of its rate (PACING_STRETCH): 4/s spaces tokens 255 ms apart, 10/s 102 ms.

/** Sleeping advances the time only when `advance` is set, so concurrent callers all start at 0. */
function fakeClock(advance: boolean): Clock & { slept: number[]; at: number } {
  const clock = {
    at: 0,
    slept: [] as number[],
    now: () => clock.at,
    sleep: async (ms: number) => {
      if (ms > 0) clock.slept.push(ms);
      if (advance) clock.at += ms;
    },
  };
  return clock;
}

describe('TokenBucket', () => {
  it('spaces takes 1.02/rate apart in call order with the default burst of 1', async () => {
    const concurrent = fakeClock(false);
    const budget = new TokenBucket({ perSecond: 4 }, concurrent);
    await Promise.all([budget.take(), budget.take(), budget.take()]);
    expect(concurrent.slept).toEqual([255, 510]);
    const sequential = fakeClock(true);
    const again = new TokenBucket({ perSecond: 2 }, sequential);
    for (let k = 0; k < 3; k++) await again.take();
    expect(sequential.slept).toEqual([510, 510]);
  });

  it('lets a full bucket go in one burst, then refills at the rate', async () => {
    const clock = fakeClock(false);
    const budget = new TokenBucket({ perSecond: 10, burst: 5 }, clock);
    await Promise.all(Array.from({ length: 7 }, () => budget.take()));
    expect(clock.slept).toEqual([102, 204]); // five at once, then one per 102 ms
    clock.at = 10_000; // a quiet spell refills the bucket, but never beyond its burst
    clock.slept.length = 0;
    await Promise.all(Array.from({ length: 6 }, () => budget.take()));
    expect(clock.slept).toEqual([102]);
  });

  it('reserves once more, instead of spending stale tokens, when a stall woke its caller late', async () => {
    // 10/s: tokens 102 ms apart; a wake up to 112 ms late (10 ms and one interval) still spends.
    const stalled = (lateMs: number[]) => {
      const clock = fakeClock(true);
      const sleep = clock.sleep;
      clock.sleep = async (ms: number) => {
        await sleep(ms);
        if (ms > 0) clock.at += lateMs.shift() ?? 0;
      };
      return clock;
    };
    const sent = async (clock: ReturnType<typeof fakeClock>) => {
      const budget = new TokenBucket({ perSecond: 10 }, clock);
      await budget.take(); // at 0
      await budget.take(); // due at 102
      return { at: clock.at, slept: clock.slept };
    };
    // 110 ms late: spent at 212.
    expect(await sent(stalled([110]))).toEqual({ at: 212, slept: [102] });
    // 400 ms late (woke at 502): the token of 102 is stale; a fresh one is free at once (a burst of 1 refilled).
    expect(await sent(stalled([400]))).toEqual({ at: 502, slept: [102] });
    // Two callers a stall woke together (at 600) for tokens of 102 and 204: one token apart, not at once.
    const clock = fakeClock(false);
    clock.sleep = async (ms: number) => {
      if (ms > 0) clock.slept.push(ms);
      const stalled = ms > 0 && clock.slept.length <= 2;
      await new Promise((resolve) => setImmediate(resolve)); // both callers are asleep before time moves
      clock.at = stalled ? 600 : clock.at + ms;
    };
    const budget = new TokenBucket({ perSecond: 10 }, clock);
    await budget.take(); // at 0
    const spent: number[] = [];
    await Promise.all([budget.take(), budget.take()].map((t) => t.then(() => spent.push(clock.at))));
    expect(spent).toEqual([600, 702]);
  });

  it('keeps every second at the peer within perSecond + burst when sends arrive up to ARRIVAL_MARGIN_MS after leaving', async () => {
    const seconds: { perSecond: number; burst: number; latest: number; inSecond: number }[] = [];
    for (const [perSecond, burst] of [
      [4, 2],
      [10, 1],
      [50, 1],
      [500, 1],
    ]) {
      // How late a wake the budget still spends on, found by trying: later ones reserve again.
      const spendsAt = async (lateMs: number) => {
        const clock = fakeClock(true);
        const budget = new TokenBucket({ perSecond, burst }, clock);
        for (let k = 0; k < burst; k++) await budget.take(); // the bucket emptied at 0
        let asked = 0;
        const reserve = budget.reserve.bind(budget);
        budget.reserve = (n: number, maxWaitMs?: number) => (asked++, reserve(n, maxWaitMs));
        const sleep = clock.sleep;
        clock.sleep = async (ms: number) => {
          await sleep(ms);
          if (asked === 1) clock.at += lateMs;
        };
        await budget.take();
        return { spent: asked === 1, interval: clock.slept[0] };
      };
      let latest = 0;
      while ((await spendsAt(latest + 1)).spent) latest++;
      const { interval } = await spendsAt(0);
      // The worst second: the first m tokens after the bucket emptied spent as late as allowed and arriving
      // ARRIVAL_MARGIN_MS after (one worker stalled), every later one sent and arriving on time (the others), and the
      // bucket's burst on top.
      const arrivals = (m: number) =>
        Array.from({ length: 2 * perSecond }, (_, i) => (i + 1) * interval + (i < m ? latest + ARRIVAL_MARGIN_MS : 0));
      const start = interval + latest + ARRIVAL_MARGIN_MS;
      const inSecond =
        Math.max(
          ...Array.from(
            { length: perSecond + 1 },
            (_, m) => arrivals(m + 1).filter((t) => t >= start && t < start + 1000).length
          )
        ) +
        (burst - 1);
      seconds.push({ perSecond, burst, latest, inSecond });
    }
    expect(seconds.filter((s) => s.inSecond > s.perSecond + s.burst)).toEqual([]);
  });

  it('counts a reply read late as a late wake: its tokens were due when the bucket answered', async () => {
    // A shared bucket answers at once, but a busy process reads one answer 130 ms late: the token of 102 it was
    // given reaches the peer at 232. Spent there as if on time, the next caller's fresh token (the bucket refilled
    // meanwhile) goes out at 232 too: two at once from a bucket of one.
    const clock = fakeClock(true);
    class SlowReply extends TokenBucket {
      delays = [0, 130];
      override reserve(n: number, maxWaitMs?: number) {
        const reservation = super.reserve(n, maxWaitMs);
        clock.at += this.delays.shift() ?? 0;
        return reservation;
      }
    }
    const budget = new SlowReply({ perSecond: 10 }, clock);
    const sent: number[] = [];
    for (let k = 0; k < 3; k++) {
      await budget.take();
      sent.push(clock.at);
    }
    // The late caller reserved again at 232 (a token free at once); the next one waits its interval.
    expect(sent).toEqual([0, 232, 334]);
  });

  it('reserves again while it keeps waking late, three times at most, then spends', async () => {
    // Every answer read 200 ms late: each new reservation is stale by the time it could be spent.
    const clock = fakeClock(true);
    const asked: number[] = [];
    class Lagging extends TokenBucket {
      override reserve(n: number, maxWaitMs?: number) {
        asked.push(clock.at);
        const reservation = super.reserve(n, maxWaitMs);
        if (asked.length > 1) clock.at += 200;
        return reservation;
      }
    }
    const budget = new Lagging({ perSecond: 10 }, clock);
    await budget.take(); // at 0
    await budget.take();
    expect(asked).toEqual([0, 0, 302, 502, 702]);
    expect(clock.at).toBe(902);
  });

  it('takes several tokens at once, and nothing when the caller will not wait that long', () => {
    const clock = fakeClock(false);
    const budget = new TokenBucket({ perSecond: 10, burst: 10 }, clock);
    expect(budget.reserve(10)).toEqual({ ok: true, waitMs: 0 });
    expect(budget.reserve(5, 110)).toEqual({ ok: false, retryAfterMs: 510 });
    expect(budget.reserve(1, 110)).toEqual({ ok: true, waitMs: 102 }); // the refused reservation took nothing
    budget.refund(1);
    expect(budget.reserve(1, 110)).toEqual({ ok: true, waitMs: 102 });
  });

  it('is unlimited at 0 and Infinity, and refuses a negative rate or a burst below 1', async () => {
    for (const perSecond of [0, Infinity]) {
      const clock = fakeClock(true);
      const budget = new TokenBucket({ perSecond }, clock);
      for (let k = 0; k < 10; k++) await budget.take();
      expect(clock.slept).toEqual([]);
    }
    expect(() => new TokenBucket({ perSecond: -1 })).toThrow(/rate must be >= 0/);
    expect(() => new TokenBucket({ perSecond: 1, burst: 0 })).toThrow(/burst must be >= 1/);
  });

  it("pauses every later token by a 429's Retry-After, once per pause however many callers report it", async () => {
    const clock = fakeClock(false);
    const budget = new TokenBucket({ perSecond: 4 }, clock);
    await budget.take(); // at 0; the next token would be at 255
    budget.pause(1_000);
    budget.pause(1_000); // the same overload, seen by another caller
    await Promise.all([budget.take(), budget.take()]);
    expect(clock.slept).toEqual([1_255, 1_510]);
    clock.at = 5_000; // a new overload, after the first pause ended
    clock.slept.length = 0;
    budget.pause(1_000);
    await budget.take();
    expect(clock.slept).toEqual([1_000]);
  });

  it('gives an aborted caller tokens back to the next one', async () => {
    const budget = new TokenBucket({ perSecond: 1 }); // real clock: the second take would wait a second
    await budget.take();
    const controller = new AbortController();
    const waiting = budget.take(1, controller.signal);
    controller.abort(new Error('disabled'));
    await expect(waiting).rejects.toThrow('disabled');
    expect(budget.reserve(1)).toMatchObject({ ok: true });
    expect((budget.reserve(1) as { waitMs: number }).waitMs).toBeLessThanOrEqual(2_040); // two tokens, 1,020 ms apart
  });

  it('keeps one abort listener on a signal however many callers wait on it (issue #16)', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const budget = new TokenBucket({ perSecond: 1 });
      const controller = new AbortController();
      const waits = Array.from({ length: 50 }, () =>
        budget.take(1, controller.signal).then(
          () => 'sent',
          () => 'aborted'
        )
      );
      await new Promise((r) => setImmediate(r)); // every caller is now waiting
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
      controller.abort();
      const results = await Promise.all(waits);
      expect(results.filter((r) => r === 'aborted').length).toBeGreaterThanOrEqual(48);
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('sleep', () => {
  it('rejects with the signal reason, and sleepUnlessAborted answers false instead', async () => {
    const controller = new AbortController();
    const slow = sleep(60_000, controller.signal);
    const quiet = sleepUnlessAborted(60_000, controller.signal);
    controller.abort(new Error('stop'));
    await expect(slow).rejects.toThrow('stop');
    await expect(quiet).resolves.toBe(false);
    await expect(sleepUnlessAborted(1)).resolves.toBe(true);
    await expect(sleep(1, controller.signal)).rejects.toThrow('stop');
  });
});

describe('Semaphore', () => {
  it('bounds holders, serves waiters in order, and passes an aborted waiter’s place on', async () => {
    const semaphore = new Semaphore(2);
    const order: string[] = [];
    const a = await semaphore.acquire();
    const b = await semaphore.acquire();
    const controller = new AbortController();
    const c = semaphore.acquire(controller.signal);
    const d = semaphore.acquire().then((release) => (order.push('d'), release));
    const e = semaphore.acquire().then((release) => (order.push('e'), release));
    controller.abort(new Error('cancelled'));
    await expect(c).rejects.toThrow('cancelled');
    a();
    a(); // a second release is a no-op
    const releaseD = await d;
    expect(order).toEqual(['d']);
    b();
    const releaseE = await e;
    expect(order).toEqual(['d', 'e']);
    releaseD();
    releaseE();
    await semaphore.run(async () => undefined);
    expect(() => new Semaphore(0)).toThrow(/size/);
  });
});

describe('KeyedLock', () => {
  it('runs work of one key in call order, and other keys alongside', async () => {
    const lock = new KeyedLock();
    const log: string[] = [];
    let releaseFirst!: () => void;
    const first = lock.run('a', () => new Promise<void>((r) => (releaseFirst = r)).then(() => void log.push('a1')));
    const second = lock.run('a', async () => void log.push('a2'));
    await lock.run('b', async () => void log.push('b1'));
    expect(log).toEqual(['b1']);
    releaseFirst();
    await Promise.all([first, second]);
    expect(log).toEqual(['b1', 'a1', 'a2']);
    expect(lock.size).toBe(0);
  });
});
