/**
 * The publish policy on the real workflow, Temporal server and Redis: daily counters that change every cycle
 * go out at most once per `countersMinInterval`, while an IMEI change goes out in the cycle that sees it; a
 * threshold crossing and the daily reset go out at once; a held change is never lost, and the hold outlives
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
  await handle.terminate();
});
