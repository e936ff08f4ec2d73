/**
 * Fast tier: groups of one Kite account share its inventory sweeps. The fetch activity runs as a plain function in
 * a MockActivityEnvironment on the test Redis, over an in-memory inventory that counts its list pages. The full
 * stack (worker processes, the simulator's request counts, SIGKILL mid-sweep) is in test/sync/sweep.test.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type FetchResult } from '../../activities';
import type { KitePage } from '../../kite';
import { createLogger } from '../../shared/log';
import { uniqueName } from '../setup/stack';
import { decodeSweepChunk, encodeSweepChunk } from '../../activities/sweep-chunk';
import { MemoryKite } from '../support/memory-kite';
import { testStore } from '../support/test-store';
import { waitUntil } from '../support/wait-until';

const { store } = testStore('sweep');

/**
 * An inventory of one account that counts the list pages served and may hold each page back until released. Its
 * pages come as the Kite client gives them (JSON bytes split into entries), so the sweep hands entries as sent.
 */
class SharedKite extends MemoryKite {
  pagesServed = 0;
  /** While set, each page waits for it. */
  gate: Promise<void> | undefined;
  constructor(
    pageSize: number,
    private readonly account: string
  ) {
    super(pageSize, { raw: true });
  }
  override async *pages(group: string, fromIndex: number): AsyncIterable<KitePage> {
    for await (const page of super.pages(group, fromIndex)) {
      await this.gate;
      this.pagesServed++;
      yield page;
    }
  }
  sweepAccount(): string {
    return this.account;
  }
}

function setup(options: { sweepGatherMs?: number } = {}) {
  const kite = new SharedKite(10, uniqueName('acct'));
  const groups = [uniqueName('ga'), uniqueName('gb'), uniqueName('gc')];
  groups.forEach((group, g) => kite.addSims(group, 15, 100 * g));
  kite.addSims('someone-else', 12, 900);
  const acts = createActivities({
    store,
    kite,
    targets: new Map(),
    logger: createLogger({}, { level: 'error' }),
    sweepLockTtlMs: 1_000,
    ...options,
  });
  return { kite, groups, acts };
}

const iccsOf = (kite: MemoryKite, group: string) =>
  [...kite.sims.values()].filter((sim) => sim.supervisionGroup === group).map((sim) => sim.icc as string);

const fetchIn = (
  env: MockActivityEnvironment,
  acts: ReturnType<typeof createActivities>,
  group: string,
  cycle: number
) => env.run(acts.fetchSnapshot, { group, cycle }) as Promise<FetchResult>;

test('three groups of one account: one sweep per round of cycles, each group staged with its own members', async () => {
  const { kite, groups, acts } = setup();
  const pagesPerSweep = Math.ceil((3 * 15 + 12) / 10);
  // Round 1: each group's first fetch. Groups register as they come, so up to one sweep per group at worst.
  for (const group of groups) {
    const result = await fetchIn(new MockActivityEnvironment(), acts, group, 1);
    expect(result).toMatchObject({ seen: 57, inGroup: 15, invalid: 0 });
    expect(await store.snapshotCount(group, 1)).toBe(15);
  }
  // Rounds 2 and 3, concurrently: one sweep each, whoever runs it.
  for (const cycle of [2, 3]) {
    const before = kite.pagesServed;
    const results = await Promise.all(groups.map((g) => fetchIn(new MockActivityEnvironment(), acts, g, cycle)));
    for (const result of results) expect(result).toMatchObject({ seen: 57, inGroup: 15 });
    expect(kite.pagesServed - before).toBe(pagesPerSweep);
    for (const group of groups) {
      const staged = await store.snapshotRecords(group, cycle, iccsOf(kite, group));
      expect(staged.every((json) => json !== null)).toBe(true);
    }
  }
});

test('groups whose first fetches start together share that first listing; one started alone later waits once', async () => {
  // A wait well past the 200 ms the starts span: the last group registers in time on a loaded machine too.
  const { kite, groups, acts } = setup({ sweepGatherMs: 2_000 });
  const pagesPerSweep = Math.ceil((3 * 15 + 12) / 10);
  // A deployment: the groups' first fetches 100 ms apart. Each waits sweepGatherMs before listing for anyone.
  const results = await Promise.all(
    groups.map(async (g, i) => {
      await sleep(100 * i);
      return fetchIn(new MockActivityEnvironment(), acts, g, 1);
    })
  );
  for (const result of results) expect(result).toMatchObject({ seen: 57, inGroup: 15 });
  expect(kite.pagesServed).toBe(pagesPerSweep); // not one listing per group
  for (const group of groups) expect(await store.snapshotCount(group, 1)).toBe(15);

  // The same three groups, started one after the other: up to one listing each, as before the wait.
  const late = setup();
  for (const group of late.groups) await fetchIn(new MockActivityEnvironment(), late.acts, group, 1);
  expect(late.kite.pagesServed).toBeGreaterThan(pagesPerSweep);
});

test("a group reading an unchanged sweep parses none of its settled SIMs' entries", async () => {
  const { kite, groups, acts } = setup();
  const [group] = groups;
  const diff = (cycle: number) =>
    new MockActivityEnvironment().run(acts.diffSnapshot, { group, cycle, targets: [] }) as Promise<unknown>;
  // Two groups read the account, so the sweep (not the group's own listing) stages them.
  for (const cycle of [1, 2, 3]) {
    await Promise.all(groups.slice(0, 2).map((g) => fetchIn(new MockActivityEnvironment(), acts, g, cycle)));
    kite.parsed = 0;
    await diff(cycle);
  }
  // The second group's fetch runs the sweep: it parses each member it hands on (a malformed one fails the sweep).
  kite.parsed = 0;
  await fetchIn(new MockActivityEnvironment(), acts, groups[1], 4);
  expect(kite.parsed).toBe(2 * 15);
  // The first group's fetch reads its members from that sweep and parses none of them.
  const parse = jest.spyOn(JSON, 'parse');
  try {
    await fetchIn(new MockActivityEnvironment(), acts, group, 4);
    const entriesParsed = parse.mock.calls.filter(([text]) => String(text).includes(`"supervisionGroup":"${group}"`));
    expect(entriesParsed).toHaveLength(0);
  } finally {
    parse.mockRestore();
  }
  expect(await store.snapshotCount(group, 4)).toBe(15);
});

test('a change in Kite reaches every group that reads the sweep after it', async () => {
  const { kite, groups, acts } = setup();
  for (const group of groups) await fetchIn(new MockActivityEnvironment(), acts, group, 1);
  const icc = iccsOf(kite, groups[2])[3];
  kite.update(icc, { alias: 'renamed' });
  await Promise.all(groups.map((g) => fetchIn(new MockActivityEnvironment(), acts, g, 2)));
  const [record] = await store.snapshotRecords(groups[2], 2, [icc]);
  expect(JSON.parse(record!)).toMatchObject({ alias: 'renamed' });
});

test('a cycle an operator asked for (freshAfter) reads a sweep begun after the request, not a younger one from before', async () => {
  /** a sweeps first; b, not yet registered then, sweeps after it (staging a's members too); then a SIM of a changes. */
  const sweptTwiceThenChanged = async () => {
    const { kite, groups, acts } = setup();
    const [a, b] = groups;
    await fetchIn(new MockActivityEnvironment(), acts, a, 1);
    await fetchIn(new MockActivityEnvironment(), acts, b, 1);
    const icc = iccsOf(kite, a)[0];
    kite.update(icc, { alias: 'renamed-after-the-sweeps' });
    return { kite, acts, a, icc };
  };
  const aliasIn = async (group: string, cycle: number, icc: string) =>
    (JSON.parse((await store.snapshotRecords(group, cycle, [icc]))[0]!) as { alias?: string }).alias;

  // A timer cycle may reuse b's sweep: it began after a's previous fetch, although before the change.
  const timer = await sweptTwiceThenChanged();
  const pagesBefore = timer.kite.pagesServed;
  await fetchIn(new MockActivityEnvironment(), timer.acts, timer.a, 2);
  expect(timer.kite.pagesServed).toBe(pagesBefore);
  expect(await aliasIn(timer.a, 2, timer.icc)).not.toBe('renamed-after-the-sweeps');

  // syncNow: the fetch carries the request time, so it sweeps again and sees the change.
  const asked = await sweptTwiceThenChanged();
  const input = { group: asked.a, cycle: 2, freshAfter: Date.now() };
  await new MockActivityEnvironment().run(asked.acts.fetchSnapshot, input);
  expect(await aliasIn(asked.a, 2, asked.icc)).toBe('renamed-after-the-sweeps');
});

test("a preview (cycle -1) lists Kite itself and leaves the group's share of the sweep to its next cycle", async () => {
  const { kite, groups, acts } = setup();
  const [a, b] = groups;
  for (const group of groups) await fetchIn(new MockActivityEnvironment(), acts, group, 1);
  await fetchIn(new MockActivityEnvironment(), acts, b, 2); // sweeps, staging a's share too
  const pagesPerListing = Math.ceil((3 * 15 + 12) / 10);

  const beforePreview = kite.pagesServed;
  expect(await fetchIn(new MockActivityEnvironment(), acts, a, -1)).toMatchObject({ inGroup: 15 });
  expect(kite.pagesServed - beforePreview).toBe(pagesPerListing);

  const beforeCycle = kite.pagesServed;
  expect(await fetchIn(new MockActivityEnvironment(), acts, a, 2)).toMatchObject({ inGroup: 15 });
  expect(kite.pagesServed).toBe(beforeCycle);
});

test('a group waits for the sweep another group runs, heartbeating, and a cancelled waiter stops', async () => {
  const { kite, groups, acts } = setup();
  for (const group of groups) await fetchIn(new MockActivityEnvironment(), acts, group, 1);
  // The last of round 1 swept for all three; the first two take that sweep in their cycle 2: none is left.
  for (const group of groups.slice(0, 2)) await fetchIn(new MockActivityEnvironment(), acts, group, 2);
  const before = kite.pagesServed;
  let open!: () => void;
  kite.gate = new Promise<void>((resolve) => (open = resolve));
  const sweeper = fetchIn(new MockActivityEnvironment(), acts, groups[1], 3);
  // The sweeper holds the lock once its sweep has begun (it then waits at the gate for its first page).
  await waitUntil(async () => (await store.sweeps.state(kite.sweepAccount()))?.done === false, 'the sweep began');
  const waiterEnv = new MockActivityEnvironment();
  const beats: unknown[] = [];
  waiterEnv.on('heartbeat', (d) => beats.push(d));
  const waiter = fetchIn(waiterEnv, acts, groups[2], 2);
  const cancelledEnv = new MockActivityEnvironment();
  const cancelled = fetchIn(cancelledEnv, acts, groups[0], 3);
  await new Promise((r) => setTimeout(r, 1_500));
  expect(beats.length).toBeGreaterThan(0); // the waiter heartbeats while it waits
  cancelledEnv.cancel();
  await expect(cancelled).rejects.toThrow();
  open();
  kite.gate = undefined;
  const [a, b] = await Promise.all([sweeper, waiter]);
  expect(a.inGroup).toBe(15);
  expect(b.inGroup).toBe(15);
  expect(kite.pagesServed - before).toBe(Math.ceil(57 / 10));
});

test('a sweeper that dies mid-sweep: its lock expires and a waiting group finishes the sweep from its cursor', async () => {
  const { kite, groups, acts } = setup();
  for (const group of groups) await fetchIn(new MockActivityEnvironment(), acts, group, 1);
  // A sweeper that appended two pages and died (a SIGKILLed worker): its lock lives until it expires.
  const account = kite.sweepAccount();
  const all = [...kite.sims.values()];
  expect(await store.sweeps.acquire(account, 'dead-worker', 1_000)).toBe(true);
  const state = (await store.sweeps.begin(account, 'dead-worker', 1_000, groups[0], Date.now()))!;
  expect(state.groups).toEqual(expect.arrayContaining(groups));
  for (const start of [0, 10]) {
    const members = groups.map((g) => [
      g,
      JSON.stringify(
        all
          .slice(start, start + 10)
          .map((sim, i) => [start + i, sim])
          .filter(([, sim]) => (sim as { supervisionGroup: string }).supervisionGroup === g)
      ),
    ]) as [string, string][];
    const chunks = members.filter(([, json]) => json !== '[]');
    expect(await store.sweeps.append(account, 'dead-worker', 1_000, { cursor: start + 10, listed: 10, chunks })).toBe(
      true
    );
  }
  const before = kite.pagesServed;
  const results = await Promise.all(groups.map((g) => fetchIn(new MockActivityEnvironment(), acts, g, 2)));
  for (const result of results) expect(result).toMatchObject({ seen: 57, inGroup: 15 });
  // The sweep was taken over at its cursor: the two pages the dead sweeper appended were not listed again.
  expect(kite.pagesServed - before).toBe(Math.ceil(57 / 10) - 2);
  for (const group of groups) expect(await store.snapshotCount(group, 2)).toBe(15);
});

test("the account's only reader lists Kite itself, resumes its own listing, and a second group's sweep includes it", async () => {
  const { kite, groups, acts } = setup();
  const [a, b] = groups;
  const account = kite.sweepAccount();
  const pagesPerListing = Math.ceil((3 * 15 + 12) / 10);

  // Alone on the account: its pages go straight to its staging, no sweep is run or kept in Redis.
  const first = new MockActivityEnvironment();
  const beats: { cursor: number; sweep?: { own?: boolean } }[] = [];
  first.on('heartbeat', (d) => beats.push(d));
  expect(await fetchIn(first, acts, a, 1)).toMatchObject({ seen: 57, inGroup: 15 });
  expect(kite.pagesServed).toBe(pagesPerListing);
  expect(await store.sweeps.state(account)).toBeUndefined();

  // A retried attempt resumes its own listing at the page it heartbeated, not at a sweep's chunk.
  const afterTwoPages = beats.find((beat) => beat.cursor === 20);
  expect(afterTwoPages?.sweep?.own).toBe(true);
  const beforeRetry = kite.pagesServed;
  const retried = new MockActivityEnvironment({ heartbeatDetails: afterTwoPages });
  expect(await retried.run(acts.fetchSnapshot, { group: a, cycle: 1 })).toMatchObject({ seen: 57, inGroup: 15 });
  expect(kite.pagesServed - beforeRetry).toBe(pagesPerListing - 2);
  expect(await store.snapshotCount(a, 1)).toBe(15);

  // A second group sweeps for both; the first group's next cycle takes its share without listing again.
  await fetchIn(new MockActivityEnvironment(), acts, b, 1);
  expect((await store.sweeps.state(account))?.groups).toEqual([a, b].sort());
  const beforeShared = kite.pagesServed;
  expect(await fetchIn(new MockActivityEnvironment(), acts, a, 2)).toMatchObject({ inGroup: 15 });
  expect(kite.pagesServed).toBe(beforeShared);
});

test("a sweep's chunk keeps each member's position and entry as sent; a chunk of older workers is still read", () => {
  const where = 'the inventory sweep 1 of group g';
  const texts = [
    '{"icc":"89340711000000000001","supervisionGroup":"g"}',
    '{"icc":"89340711000000000002","b":[1,{"c":"]"}]}',
  ];
  const chunk = encodeSweepChunk(texts.map((text, i) => ({ position: 40 + i, text })));
  const { positions, entries } = decodeSweepChunk(chunk, where);
  expect(positions).toEqual([40, 41]);
  expect([entries.text(0), entries.text(1)]).toEqual(texts);
  expect(entries.peek(0)).toEqual({ group: 'g', icc: '89340711000000000001' });
  const old = decodeSweepChunk(`[[7,${texts[0]}],[9,${texts[1]}]]`, where);
  expect(old.positions).toEqual([7, 9]);
  expect(old.entries.all()).toEqual(texts.map((t) => JSON.parse(t)));
  expect(() => decodeSweepChunk('1,2\n{"subscriptionData":[{}]}', where)).toThrow(/not what a sweep writes/);
});
