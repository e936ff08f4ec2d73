/**
 * Fast tier: presence freshness. The selection rule alone (due, spread, cap, budget) over simulated hours, then
 * the fetch activity on the test Redis with an in-memory Kite and a clock the test moves: a settled SIM whose
 * presence changed in Kite without any of its connectivity hints is re-read once due and its change published;
 * an unchanged re-read publishes nothing; the refresh stays within what Kite's budget leaves.
 */
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type SyncActivities } from '../../activities';
import type { ConfiguredTarget } from '../../activities/publish';
import {
  decodeReadTime,
  deliveryHorizon,
  emptyFreshness,
  encodeReadTime,
  keepUpFigures,
  presenceReadBudget,
  recoveryMarginOf,
  refreshAllowance,
  refreshDue,
  selectRefresh,
  slotPeriod,
  type RefreshClock,
} from '../../activities/presence-refresh';
import { createLogger } from '../../shared/log';
import { KEPT } from '../../state/store';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { testStore } from '../support/test-store';

const HOUR = 3_600_000;
/** One crash's recovery with the workflow's activity settings: heartbeat timeout 10 s, first retry 1 s. */
const MARGIN = 11_000;
const iccOf = (n: number) => `8934071100${String(n).padStart(10, '0')}`;

describe('the selection rule', () => {
  test('read times are stored as base-36 seconds, a few bytes per SIM', () => {
    const at = Date.parse('2026-11-30T14:00:00.750Z');
    expect(encodeReadTime(at)).toHaveLength(6);
    expect(decodeReadTime(encodeReadTime(at))).toBe(at - 750);
    expect(decodeReadTime(undefined)).toBeUndefined();
  });

  /**
   * Cycles every `periodMs` from a first sync that read every SIM at once, reading what is due (at most `cap` a
   * cycle, oldest first). Returns the reads per cycle and the oldest age seen at the start of any cycle.
   */
  function simulate(n: number, clock: RefreshClock, cycles: number, cap = Infinity, readAt0: number | undefined = 0) {
    const iccs = Array.from({ length: n }, (_, i) => iccOf(i));
    const readAt = iccs.map(() => readAt0);
    const reads: number[] = [];
    const gaps: number[] = [];
    let oldest = 0;
    for (let c = 1; c <= cycles; c++) {
      const now = c * clock.periodMs;
      for (const at of readAt) if (at !== undefined) oldest = Math.max(oldest, now - at);
      const candidates = iccs.map((icc, index) => ({ icc, readAt: readAt[index], index }));
      const { chosen } = selectRefresh(candidates, now, clock, cap);
      for (const i of chosen) {
        if (readAt[i] !== undefined && readAt[i] !== readAt0) gaps.push(now - readAt[i]!);
        readAt[i] = now;
      }
      reads.push(chosen.length);
    }
    return { reads, oldest, gaps, readAt };
  }

  test('after a first sync the refresh is spread evenly, and no SIM gets older than the max age', () => {
    const clock: RefreshClock = { maxAgeMs: HOUR, intervalMs: 300_000, periodMs: 300_000, recoveryMarginMs: MARGIN };
    const n = 1_200;
    const { reads, oldest, gaps } = simulate(n, clock, 36); // three hours of 5-minute cycles
    expect(oldest).toBeLessThanOrEqual(HOUR);
    // Each SIM once per slot period (about 55 minutes): about 110 a cycle, never a burst of the whole group. The
    // age rule and the slots beat when the slot period is not a whole number of periods (here 11 s short of 11):
    // once a slot period, the SIMs whose read counted as their slot's are due by age a cycle before their next
    // slot, and two cycles' reads come together, the next cycle's nearly empty (main's rule did the same with a
    // period 10 s longer than the interval: 1.8 times, 30 s longer: 2.2 times and an empty cycle).
    const perCycle = (n * clock.periodMs) / slotPeriod(clock);
    expect(Math.max(...reads)).toBeLessThanOrEqual(2.5 * perCycle);
    const spread = reads.slice(1).filter((r) => r >= 0.4 * perCycle).length;
    expect(spread).toBeGreaterThanOrEqual(0.8 * (reads.length - 1)); // all but the cycle after each beat
    const total = reads.reduce((a, b) => a + b, 0);
    expect(total).toBeLessThanOrEqual(Math.ceil((36 * n * clock.periodMs) / slotPeriod(clock)) + n);
    // Never read twice in a row: a refresh follows the one before by at least half a max age.
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(HOUR / 2);
  });

  test('with cycles longer than the interval (a slow fetch) the age rule still keeps every SIM within the max age', () => {
    const clock: RefreshClock = { maxAgeMs: 60_000, intervalMs: 2_000, periodMs: 7_000, recoveryMarginMs: MARGIN };
    const { oldest } = simulate(300, clock, 60);
    expect(oldest).toBeLessThanOrEqual(60_000);
  });

  /**
   * Cycles of `durationMs` every `intervalMs` after the one before ends, each delivering its reads `durationMs`
   * after its fetch began, `crashMs` later still (every cycle crashes: any one may). Returns, over every SIM, the
   * longest time from one read to the delivery of the next: how old the presence the targets hold gets.
   */
  function simulateDelivery(n: number, clock: RefreshClock, cycles: number, durationMs: number, crashMs: number) {
    const iccs = Array.from({ length: n }, (_, i) => iccOf(i));
    const readAt = iccs.map(() => 0);
    let stalest = 0;
    for (let c = 1; c <= cycles; c++) {
      const now = c * clock.periodMs;
      const candidates = iccs.map((icc, index) => ({ icc, readAt: readAt[index], index }));
      for (const i of selectRefresh(candidates, now, clock, Infinity).chosen) {
        stalest = Math.max(stalest, now + durationMs + crashMs - readAt[i]);
        readAt[i] = now;
      }
    }
    return stalest;
  }

  test('the recovery margin: a cycle that crashes and is retried still delivers every SIM within the max age', () => {
    // The margin comes from the activity's own settings: its heartbeat timeout plus Temporal's first retry.
    expect(recoveryMarginOf({ heartbeatTimeoutMs: 10_000, retryPolicy: { initialInterval: 1_000 } })).toBe(MARGIN);
    expect(recoveryMarginOf({ heartbeatTimeoutMs: 10_000, retryPolicy: { initialInterval: '2s' } })).toBe(12_000);
    expect(recoveryMarginOf({ heartbeatTimeoutMs: 10_000 })).toBe(11_000); // Temporal's default initialInterval
    expect(recoveryMarginOf({})).toBe(0); // no heartbeat timeout: no crash is noticed before start-to-close

    // The full-stack test's group: a 60 s max age, cycles of 3 s every 2 s after the one before (a 5 s period).
    const clock: RefreshClock = { maxAgeMs: 60_000, intervalMs: 2_000, periodMs: 5_000, recoveryMarginMs: MARGIN };
    expect(deliveryHorizon(clock)).toBe(5_000 + 3_000 + MARGIN);
    expect(simulateDelivery(300, clock, 100, 3_000, MARGIN)).toBeLessThanOrEqual(60_000);
    // Without the margin the same crashes deliver past the max age, as issue 14 saw (70 s for 60 s).
    expect(simulateDelivery(300, { ...clock, recoveryMarginMs: 0 }, 100, 3_000, MARGIN)).toBeGreaterThan(60_000);
    // The default group: a 1 h max age, a 5-minute interval, cycles of 20 s.
    const hourly: RefreshClock = { maxAgeMs: HOUR, intervalMs: 300_000, periodMs: 320_000, recoveryMarginMs: MARGIN };
    expect(simulateDelivery(1_000, hourly, 40, 20_000, MARGIN)).toBeLessThanOrEqual(HOUR);
  });

  test('a max age too short for the horizon reads every SIM in every cycle, and the figures say that many', () => {
    const clock: RefreshClock = { maxAgeMs: 15_000, intervalMs: 1_000, periodMs: 2_000, recoveryMarginMs: MARGIN };
    const now = 1_000_000;
    expect(refreshDue(iccOf(1), now - 2_000, now, clock)).toBe(true); // read in the previous cycle: due again
    const f = { ...emptyFreshness(15_000), members: 100 };
    keepUpFigures(f, clock, 1_000);
    expect(f.neededPerCycle).toBe(100);
  });

  test('entries without a read time (from before the refresh) are refreshed gradually, once each', () => {
    const clock: RefreshClock = { maxAgeMs: HOUR, intervalMs: 300_000, periodMs: 300_000, recoveryMarginMs: MARGIN };
    const n = 1_200;
    const { reads, readAt } = simulate(n, clock, 12, Infinity, undefined);
    expect(readAt.every((at) => at !== undefined)).toBe(true); // every SIM within an hour
    const perCycle = (n * clock.periodMs) / slotPeriod(clock);
    expect(Math.max(...reads)).toBeLessThanOrEqual(2.5 * perCycle); // see the spread's test above
    expect(reads.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(n + 2 * perCycle);
  });

  test('a cap takes the oldest due SIMs first; the others stay due', () => {
    const clock: RefreshClock = { maxAgeMs: 60_000, intervalMs: 10_000, periodMs: 10_000, recoveryMarginMs: MARGIN };
    const now = 1_000_000;
    const candidates = [0, 1, 2, 3].map((i) => ({ icc: iccOf(i), readAt: now - 55_000 - i * 1_000, index: i }));
    candidates.push({ icc: iccOf(9), readAt: now - 1_000, index: 4 }); // fresh: not due
    const { chosen, due } = selectRefresh(candidates, now, clock, 2);
    expect(due).toBe(4);
    expect(chosen).toEqual([3, 2]);
    expect(refreshDue(iccOf(0), now - 55_000, now, clock)).toBe(true);
    expect(refreshDue(iccOf(9), now - 1_000, now, clock)).toBe(false);
  });

  test("Kite's budget: what the list pages leave of its share, split between the groups of a shared sweep", () => {
    // 4 requests/s over 5 minutes, 80%: 960 requests; 11 list pages; two groups share the sweep.
    expect(presenceReadBudget({ requestsPerSecond: 4, periodMs: 300_000, groups: 2, listRequests: 11 })).toBe(474);
    expect(presenceReadBudget({ requestsPerSecond: 4, periodMs: 300_000, groups: 1, listRequests: 2_000 })).toBe(0);
    expect(presenceReadBudget({ requestsPerSecond: 0, periodMs: 300_000, groups: 1, listRequests: 1 })).toBeUndefined();
    // Paced over the pages: the first of ten equal pages gets a tenth, less its hint reads.
    expect(refreshAllowance(100, 1_000, 100, 4)).toBe(6);
    expect(refreshAllowance(100, 1_000, 1_000, 60)).toBe(40);
    expect(refreshAllowance(undefined, 1_000, 100, 4)).toBe(Infinity);
  });

  test('when the budget cannot keep up, the figures say so and the age they state is the one reached', () => {
    const clock: RefreshClock = { maxAgeMs: HOUR, intervalMs: 300_000, periodMs: 300_000, recoveryMarginMs: MARGIN };
    const n = 1_000;
    const f = { ...emptyFreshness(HOUR), members: n, hintReads: 10 };
    keepUpFigures(f, clock, 60);
    expect(f.neededPerCycle).toBe(Math.ceil((n * 300_000) / slotPeriod(clock)));
    expect(f.budgetPerCycle).toBe(50);
    // Every SIM once in n / 50 cycles, plus the next cycle, its duration and a crash's recovery.
    expect(f.reachableAgeMs).toBe((n / 50) * 300_000 + deliveryHorizon(clock));
    // The rule under that cap: the oldest age it reaches is about what the figures state.
    const { oldest } = simulate(n, clock, 120, 50);
    expect(oldest).toBeGreaterThan(HOUR);
    expect(oldest).toBeLessThanOrEqual(f.reachableAgeMs!);
    expect(oldest).toBeGreaterThanOrEqual(0.8 * f.reachableAgeMs!);

    const enough = { ...emptyFreshness(HOUR), members: n };
    keepUpFigures(enough, clock, 200);
    expect(enough.reachableAgeMs).toBeUndefined();
    keepUpFigures(enough, clock, undefined);
    expect(enough.budgetPerCycle).toBeUndefined();
  });
});

describe('the fetch activity', () => {
  const { store, redis, prefix } = testStore('fresh');

  function setup(options: { sims: number; kiteRequestsPerSecond?: number }) {
    const group = uniqueName('g');
    const kite = new MemoryKite(25);
    const target = new RecordingTarget('cloud');
    let now = Date.parse('2026-11-30T10:00:00Z');
    const acts = createActivities({
      store,
      kite,
      targets: new Map<string, ConfiguredTarget>([[target.name, { target }]]),
      logger: createLogger({}, { level: 'error' }),
      kiteRequestsPerSecond: options.kiteRequestsPerSecond,
      now: () => now,
    });
    const iccs = kite.addSims(group, options.sims);
    return { group, kite, acts, target, iccs, advance: (ms: number) => (now += ms) };
  }

  const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
    runWith({}, fn, ...args);
  /** Runs an activity with `info` as Temporal would give it (the mock has no heartbeat timeout nor retry policy). */
  const runWith = <A extends unknown[], R>(
    info: Partial<Info>,
    fn: (...args: A) => Promise<R>,
    ...args: A
  ): Promise<R> => new MockActivityEnvironment(info).run(fn, ...args) as Promise<R>;

  const config = { presenceMaxAgeMs: 60_000, intervalMs: 10_000 };

  /** One cycle; `kept`: SIMs its fetch staged as KEPT (the publish drops the snapshot). */
  async function cycle(
    acts: SyncActivities,
    group: string,
    n: number,
    fetchInfo: Partial<Info> = {},
    groupConfig: { presenceMaxAgeMs: number; intervalMs: number } = config
  ) {
    const fetched = await runWith(fetchInfo, acts.fetchSnapshot, { group, cycle: n, ...groupConfig });
    const kept = (await redis.hvals(`${prefix}:{${group}}:snap:${n}`)).filter((json) => json === KEPT).length;
    const diffed = await run(acts.diffSnapshot, { group, cycle: n, targets: ['cloud'] });
    await run(acts.publishChanges, { group, cycle: n, target: 'cloud' });
    return { fetched, diffed, kept };
  }

  test('a presence change that leaves the hints alone reaches the target within the max age; an unchanged one sends nothing', async () => {
    const { group, kite, acts, target, iccs, advance } = setup({ sims: 40 });
    await cycle(acts, group, 1);
    await cycle(acts, group, 2); // settles every SIM
    const reads = kite.presenceReads.length;
    // Kite's presence moves on (a new cell, a rejected attach): gprsStatus, ipStatus, ip and apn stay as they were.
    for (const icc of iccs)
      kite.presences.set(icc, { level: 'GPRS', timeStamp: '2026-11-30T10:00:30Z', cause: 'UPDATE_LOCATION' });
    advance(65_000);
    const due = await cycle(acts, group, 3);
    expect(kite.presenceReads.length - reads).toBe(40);
    expect(due.fetched.presence).toMatchObject({ refreshed: 40, hintReads: 0, overdue: 0, oldestAgeMs: 0 });
    expect(due.diffed.targets.cloud.changed).toBe(40);
    for (const icc of iccs) {
      const last = target.received.get(icc)!.at(-1)!;
      expect(Object.keys(last.patch).sort()).toEqual(['event', 'timestamp']);
      expect(last.patch.event).toBe('UPDATE_LOCATION');
    }

    await cycle(acts, group, 4); // settles them again
    const published = target.calls;
    advance(65_000);
    const unchanged = await cycle(acts, group, 5);
    expect(unchanged.fetched.presence).toMatchObject({ refreshed: 40, overdue: 0 });
    expect(unchanged.diffed.targets.cloud.changed).toBe(0);
    expect(target.calls).toBe(published);
    // Re-read and unchanged: still kept (neither mapped nor diffed) and still settled, only the read time moved.
    expect(unchanged.kept).toBe(40);
    const conn = (await store.memberStates(group, iccs)).connectivity;
    expect(conn.every((json) => decodeReadTime(JSON.parse(json!).t) !== undefined)).toBe(true);
    expect(await store.settledSims(group, iccs)).toEqual(iccs.map(() => true));
    expect((await cycle(acts, group, 6)).kept).toBe(40);
  });

  test('between refreshes the presence ages but is not re-read, and status figures count what is past the max age', async () => {
    const { group, kite, acts, advance } = setup({ sims: 30 });
    await cycle(acts, group, 1);
    await cycle(acts, group, 2);
    const reads = kite.presenceReads.length;
    advance(5_000);
    const early = await cycle(acts, group, 3);
    expect(kite.presenceReads.length).toBe(reads);
    expect(early.fetched.presence).toMatchObject({ members: 30, refreshed: 0, overdue: 0, oldestAgeMs: 5_000 });
    expect(early.fetched.presence!.budgetPerCycle).toBeUndefined(); // no Kite budget configured: no cap
  });

  test('refreshes spread over the cycles after a first sync, and every SIM is re-read within the max age', async () => {
    const { group, kite, acts, advance, iccs } = setup({ sims: 120 });
    await cycle(acts, group, 1);
    const firstRead = new Map(iccs.map((icc) => [icc, 0]));
    const perCycle: number[] = [];
    for (let n = 2; n <= 8; n++) {
      advance(10_000);
      const before = kite.presenceReads.length;
      await cycle(acts, group, n);
      perCycle.push(kite.presenceReads.length - before);
      for (const icc of kite.presenceReads.slice(before)) if (!firstRead.get(icc)) firstRead.set(icc, n);
    }
    // 120 SIMs over a 50-second slot period, a cycle every 10 s: about 24 a cycle, never the whole group.
    expect(Math.max(...perCycle)).toBeLessThanOrEqual(60);
    expect(perCycle.filter((reads) => reads > 0).length).toBeGreaterThanOrEqual(4);
    // By 60 s after the first sync (cycle 7) every SIM was re-read.
    expect([...firstRead.values()].every((n) => n >= 2 && n <= 7)).toBe(true);
  });

  test("fetch takes the recovery margin from its own activity's settings: SIMs are re-read that much earlier", async () => {
    // The workflow's settings (workflows/group-sync.ts): a 10 s heartbeat timeout, a first retry after 1 s.
    const workflowSettings: Partial<Info> = { heartbeatTimeoutMs: 10_000, retryPolicy: { initialInterval: 1_000 } };
    /** SIMs re-read in the cycles of the first 40 s after a first sync, one every 10 s. */
    async function rereadBy40s(info: Partial<Info>): Promise<number> {
      const { group, kite, acts, advance } = setup({ sims: 60 });
      await cycle(acts, group, 1, info);
      const firstSync = kite.presenceReads.length;
      for (let n = 2; n <= 5; n++) {
        advance(10_000);
        await cycle(acts, group, n, info);
      }
      return new Set(kite.presenceReads.slice(firstSync)).size;
    }
    // A 60 s max age and a 10 s interval: with the 11 s margin a SIM is due once its age passes 60 - 10 - 11 = 39 s,
    // so 40 s after the first sync every SIM was re-read; without one (no heartbeat timeout: no crash to recover
    // from in time), only those whose slot (every 50 s) fell in those 40 s.
    expect(await rereadBy40s(workflowSettings)).toBe(60);
    expect(await rereadBy40s({})).toBeLessThan(60);
  });

  test("the refresh takes only what Kite's budget leaves after the list pages and the hint reads", async () => {
    // 65 s since the last fetch, counted up to the max age: 1 request/s × 60 s × 0.8 = 48 requests, less one list
    // page: 47 presence reads.
    const { group, kite, acts, advance, iccs } = setup({ sims: 100, kiteRequestsPerSecond: 1 });
    await cycle(acts, group, 1); // the first sync reads every new SIM, whatever the budget: they have no presence
    await cycle(acts, group, 2);
    for (const icc of iccs.slice(0, 3)) kite.update(icc, { ip: '10.9.9.9' }); // three hint-driven reads
    advance(65_000);
    const before = kite.presenceReads.length;
    const capped = await cycle(acts, group, 3);
    expect(kite.presenceReads.length - before).toBe(47);
    expect(capped.fetched.presence).toMatchObject({ hintReads: 3, refreshed: 44, due: 97, budgetPerCycle: 44 });
    // A 60 s period leaves no room within a 60 s max age: every SIM is due every cycle, 100 refreshes a cycle;
    // status says the budget cannot keep up, and what age it reaches (every SIM once in 100 / 44 cycles, plus the
    // next cycle: the period, and a cycle's duration counted up to the interval).
    expect(capped.fetched.presence!.neededPerCycle).toBe(100);
    expect(capped.fetched.presence!.reachableAgeMs).toBe(Math.ceil((100 / 44) * 60_000 + 60_000 + 10_000));
    expect(capped.fetched.presence!.overdue).toBe(53);
  });

  test('a cycle an operator asks for seconds after the last spends those seconds of the budget, not an interval', async () => {
    // A group synced every 2 minutes with a 1-minute max age: every SIM is due in every cycle.
    const slow = { presenceMaxAgeMs: 60_000, intervalMs: 120_000 };
    const { group, kite, acts, advance, iccs } = setup({ sims: 80, kiteRequestsPerSecond: 1 });
    await cycle(acts, group, 1, {}, slow);
    advance(120_000);
    let before = kite.presenceReads.length;
    const regular = await cycle(acts, group, 2, {}, slow);
    // 1 request/s × 120 s × 0.8 = 96, less one list page: every SIM.
    expect(kite.presenceReads.length - before).toBe(80);
    expect(regular.fetched.presence).toMatchObject({ refreshed: 80, budgetPerCycle: 95 });

    // syncNow 10 s later: 1 × 10 × 0.8 = 8 requests, less the list page: 7 presence reads, not the whole group.
    advance(10_000);
    before = kite.presenceReads.length;
    const asked = await cycle(acts, group, 3, {}, slow);
    expect(kite.presenceReads.length - before).toBe(7);
    expect(asked.fetched.presence).toMatchObject({ refreshed: 7, due: 80 });
    // Status judges the budget on a whole period, as before: a regular cycle's 95 reads.
    expect(asked.fetched.presence!.budgetPerCycle).toBe(95);

    // The next regular cycle, an interval later, reads every SIM again: the max age is no worse for the sync.
    advance(120_000);
    before = kite.presenceReads.length;
    await cycle(acts, group, 4, {}, slow);
    expect(new Set(kite.presenceReads.slice(before))).toEqual(new Set(iccs));
  });

  test('entries written before read times were recorded are refreshed gradually, not all at once', async () => {
    const { group, kite, acts, advance, iccs } = setup({ sims: 100 });
    await cycle(acts, group, 1);
    await cycle(acts, group, 2);
    // As an older connector left them: no read time.
    const key = `${prefix}:{${group}}:conn`;
    for (const icc of iccs) {
      // The value, then any settled mark after the character RS (kept as it is).
      const [json, ...mark] = (await redis.hget(key, icc))!.split('\x1e');
      const entry = JSON.parse(json) as Record<string, unknown>;
      delete entry.t;
      await redis.hset(key, icc, [JSON.stringify(entry), ...mark].join('\x1e'));
    }
    const reads: number[] = [];
    for (let n = 3; n <= 9; n++) {
      advance(10_000);
      const before = kite.presenceReads.length;
      const { fetched } = await cycle(acts, group, n);
      reads.push(kite.presenceReads.length - before);
      if (n === 3) expect(fetched.presence!.unknownAge).toBeGreaterThan(50);
    }
    expect(Math.max(...reads)).toBeLessThanOrEqual(50);
    // Over one slot period (50 s: five cycles) and one more, each read once.
    expect(new Set(kite.presenceReads.slice(-reads.reduce((a, b) => a + b, 0))).size).toBe(100);
  });
});
