/**
 * The publish policy on the real workflow, Temporal server and Redis: daily counters that change every cycle
 * go out at most once per `countersMinInterval`, while an IMEI change goes out in the cycle that sees it; a
 * threshold crossing and the daily reset go out at once; a location goes out once it moved at least the
 * configured distance from what the target holds; a held change is never lost, and the hold outlives
 * continue-as-new (it is kept in Redis, not in the workflow).
 */
import type { KiteSim } from '../../kite';
import { configureUpdate, innermostMessage, syncNowSignal } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

const kite = new MemoryKite(50);
const cloud = new RecordingTarget('cloud');
let harness: SyncHarness;

beforeAll(async () => {
  harness = await startSyncHarness({ kite, targets: [cloud], batchSize: 25 });
});
afterAll(() => harness?.close());

/** Kite's daily consumption: data in bytes (the record has kB), SMS count, voice seconds. */
function usage(dataKb: number, sms: number): Pick<KiteSim, 'consumptionDaily'> {
  return { consumptionDaily: { voice: { value: 0 }, sms: { value: sms }, data: { value: dataKb * 1024 } } };
}

test('counters changing every cycle go out at most once per countersMinInterval; an IMEI change goes out at once', async () => {
  const group = uniqueName('policy');
  const iccs = kite.addSims(group, 30, 9000);
  const [moved, heavy, reset] = iccs;
  const handle = await harness.start(group, {
    maxCyclesPerRun: 2, // cycles 3 and later run after continue-as-new
    publishPolicy: { countersMinIntervalMs: 3_600_000, counterThresholds: { dailyData: [50_000] } },
  });
  await harness.waitForCycles(handle, 1);
  expect(cloud.drain().size).toBe(30);

  const cycle = async (n: number) => {
    await handle.signal(syncNowSignal);
    return harness.waitForCycles(handle, n);
  };

  // Cycle 2: every SIM's counters change; one SIM also moved to another device.
  for (const icc of iccs) kite.update(icc, usage(100, 3));
  kite.update(moved, { imei: '356938035643809' });
  let status = await cycle(2);
  expect(status.lastCycle?.targets.cloud).toMatchObject({ changed: 1, held: 29, published: 1 });
  let sent = cloud.drain();
  expect([...sent.keys()]).toEqual([moved]);
  expect(sent.get(moved)).toEqual([{ imei: '356938035643809', dailySMS: 3, dailyData: 100 }]);

  // Cycle 3 (a new run): counters change again, within the interval: nothing goes out.
  for (const icc of iccs) kite.update(icc, usage(200, 4));
  status = await cycle(3);
  expect(status.lastCycle?.targets.cloud).toMatchObject({ changed: 0, held: 30, published: 0 });
  expect(cloud.drain().size).toBe(0);

  // Cycle 4: one SIM crosses the 50,000 kB threshold, one SIM's counters reset for the new day: both at once.
  for (const icc of iccs) kite.update(icc, usage(300, 5));
  kite.update(heavy, usage(60_000, 5));
  kite.update(reset, usage(0, 0));
  status = await cycle(4);
  expect(status.lastCycle?.targets.cloud).toMatchObject({ changed: 2, held: 28, published: 2 });
  sent = cloud.drain();
  expect(sent.get(heavy)).toEqual([{ dailySMS: 5, dailyData: 60_000 }]);
  expect(sent.get(reset)).toEqual([{ dailySMS: 0, dailyData: 0 }]);
  expect(sent.size).toBe(2);

  // The interval ends (here: is shortened): every held SIM goes out with its latest value, none lost.
  await handle.executeUpdate(configureUpdate, { args: [{ publishPolicy: { countersMinIntervalMs: 0 } }] });
  status = await cycle(5);
  expect(status.config.publishPolicy).toEqual({ countersMinIntervalMs: 0, counterThresholds: { dailyData: [50_000] } });
  sent = cloud.drain();
  expect(sent.size).toBe(28);
  for (const icc of iccs.filter((i) => i !== heavy && i !== reset)) {
    expect(sent.get(icc)).toEqual([{ dailySMS: 5, dailyData: 300 }]);
  }
  await handle.terminate();
});

/** Kite's network location `metres` north of Madrid's (a degree of latitude is about 111.2 km). */
function north(metres: number): Pick<KiteSim, 'automaticLocation'> {
  const latitude = Math.round((40.4168 + metres / 111_195) * 1e6) / 1e6;
  return { automaticLocation: { coordinates: { latitude, longitude: -3.7038 } } };
}

test('a location goes out once it moved the distance from what the target holds; a held move rides along with other changes', async () => {
  const group = uniqueName('policy-loc');
  const iccs = kite.addSims(group, 10, 9100);
  const [drifting, far, renamed, tuned] = iccs;
  const handle = await harness.start(group, { maxCyclesPerRun: 2 }); // the default policy: 500 m
  await harness.waitForCycles(handle, 1);
  expect(cloud.drain().size).toBe(10);
  const cycle = async (n: number) => {
    await handle.signal(syncNowSignal);
    return harness.waitForCycles(handle, n);
  };

  // Cycle 2: small moves are held; a move of 2 km goes out; a small move rides along with an alias change.
  kite.update(drifting, north(200));
  kite.update(far, north(2_000));
  kite.update(renamed, { ...north(100), alias: 'renamed' });
  kite.update(tuned, north(150));
  let status = await cycle(2);
  expect(status.lastCycle?.targets.cloud).toMatchObject({ changed: 2, held: 2, published: 2 });
  let sent = cloud.drain();
  expect(sent.get(far)).toEqual([{ Latitude: 40.434786 }]);
  expect(sent.get(renamed)).toEqual([{ alias: 'renamed', Latitude: 40.417699 }]);
  expect(sent.size).toBe(2);

  // Cycle 3 (a new run): the drift goes on, 400 m from what the target holds: still held.
  kite.update(drifting, north(400));
  status = await cycle(3);
  expect(status.lastCycle?.targets.cloud).toMatchObject({ changed: 0, held: 2 });
  expect(cloud.drain().size).toBe(0);

  // Cycle 4: 550 m from what the target holds, though 150 m from the cycle before: it goes out, its latest value.
  kite.update(drifting, north(550));
  status = await cycle(4);
  expect(cloud.drain().get(drifting)).toEqual([{ Latitude: 40.421746 }]);

  // A smaller distance, set through configure, releases the move it held.
  await handle.executeUpdate(configureUpdate, { args: [{ publishPolicy: { locationMinDistanceM: 100 } }] });
  status = await cycle(5);
  expect(status.config.publishPolicy).toEqual({ locationMinDistanceM: 100 });
  sent = cloud.drain();
  expect([...sent.keys()]).toEqual([tuned]);
  expect(sent.get(tuned)).toEqual([{ Latitude: 40.418149 }]);
  expect(status.lastCycle?.targets.cloud).toMatchObject({ held: 0 });
  await handle.terminate();
});

test('configure refuses an invalid policy with a reason', async () => {
  const handle = await harness.start(uniqueName('policy-bad'));
  await harness.waitForCycles(handle, 1);
  const refusal = (patch: object) =>
    handle.executeUpdate(configureUpdate, { args: [patch] }).then(
      () => 'accepted',
      (err: unknown) => innermostMessage(err)
    );
  expect(await refusal({ publishPolicy: { countersMinIntervalMs: -1 } })).toMatch(
    /publishPolicy\.countersMinIntervalMs must be an integer from 0/
  );
  expect(await refusal({ publishPolicy: { counterThresholds: { imei: [1] } } })).toMatch(
    /counterThresholds\.imei is not a counter/
  );
  expect(await refusal({ publishPolicy: { locationMinDistanceM: -5 } })).toMatch(
    /publishPolicy\.locationMinDistanceM must be a distance in metres from 0 \(every move\) to 1000000, got -5/
  );
  await handle.terminate();
});
