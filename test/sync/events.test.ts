/**
 * Connectivity events on the real workflow, Temporal server and Redis: each event type is emitted once per real
 * change (not on the group's first cycle, not again while nothing changes), to every target, with a stable id;
 * events wait in Redis while a target cannot take them, and go out once it can; switches per group and type.
 */
import type { KitePresence } from '../../kite';
import type { EventType, SimEvent } from '../../record';
import { configureUpdate, innermostMessage, syncNowSignal } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';

const kite = new MemoryKite(50);
const cloud = new RecordingTarget('cloud');
const other = new RecordingTarget('other');
let harness: SyncHarness;

beforeAll(async () => {
  harness = await startSyncHarness({ kite, targets: [cloud, other], batchSize: 25 });
});
afterAll(() => harness?.close());

const ALL: EventType[] = [
  'imeiChanged',
  'presenceLost',
  'presenceRestored',
  'operatorChanged',
  'countryChanged',
  'lifeCycleChanged',
  'usageSpike',
  'joinedGroup',
  'leftGroup',
];

function presence(level: string): KitePresence {
  return { level, timeStamp: '2026-11-26T11:00:00Z', cause: 'UPDATE_LOCATION' };
}

function dataKb(kb: number): {
  consumptionDaily: { voice: { value: number }; sms: { value: number }; data: { value: number } };
} {
  return { consumptionDaily: { voice: { value: 0 }, sms: { value: 0 }, data: { value: kb * 1024 } } };
}

/** What an event says, without its id and time. */
const said = (e: SimEvent) => ({ type: e.type, iccid: e.iccid, before: e.before, after: e.after });

test('each event type is emitted once per real change, to every target, with a stable id', async () => {
  const group = uniqueName('events');
  const iccs = kite.addSims(group, 12, 20_000);
  const [moved, lost, roaming, abroad, suspended, heavy, leaving] = iccs;
  const handle = await harness.start(group, {
    maxCyclesPerRun: 3, // later cycles run after continue-as-new
    events: { types: ALL, usageSpikeMinDays: 1, usageSpikeMinKb: 100 },
  });
  const cycle = async (n: number) => {
    await handle.signal(syncNowSignal);
    return harness.waitForCycles(handle, n);
  };
  await harness.waitForCycles(handle, 1);
  // The group's first cycle: its SIMs were there already, nothing changed.
  expect(cloud.drainEvents()).toEqual([]);
  cloud.drain();

  // Cycle 2: one change of each kind, a SIM joins, one leaves; the heavy SIM uses 1,000 kB today.
  kite.update(moved, { imei: '356938035643809' });
  kite.presences.set(lost, presence('unknown'));
  kite.update(lost, { ip: '10.9.9.9' }); // a connectivity hint changes, so presence is read again
  kite.update(roaming, { operator: 'Vodafone' });
  kite.update(abroad, { country: 'FR' });
  kite.update(suspended, { lifeCycleStatus: 'SUSPENDED' });
  kite.update(heavy, dataKb(1_000));
  kite.update(leaving, { supervisionGroup: 'elsewhere' });
  const [joined] = kite.addSims(group, 1, 20_100);
  const status = await cycle(2);
  expect(status.lastCycle?.events).toBe(7);
  let events = cloud.drainEvents();
  expect(events.map(said).sort((a, b) => a.type.localeCompare(b.type))).toEqual(
    [
      { type: 'imeiChanged', iccid: moved, before: '863781010957232', after: '356938035643809' },
      { type: 'presenceLost', iccid: lost, before: 'GPRS', after: 'unknown' },
      { type: 'operatorChanged', iccid: roaming, before: 'Telefonica Moviles España', after: 'Vodafone' },
      { type: 'countryChanged', iccid: abroad, before: 'ES', after: 'FR' },
      { type: 'lifeCycleChanged', iccid: suspended, before: 'ACTIVE', after: 'SUSPENDED' },
      { type: 'joinedGroup', iccid: joined, before: null, after: group },
      { type: 'leftGroup', iccid: leaving, before: group, after: null },
    ].sort((a, b) => a.type.localeCompare(b.type))
  );
  for (const e of events) {
    expect(e).toMatchObject({ group, id: expect.stringMatching(/^[0-9a-f]{32}$/), at: expect.any(Number) });
    expect(e.deviceId).toBe(e.iccid);
  }
  expect(new Set(events.map((e) => e.id)).size).toBe(7);
  // Every target gets the same events, with the same ids.
  expect(
    other
      .drainEvents()
      .map((e) => e.id)
      .sort()
  ).toEqual(events.map((e) => e.id).sort());
  expect(status.lastCycle?.targets.cloud.eventsSent).toBe(7);

  // Cycle 3 (nothing changed but the day's reset for the heavy SIM): no event.
  kite.update(heavy, dataKb(10));
  await cycle(3);
  expect(cloud.drainEvents()).toEqual([]);

  // Cycle 4 (a new run): presence comes back; the heavy SIM uses more than 5 × its baseline of 1,000 kB.
  kite.presences.set(lost, presence('GPRS'));
  kite.update(lost, { ip: '10.9.9.10' });
  kite.update(heavy, dataKb(6_000));
  await cycle(4);
  events = cloud.drainEvents();
  expect(events.map(said).sort((a, b) => a.type.localeCompare(b.type))).toEqual([
    { type: 'presenceRestored', iccid: lost, before: 'unknown', after: 'GPRS' },
    { type: 'usageSpike', iccid: heavy, before: 1_000, after: 6_000 },
  ]);

  // Cycle 5: the spike goes on: reported once a day, not every cycle.
  kite.update(heavy, dataKb(9_000));
  await cycle(5);
  expect(cloud.drainEvents()).toEqual([]);
  other.drainEvents();
  await handle.terminate();
});

test('events wait in Redis while a target cannot take them, and go out once with their ids', async () => {
  const group = uniqueName('events-wait');
  const [a, b] = kite.addSims(group, 4, 21_000);
  const handle = await harness.start(group, { events: { types: ['imeiChanged', 'operatorChanged'] } });
  await harness.waitForCycles(handle, 1);
  cloud.drainEvents();
  other.drainEvents();

  cloud.eventsDown = true;
  kite.update(a, { imei: '356938035643810' });
  kite.update(b, { operator: 'Orange' });
  await handle.signal(syncNowSignal);
  // The publish to `cloud` keeps failing and retrying; `other` got both events meanwhile.
  await waitUntil(() => other.events.length === 2, 'both events reached the other target', 30_000);
  expect(await harness.store.eventsPendingCount(group, 'cloud')).toBe(2);
  cloud.eventsDown = false;
  const status = await harness.waitForCycles(handle, 2, 60_000);
  expect(status.lastCycle?.outcome).toBe('completed');
  const events = cloud.drainEvents();
  expect(events.map((e) => e.id).sort()).toEqual(
    other
      .drainEvents()
      .map((e) => e.id)
      .sort()
  );
  expect(await harness.store.eventsPendingCount(group, 'cloud')).toBe(0);
  await handle.terminate();
});

test('events are switched per group and per type: off by default, configure turns types on and off', async () => {
  const group = uniqueName('events-switch');
  const [a, b] = kite.addSims(group, 4, 22_000);
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);
  kite.update(a, { imei: '356938035643811' });
  let status = await (async () => {
    await handle.signal(syncNowSignal);
    return harness.waitForCycles(handle, 2);
  })();
  expect(status.lastCycle?.events).toBeUndefined();
  expect(cloud.drainEvents()).toEqual([]);

  await handle.executeUpdate(configureUpdate, { args: [{ events: { types: ['operatorChanged'] } }] });
  kite.update(a, { imei: '356938035643812' }); // imeiChanged is not switched on
  kite.update(b, { operator: 'Orange' });
  await handle.signal(syncNowSignal);
  await harness.waitForCycles(handle, 3);
  // Turning events on starts from what the SIMs are now: the first cycle with events reports nothing.
  expect(cloud.drainEvents()).toEqual([]);
  kite.update(a, { imei: '356938035643813' });
  kite.update(b, { operator: 'Movistar' });
  await handle.signal(syncNowSignal);
  status = await harness.waitForCycles(handle, 4);
  expect(cloud.drainEvents().map(said)).toEqual([
    { type: 'operatorChanged', iccid: b, before: 'Orange', after: 'Movistar' },
  ]);
  expect(status.config.events).toEqual({ types: ['operatorChanged'] });

  const refusal = (patch: object) =>
    handle.executeUpdate(configureUpdate, { args: [patch] }).then(
      () => 'accepted',
      (err: unknown) => innermostMessage(err)
    );
  expect(await refusal({ events: { types: ['imeiMoved'] } })).toMatch(
    /events\.types: "imeiMoved" is not an event type/
  );
  expect(await refusal({ events: { usageSpikeFactor: 0 } })).toMatch(/events\.usageSpikeFactor must be a positive/);
  other.drainEvents();
  await handle.terminate();
});
