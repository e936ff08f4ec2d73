/**
 * Fast tier: a settled SIM (every target holds its record, nothing held or in flight) whose Kite entry did not change
 * is neither mapped nor staged with a record nor diffed, and yet joins, leaves, changes, held counters, uncertain
 * patches, a new target and a resync all still reach the targets. Activities as plain functions on the test Redis.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type SyncActivities } from '../../activities';
import type { ConfiguredTarget } from '../../activities/publish';
import { createLogger } from '../../shared/log';
import { applyPatch, type SimRecord } from '../../record';
import { KEPT } from '../../state/store';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { testStore } from '../support/test-store';

const { store, redis, prefix } = testStore('skip');

function setup(names = ['cloud', 'other'], options: { raw?: boolean } = {}) {
  const group = uniqueName('g');
  const kite = new MemoryKite(10, options);
  const targets = names.map((name) => new RecordingTarget(name));
  const acts = createActivities({
    store,
    kite,
    targets: new Map<string, ConfiguredTarget>(targets.map((target) => [target.name, { target }])),
    logger: createLogger({}, { level: 'error' }),
  });
  return { group, kite, acts, targets };
}

const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run(fn, ...args) as Promise<R>;

/**
 * One cycle; `beforePublish` looks at its snapshot, which the publish drops (a finished cycle keeps none: the
 * snapshot is gone afterwards).
 */
async function cycle(
  acts: SyncActivities,
  group: string,
  n: number,
  targets: string[],
  policy = {},
  beforePublish?: () => Promise<void>
) {
  const fetched = await run(acts.fetchSnapshot, { group, cycle: n });
  const diffed = await run(acts.diffSnapshot, { group, cycle: n, targets, policy });
  await beforePublish?.();
  const published = await Promise.all(targets.map((target) => run(acts.publishChanges, { group, cycle: n, target })));
  expect(await store.snapshotCount(group, n)).toBe(0);
  return { fetched, diffed, published };
}

/** What the target holds for the SIM: every patch it received, applied in order. */
function stateOf(target: RecordingTarget, icc: string): SimRecord | undefined {
  return (target.received.get(icc) ?? []).reduce<SimRecord | undefined>(
    (state, { patch }) => applyPatch(state, patch),
    undefined
  );
}

async function keptOf(group: string, n: number, iccs: string[]) {
  return (await store.snapshotRecords(group, n, iccs)).filter((json) => json === KEPT).length;
}

test('unchanged settled SIMs are kept, not staged; a change, a join and a leave still reach every target', async () => {
  const { group, kite, acts, targets } = setup();
  const iccs = kite.addSims(group, 30);
  await cycle(acts, group, 1, ['cloud', 'other']);
  // Cycle 2 finds every target holding every record: the SIMs become settled.
  const second = await cycle(acts, group, 2, ['cloud', 'other']);
  expect(second.diffed.targets.cloud.changed).toBe(0);
  let kept = 0;
  let shown: Awaited<ReturnType<typeof store.simState>> | undefined;
  const third = await cycle(acts, group, 3, ['cloud', 'other'], {}, async () => {
    kept = await keptOf(group, 3, iccs);
    shown = await store.simState(group, iccs[0], [3, 2], ['cloud', 'other']);
  });
  expect(third.fetched).toMatchObject({ inGroup: 30, presenceFetched: 0 });
  expect(kept).toBe(30);
  // kite-cc sim still shows a kept SIM's record while its cycle runs: the one every target holds.
  expect(shown!.snapshot).toMatchObject({ cycle: 3, unchanged: true });
  expect(JSON.parse(shown!.snapshot!.record)).toEqual(stateOf(targets[0], iccs[0]));

  kite.update(iccs[4], { alias: 'renamed' });
  kite.update(iccs[5], { supervisionGroup: 'elsewhere' });
  const [joined] = kite.addSims(group, 1, 500);
  const fourth = await cycle(acts, group, 4, ['cloud', 'other'], {}, async () => {
    kept = await keptOf(group, 4, iccs);
  });
  expect(fourth.fetched.inGroup).toBe(30);
  expect(kept).toBe(28); // all but the renamed SIM and the leaver
  expect(fourth.diffed.left).toBe(1);
  for (const target of targets) {
    expect(stateOf(target, iccs[4])).toMatchObject({ alias: 'renamed' });
    expect(target.received.has(joined)).toBe(true);
  }
  expect(await store.publishedRecords(group, 'cloud', [iccs[5]])).toEqual([null]);
});

test("Kite's pages as bytes: a settled SIM whose entry did not change is not even parsed, a changed one is", async () => {
  const { group, kite, acts, targets } = setup(['cloud'], { raw: true });
  const iccs = kite.addSims(group, 30);
  kite.addSims('another-group', 20, 100);
  await cycle(acts, group, 1, ['cloud']);
  await cycle(acts, group, 2, ['cloud']);
  kite.parsed = 0;
  const steady = await cycle(acts, group, 3, ['cloud']);
  expect(steady.fetched).toMatchObject({ seen: 50, inGroup: 30 });
  expect(kite.parsed).toBe(0); // neither the group's settled SIMs nor another group's

  kite.update(iccs[7], { alias: 'renamed' });
  kite.parsed = 0;
  const changed = await cycle(acts, group, 4, ['cloud']);
  expect(kite.parsed).toBe(1);
  expect(changed.diffed.targets.cloud.changed).toBe(1);
  expect(stateOf(targets[0], iccs[7])).toMatchObject({ alias: 'renamed' });
});

test("the diff reads a snapshot's records only: its KEPT SIMs are not read, and leavers are counted", async () => {
  const { group, kite, acts, targets } = setup(['cloud']);
  const iccs = kite.addSims(group, 30);
  await cycle(acts, group, 1, ['cloud']);
  await cycle(acts, group, 2, ['cloud']);
  const scanned = jest.spyOn(store, 'scanSnapshot');
  const steady = await cycle(acts, group, 3, ['cloud']);
  expect(steady.diffed).toMatchObject({ left: 0, targets: { cloud: { changed: 0 } } });

  kite.update(iccs[2], { alias: 'renamed' });
  kite.update(iccs[3], { supervisionGroup: 'elsewhere' });
  const changed = await cycle(acts, group, 4, ['cloud']);
  expect(scanned).not.toHaveBeenCalled();
  scanned.mockRestore();
  expect(changed.diffed).toMatchObject({ left: 1, targets: { cloud: { changed: 1 } } });
  expect(stateOf(targets[0], iccs[2])).toMatchObject({ alias: 'renamed' });
  expect(await store.publishedRecords(group, 'cloud', [iccs[3]])).toEqual([null]);
});

test('a snapshot staged by a fetch from before the index (nothing recorded) is diffed whole, as before', async () => {
  const { group, kite, acts, targets } = setup(['cloud']);
  const iccs = kite.addSims(group, 30);
  await cycle(acts, group, 1, ['cloud']);
  await cycle(acts, group, 2, ['cloud']);
  kite.update(iccs[2], { alias: 'renamed' });
  kite.update(iccs[3], { supervisionGroup: 'elsewhere' });
  await run(acts.fetchSnapshot, { group, cycle: 3 });
  // What an older worker's fetch leaves: the snapshot (records and KEPT) without changed:<cycle> nor its mark.
  const base = `${prefix}:{${group}}:`;
  expect(await store.stagingIndexed(group, 3)).toEqual({ everyStagedKnown: true });
  await redis.del(`${base}changed:3`, `${base}indexed:3`);
  expect(await store.stagingIndexed(group, 3)).toBeUndefined();
  const scanned = jest.spyOn(store, 'scanSnapshot');
  const diffed = await run(acts.diffSnapshot, { group, cycle: 3, targets: ['cloud'] });
  expect(scanned).toHaveBeenCalled();
  scanned.mockRestore();
  expect(diffed).toMatchObject({ left: 1, targets: { cloud: { changed: 1 } } });
  await run(acts.publishChanges, { group, cycle: 3, target: 'cloud' });
  expect(stateOf(targets[0], iccs[2])).toMatchObject({ alias: 'renamed' });
  expect(await store.publishedRecords(group, 'cloud', [iccs[3]])).toEqual([null]);
});

test('a held counter change goes out once allowed although the SIM no longer changes in Kite', async () => {
  const { group, kite, acts, targets } = setup(['cloud']);
  const iccs = kite.addSims(group, 3);
  const policy = { countersMinIntervalMs: 1_500 };
  await cycle(acts, group, 1, ['cloud'], policy);
  await cycle(acts, group, 2, ['cloud'], policy);
  const base = kite.sims.get(iccs[0])!;
  kite.update(iccs[0], { consumptionDaily: { ...base.consumptionDaily, data: { value: 9_999 } } });
  const held = await cycle(acts, group, 3, ['cloud'], policy);
  expect(held.diffed.targets.cloud.held).toBe(1);
  // Kite no longer changes; the hold expires.
  await new Promise((r) => setTimeout(r, 1_600));
  let cycle4: string | null = null;
  await cycle(acts, group, 4, ['cloud'], policy, async () => {
    [cycle4] = await store.snapshotRecords(group, 4, [iccs[0]]);
  });
  expect(stateOf(targets[0], iccs[0])).toMatchObject({ dailyData: expect.any(Number) });
  const [published] = await store.publishedRecords(group, 'cloud', [iccs[0]]);
  expect(cycle4).not.toBe(KEPT);
  expect(published).toBe(cycle4);
});

test('a patch left in flight by a crash is re-sent although the SIM did not change', async () => {
  const { group, kite, acts, targets } = setup(['cloud']);
  const iccs = kite.addSims(group, 3);
  await cycle(acts, group, 1, ['cloud']);
  await cycle(acts, group, 2, ['cloud']);
  // The publish of a change handed the patch to the target and died before the commit.
  kite.update(iccs[1], { alias: 'in-flight' });
  await run(acts.fetchSnapshot, { group, cycle: 3 });
  await run(acts.diffSnapshot, { group, cycle: 3, targets: ['cloud'] });
  const [patch] = (await store.snapshotRecords(group, 3, [iccs[1]])).map(() => JSON.stringify({ alias: 'in-flight' }));
  await store.markSent(group, 'cloud', [[iccs[1], patch]]);
  const before = targets[0].received.get(iccs[1])?.length ?? 0;
  await cycle(acts, group, 4, ['cloud']);
  expect(targets[0].received.get(iccs[1])!.length).toBeGreaterThan(before);
  expect(stateOf(targets[0], iccs[1])).toMatchObject({ alias: 'in-flight' });
});

test('a target added to the group gets every record, settled SIMs included, in its first cycle', async () => {
  const { group, kite, acts, targets } = setup(['cloud', 'other']);
  const iccs = kite.addSims(group, 12);
  await cycle(acts, group, 1, ['cloud']);
  await cycle(acts, group, 2, ['cloud']);
  let kept = 0;
  await cycle(acts, group, 3, ['cloud'], {}, async () => {
    kept = await keptOf(group, 3, iccs);
  });
  expect(kept).toBe(12);
  const added = await cycle(acts, group, 4, ['cloud', 'other']);
  expect(added.diffed.targets.other.changed).toBe(12);
  expect(added.diffed.targets.cloud.changed).toBe(0);
  for (const icc of iccs) expect(stateOf(targets[1], icc)).toEqual(stateOf(targets[0], icc));
});

test('a resync republishes settled SIMs in full', async () => {
  const { group, kite, acts, targets } = setup(['cloud']);
  const iccs = kite.addSims(group, 5);
  await cycle(acts, group, 1, ['cloud']);
  await cycle(acts, group, 2, ['cloud']);
  await run(acts.resyncSims, { group, targets: ['cloud'], sims: [iccs[2]] });
  const before = targets[0].received.get(iccs[2])!.length;
  const after = await cycle(acts, group, 3, ['cloud']);
  expect(after.diffed.targets.cloud.changed).toBe(1);
  expect(targets[0].received.get(iccs[2])!.length).toBe(before + 1);
});
