/**
 * The seed's rule, cycle by cycle, on the real workflow, Temporal server and Redis: every key the first time a
 * SIM is seen in the group, then only what changed (null for a key that disappeared), never a periodic resend.
 */
import { RECORD_KEYS } from '../../record';
import { syncNowSignal } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

const kite = new MemoryKite(40);
const cloud = new RecordingTarget('cloud');
const backup = new RecordingTarget('backup');
let harness: SyncHarness;

beforeAll(async () => {
  harness = await startSyncHarness({ kite, targets: [cloud, backup], batchSize: 25 });
});
afterAll(() => harness?.close());

test('first cycle sends every key of every SIM; a cycle without change sends nothing', async () => {
  const group = uniqueName('first');
  const iccs = kite.addSims(group, 120);
  kite.addSims(uniqueName('other-group'), 30, 500);
  const handle = await harness.start(group);

  const first = await harness.waitForCycles(handle, 1);
  expect(first.lastCycle).toMatchObject({ outcome: 'completed', inGroup: 120, invalid: 0 });
  expect(first.lastCycle?.targets.cloud).toMatchObject({ changed: 120, published: 120, failed: 0 });
  const sent = cloud.drain();
  expect([...sent.keys()].sort()).toEqual([...iccs].sort());
  for (const [iccid, [patch]] of sent) {
    expect(Object.keys(patch)).toEqual(RECORD_KEYS.filter((k) => k in patch));
    expect(Object.keys(patch).length).toBe(RECORD_KEYS.length);
    expect(patch.iccid).toBe(iccid);
  }
  expect(backup.drain().size).toBe(120);

  await handle.signal(syncNowSignal);
  const second = await harness.waitForCycles(handle, 2);
  expect(second.lastCycle?.targets.cloud).toMatchObject({ changed: 0, published: 0 });
  expect(cloud.drain().size).toBe(0);
  await handle.terminate();
});

test('later cycles send only changed keys, null for a key that disappeared', async () => {
  const group = uniqueName('changes');
  const [a, b] = kite.addSims(group, 5, 1000);
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);
  cloud.drain();
  backup.drain();

  kite.update(a, { imei: '356938035643809', lifeCycleStatus: 'SUSPENDED' });
  kite.update(b, {
    alias: undefined,
    consumptionDaily: { voice: { value: 60 }, sms: { value: 2 }, data: { value: 4096 } },
  });
  await handle.signal(syncNowSignal);
  await harness.waitForCycles(handle, 2);

  const sent = cloud.drain();
  expect(sent.size).toBe(2);
  expect(sent.get(a)).toEqual([{ imei: '356938035643809', lifeCycleStatus: 'SUSPENDED' }]);
  expect(sent.get(b)).toEqual([{ alias: null, dailyVoice: 60, dailyData: 4 }]);
  expect(backup.drain().get(a)).toEqual([{ imei: '356938035643809', lifeCycleStatus: 'SUSPENDED' }]);
  await handle.terminate();
});

test('presence is read only for new SIMs and SIMs whose connectivity hints changed', async () => {
  const group = uniqueName('presence');
  const iccs = kite.addSims(group, 10, 2000);
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);
  expect(kite.presenceReads.filter((icc) => iccs.includes(icc)).sort()).toEqual([...iccs].sort());
  kite.presenceReads.length = 0;

  kite.update(iccs[3], { ip: '10.9.9.9' });
  kite.presences.set(iccs[3], {
    level: 'IP reachability',
    timeStamp: '2026-11-26T11:00:00Z',
    cause: 'ACCOUNTING_RADIUS_START',
  });
  kite.update(iccs[4], { alias: 'renamed' });
  cloud.drain();
  await handle.signal(syncNowSignal);
  await harness.waitForCycles(handle, 2);

  expect(kite.presenceReads.filter((icc) => iccs.includes(icc))).toEqual([iccs[3]]);
  const sent = cloud.drain();
  expect(sent.get(iccs[3])).toEqual([
    { ip: '10.9.9.9', presenceLevel: 'IP reachability', timestamp: Date.parse('2026-11-26T11:00:00Z') },
  ]);
  expect(sent.get(iccs[4])).toEqual([{ alias: 'renamed' }]);
  await handle.terminate();
});

test('a SIM that leaves the group is forgotten, and published in full when it joins again', async () => {
  const group = uniqueName('leave');
  const [stays, leaves] = kite.addSims(group, 2, 3000);
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);
  cloud.drain();

  kite.update(leaves, { supervisionGroup: 'elsewhere' });
  await handle.signal(syncNowSignal);
  const second = await harness.waitForCycles(handle, 2);
  expect(second.lastCycle?.left).toBe(1);
  const [left, stayed] = await harness.store.publishedRecords(group, 'cloud', [leaves, stays]);
  expect(left).toBeNull();
  expect(stayed).not.toBeNull();
  expect(cloud.drain().size).toBe(0);

  kite.update(leaves, { supervisionGroup: group });
  await handle.signal(syncNowSignal);
  await harness.waitForCycles(handle, 3);
  const [rejoined] = cloud.received.get(leaves)!;
  expect(rejoined.full).toBe(true);
  expect(Object.keys(rejoined.patch).length).toBe(RECORD_KEYS.length);
  cloud.drain();
  await handle.terminate();
});

test('an invalid SIM is counted with its reason and blocks nothing; it is not taken for a leaver', async () => {
  const group = uniqueName('invalid');
  const [good, bad] = kite.addSims(group, 2, 4000);
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);
  cloud.drain();

  kite.update(bad, { activationDate: 'yesterday-ish', alias: 'x' });
  kite.update(good, { alias: 'still-good' });
  await handle.signal(syncNowSignal);
  const status = await harness.waitForCycles(handle, 2);
  expect(status.lastCycle).toMatchObject({
    inGroup: 1,
    invalid: 1,
    left: 0,
    invalidReasons: { 'bad-date:activationDate': 1 },
  });
  expect(cloud.drain().get(good)).toEqual([{ alias: 'still-good' }]);
  expect(await harness.store.publishedRecords(group, 'cloud', [bad])).toEqual([expect.any(String)]);
  await handle.terminate();
});

test('a permanent failure is recorded, blocks no other SIM or target, and is retried only when the SIM changes', async () => {
  const group = uniqueName('permanent');
  const [ok, refused] = kite.addSims(group, 2, 5000);
  cloud.rejected.add(refused);
  const handle = await harness.start(group);
  const first = await harness.waitForCycles(handle, 1);
  expect(first.lastCycle?.targets.cloud).toMatchObject({ published: 1, failed: 1 });
  expect(first.failingSims.cloud).toBe(1);
  expect(cloud.received.has(ok)).toBe(true);
  expect(backup.received.has(refused)).toBe(true);
  const [failure] = await harness.store.failures(group, 'cloud', [refused]);
  expect(failure?.reason).toBe('rejected by test');

  await handle.signal(syncNowSignal);
  const second = await harness.waitForCycles(handle, 2);
  expect(second.lastCycle?.targets.cloud).toMatchObject({ changed: 0, failed: 0 });

  cloud.rejected.delete(refused);
  kite.update(refused, { alias: 'fixed' });
  cloud.drain();
  await handle.signal(syncNowSignal);
  const third = await harness.waitForCycles(handle, 3);
  expect(third.failingSims.cloud).toBe(0);
  const [retried] = cloud.received.get(refused)!;
  expect(retried.full).toBe(true);
  expect(retried.patch.alias).toBe('fixed');
  cloud.drain();
  backup.drain();
  await handle.terminate();
});
