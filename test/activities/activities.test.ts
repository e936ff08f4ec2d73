/**
 * Fast tier: fetch, diff and publish as plain functions in a MockActivityEnvironment (an activity Context without
 * a worker or server), on the test Redis, an in-memory Kite inventory and a recording target. Each test runs in
 * well under a second; the full-stack tests in test/sync/ cover the same rules through Temporal.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type SyncActivities } from '../../activities';
import type { ConfiguredTarget } from '../../activities/publish';
import { RECORD_KEYS } from '../../record';
import { createLogger } from '../../shared/log';
import { uniqueName } from '../setup/stack';
import { testStore } from '../support/test-store';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';

const { store } = testStore('acts');

/** A fresh group with its own inventory, targets and activities. */
function setup(options: { targets?: RecordingTarget[]; batchSize?: number } = {}) {
  const group = uniqueName('g');
  const kite = new MemoryKite(10);
  const targets = options.targets ?? [new RecordingTarget('cloud')];
  const acts = createActivities({
    store,
    kite,
    targets: new Map<string, ConfiguredTarget>(targets.map((target) => [target.name, { target }])),
    logger: createLogger({}, { level: 'error' }),
    batchSize: options.batchSize ?? 7,
  });
  return { group, kite, acts, targets };
}

/** Runs an activity in `env` (a fresh environment by default), typed by the activity's own result. */
const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  runIn(new MockActivityEnvironment(), fn, ...args);
const runIn = <A extends unknown[], R>(env: MockActivityEnvironment, fn: (...args: A) => Promise<R>, ...args: A) =>
  env.run(fn, ...args) as Promise<R>;

/** One cycle as the workflow runs it: fetch, diff, then publish per target. */
async function cycle(acts: SyncActivities, group: string, cycleNo: number, targets: string[]) {
  const fetched = await run(acts.fetchSnapshot, { group, cycle: cycleNo });
  const diffed = await run(acts.diffSnapshot, { group, cycle: cycleNo, targets });
  const published = await Promise.all(
    targets.map((target) => run(acts.publishChanges, { group, cycle: cycleNo, target }))
  );
  return { fetched, diffed, published };
}

async function pendingOf(group: string, target: string): Promise<Map<string, unknown>> {
  const pending = new Map<string, unknown>();
  for await (const entries of store.scanPending(group, target, 100))
    for (const [iccid, patch] of entries) pending.set(iccid, JSON.parse(patch));
  return pending;
}

describe('fetch', () => {
  test("stages the group's valid SIMs only and reads presence only for new SIMs or changed hints", async () => {
    const { group, kite, acts } = setup();
    const iccs = kite.addSims(group, 23);
    kite.addSims('other-group', 5, 100);
    kite.update(iccs[22], { activationDate: 'not a date' });

    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (d) => beats.push(d));
    const first = await runIn(env, acts.fetchSnapshot, { group, cycle: 1 });
    expect(first).toMatchObject({ seen: 28, inGroup: 22, invalid: 1, presenceFetched: 23 });
    expect(first.invalidReasons).toEqual({ 'bad-date:activationDate': 1 });
    expect(kite.presenceReads.filter((icc) => !iccs.includes(icc))).toEqual([]);
    // Each page's checkpoint is heartbeated with the cursor a retried attempt resumes from.
    expect(beats.at(-1)).toMatchObject({ phase: 'fetch', done: 28, cursor: 28 });
    const staged = await store.snapshotRecords(group, 1, iccs.slice(0, 2));
    expect(JSON.parse(staged[0]!)).toMatchObject({ iccid: iccs[0], alias: 'sensor-0' });

    kite.presenceReads.length = 0;
    kite.update(iccs[3], { ip: '10.9.9.9' }); // a connectivity hint
    kite.update(iccs[4], { alias: 'renamed' }); // not a hint
    const second = await run(acts.fetchSnapshot, { group, cycle: 2 });
    // The invalid SIM's presence is read again too: a presence is cached only when it made a good record.
    expect(second.presenceFetched).toBe(2);
    expect(kite.presenceReads.sort()).toEqual([iccs[3], iccs[22]].sort());
  });

  test('a retried attempt resumes from the heartbeated cursor without dropping what it staged', async () => {
    const { group, kite, acts } = setup();
    kite.addSims(group, 30);
    const first = new MockActivityEnvironment();
    const beats: { cursor: number; counts: unknown; done: number; phase: 'fetch' }[] = [];
    first.on('heartbeat', (d) => beats.push(d));
    await first.run(acts.fetchSnapshot, { group, cycle: 1 });
    const afterTwoPages = beats.find((b) => b.cursor === 20)!;
    expect(afterTwoPages).toBeDefined();

    kite.presenceReads.length = 0;
    const retried = new MockActivityEnvironment({ heartbeatDetails: afterTwoPages });
    const result = await runIn(retried, acts.fetchSnapshot, { group, cycle: 1 });
    expect(result).toMatchObject({ seen: 30, inGroup: 30 });
    // Only the last page was read again; its SIMs' presence was already known from the first attempt.
    expect(kite.presenceReads).toEqual([]);
    expect(await store.snapshotRecords(group, 1, [...kite.sims.keys()].slice(0, 1))).toEqual([expect.any(String)]);
  });
});

describe('diff', () => {
  test('a new SIM gets its whole record, a changed one only the changed keys (null when gone), an equal one nothing', async () => {
    const { group, kite, acts } = setup();
    const iccs = kite.addSims(group, 12);
    await run(acts.fetchSnapshot, { group, cycle: 1 });
    const first = await run(acts.diffSnapshot, { group, cycle: 1, targets: ['cloud'] });
    expect(first).toEqual({ left: 0, targets: { cloud: { changed: 12, stillFailing: 0, held: 0 } } });
    const pending = await pendingOf(group, 'cloud');
    const [staged] = await store.snapshotRecords(group, 1, [iccs[0]]);
    expect(pending.get(iccs[0])).toEqual(JSON.parse(staged!));
    expect(Object.keys(pending.get(iccs[0]) as object).length).toBeGreaterThan(RECORD_KEYS.length / 2);
    await run(acts.publishChanges, { group, cycle: 1, target: 'cloud' });

    kite.update(iccs[1], { alias: 'renamed' });
    kite.update(iccs[2], { imei: undefined });
    await run(acts.fetchSnapshot, { group, cycle: 2 });
    const second = await run(acts.diffSnapshot, { group, cycle: 2, targets: ['cloud'] });
    expect(second.targets.cloud.changed).toBe(2);
    expect(await pendingOf(group, 'cloud')).toEqual(
      new Map<string, unknown>([
        [iccs[1], { alias: 'renamed' }],
        [iccs[2], { imei: null }],
      ])
    );
  });

  test('a SIM whose unchanged patch failed permanently is not pending again; leavers are forgotten', async () => {
    const cloud = new RecordingTarget('cloud');
    const { group, kite, acts } = setup({ targets: [cloud] });
    const iccs = kite.addSims(group, 10);
    cloud.rejected.add(iccs[0]);
    const { published } = await cycle(acts, group, 1, ['cloud']);
    expect(published[0]).toMatchObject({ published: 9, failed: 1, failing: 1 });

    kite.update(iccs[9], { supervisionGroup: 'elsewhere' });
    await run(acts.fetchSnapshot, { group, cycle: 2 });
    const diffed = await run(acts.diffSnapshot, { group, cycle: 2, targets: ['cloud'] });
    expect(diffed).toEqual({ left: 1, targets: { cloud: { changed: 0, stillFailing: 1, held: 0 } } });
    expect(await store.publishedRecords(group, 'cloud', [iccs[9], iccs[8]])).toEqual([null, expect.any(String)]);
  });

  test('holds a cycle in which most known SIMs vanished: nothing written or forgotten until approved', async () => {
    const { group, kite, acts } = setup();
    const iccs = kite.addSims(group, 10);
    await cycle(acts, group, 1, ['cloud']);
    kite.update(iccs[9], { alias: 'changed' });
    for (const icc of iccs.slice(0, 6)) kite.sims.delete(icc);
    await run(acts.fetchSnapshot, { group, cycle: 2 });
    const drop = { missing: 6, known: 10, listed: 4, maxLeaveFraction: 0.5 };
    const held = await run(acts.diffSnapshot, { group, cycle: 2, targets: ['cloud'] });
    expect(held).toEqual({ left: 0, targets: { cloud: { changed: 0, stillFailing: 0, held: 0 } }, drop });
    expect(await store.knownCount(group)).toBe(10); // nothing was forgotten
    expect(await store.hasPending(group, 'cloud')).toBe(false); // nor the change of iccs[9] written
    // The group's own limit, or an approval of fewer SIMs than are missing, does not release it...
    expect((await run(acts.diffSnapshot, { group, cycle: 2, targets: ['cloud'], approvedDrop: 5 })).drop).toEqual(drop);
    const strict = await run(acts.diffSnapshot, { group, cycle: 2, targets: ['cloud'], maxLeaveFraction: 0.6 });
    expect(strict.drop).toBeUndefined(); // 6 of 10 is within 60 %
    expect(strict.left).toBe(6);
    expect(await store.knownCount(group)).toBe(4);
  });

  test('an approved drop is forgotten, and the rest diffed as usual', async () => {
    const { group, kite, acts } = setup();
    const iccs = kite.addSims(group, 10);
    await cycle(acts, group, 1, ['cloud']);
    kite.update(iccs[9], { alias: 'changed' });
    for (const icc of iccs.slice(0, 8)) kite.sims.delete(icc);
    await run(acts.fetchSnapshot, { group, cycle: 2 });
    const zero = await run(acts.diffSnapshot, { group, cycle: 2, targets: ['cloud'], maxLeaveFraction: 0 });
    expect(zero.drop).toMatchObject({ missing: 8, maxLeaveFraction: 0 });
    const approved = await run(acts.diffSnapshot, { group, cycle: 2, targets: ['cloud'], approvedDrop: 8 });
    expect(approved).toEqual({ left: 8, targets: { cloud: { changed: 1, stillFailing: 0, held: 0 } } });
    expect(await store.knownCount(group)).toBe(2);
  });
});

describe('preview', () => {
  test('counts what a cycle would publish per target, with samples, and writes nothing', async () => {
    const cloud = new RecordingTarget('cloud');
    const { group, kite, acts } = setup({ targets: [cloud, new RecordingTarget('backup')] });
    const iccs = kite.addSims(group, 12);
    await cycle(acts, group, 1, ['cloud']);
    kite.update(iccs[0], { alias: 'renamed' });
    kite.update(iccs[1], { consumptionDaily: { voice: { value: 0 }, sms: { value: 2 }, data: { value: 4096 } } });
    kite.sims.delete(iccs[11]);
    const before = await store.simState(group, iccs[0], [1], ['cloud', 'backup']);
    await run(acts.fetchSnapshot, { group, cycle: -1 });
    const preview = await run(acts.previewChanges, {
      group,
      cycle: -1,
      targets: ['cloud', 'backup'],
      sampleSize: 2,
    });
    expect(preview).toEqual({
      left: 1,
      targets: {
        // iccs[1]'s counters alone changed: held by the default policy (15 min).
        cloud: {
          publish: 1,
          full: 0,
          held: 1,
          stillFailing: 0,
          sample: [{ iccid: iccs[0], full: false, patch: { alias: 'renamed' } }],
        },
        backup: { publish: 11, full: 11, held: 0, stillFailing: 0, sample: expect.any(Array) },
      },
    });
    expect(preview.targets.backup.sample).toHaveLength(2);
    expect(Object.keys(preview.targets.backup.sample[0].patch).length).toBeGreaterThan(10);
    // Nothing written: no pending, nothing forgotten, the cycle's snapshot as it was, the preview's staging gone.
    expect(await store.hasPending(group, 'cloud')).toBe(false);
    expect(await store.hasPending(group, 'backup')).toBe(false);
    expect(await store.knownCount(group)).toBe(12);
    expect(await store.snapshotCount(group, 1)).toBe(0); // dropped by the cycle's publish
    expect(await store.snapshotCount(group, -1)).toBe(0);
    expect(await store.simState(group, iccs[0], [1], ['cloud', 'backup'])).toEqual(before);
    // The cycle that follows publishes exactly what the preview counted.
    const { diffed } = await cycle(acts, group, 2, ['cloud', 'backup']);
    expect(diffed.targets).toEqual({
      cloud: { changed: 1, stillFailing: 0, held: 1 },
      backup: { changed: 11, stillFailing: 0, held: 0 },
    });
  });

  test('reports a drop that would hold the cycle', async () => {
    const { group, kite, acts } = setup();
    const iccs = kite.addSims(group, 4);
    await cycle(acts, group, 1, ['cloud']);
    for (const icc of iccs.slice(0, 3)) kite.sims.delete(icc);
    await run(acts.fetchSnapshot, { group, cycle: -1 });
    const preview = await run(acts.previewChanges, { group, cycle: -1, targets: ['cloud'] });
    expect(preview).toMatchObject({ left: 3, drop: { missing: 3, known: 4, listed: 1, maxLeaveFraction: 0.5 } });
    expect(await store.knownCount(group)).toBe(4);
  });
});

describe('publish', () => {
  test('sends each pending patch once, records it as published and leaves nothing pending', async () => {
    const cloud = new RecordingTarget('cloud');
    const backup = new RecordingTarget('backup');
    const { group, kite, acts } = setup({ targets: [cloud, backup] });
    const iccs = kite.addSims(group, 20);
    const { published } = await cycle(acts, group, 1, ['cloud', 'backup']);
    expect(published).toEqual([
      { published: 20, failed: 0, throttled: 0, failing: 0, pending: 0 },
      { published: 20, failed: 0, throttled: 0, failing: 0, pending: 0 },
    ]);
    expect([...cloud.received.values()].every((list) => list.length === 1 && list[0].full)).toBe(true);
    expect(await store.hasPending(group, 'cloud')).toBe(false);
    const [record] = await store.publishedRecords(group, 'cloud', [iccs[0]]);
    expect(JSON.parse(record!)).toEqual(cloud.received.get(iccs[0])![0].patch);

    // Publishing again sends nothing: pending is empty.
    const calls = cloud.calls;
    const again = await run(acts.publishChanges, { group, cycle: 1, target: 'cloud' });
    expect(again.published).toBe(0);
    expect(cloud.calls).toBe(calls);
  });

  test('a target that keeps throttling fails the activity as TargetUnavailable, keeping its SIMs pending', async () => {
    const cloud = new RecordingTarget('cloud');
    const { group, kite, acts } = setup({ targets: [cloud] });
    const [throttled, ok] = kite.addSims(group, 2);
    cloud.throttled.add(throttled);
    await run(acts.fetchSnapshot, { group, cycle: 1 });
    await run(acts.diffSnapshot, { group, cycle: 1, targets: ['cloud'] });
    await expect(run(acts.publishChanges, { group, cycle: 1, target: 'cloud' })).rejects.toMatchObject({
      type: 'TargetUnavailable',
      nonRetryable: false,
    });
    expect([...(await pendingOf(group, 'cloud')).keys()]).toEqual([throttled]);
    expect(cloud.received.has(ok)).toBe(true);

    cloud.throttled.clear();
    expect(await run(acts.publishChanges, { group, cycle: 1, target: 'cloud' })).toMatchObject({ published: 1 });
  });

  test('a target the worker does not have fails without retry, naming the configured ones', async () => {
    const { group, acts } = setup();
    await expect(run(acts.publishChanges, { group, cycle: 1, target: 'nowhere' })).rejects.toMatchObject({
      type: 'UnknownTarget',
      nonRetryable: true,
      message: expect.stringContaining('configured: cloud'),
    });
  });

  test('an invalid group name never reaches Redis', async () => {
    const { acts } = setup();
    await expect(run(acts.fetchSnapshot, { group: 'bad}name', cycle: 1 })).rejects.toMatchObject({
      name: 'InvalidGroupName',
    });
  });
});
