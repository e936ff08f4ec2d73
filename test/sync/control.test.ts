/** Operators' controls on the real workflow: enable, disable, syncNow, configure, the interval, continue-as-new. */
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { configureUpdate, disableSignal, enableSignal, statusQuery, syncNowSignal } from '../../workflows/definitions';
import { KITE_SYNC_STATE } from '../../workflows/search-attributes';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';

const kite = new MemoryKite(50);
const cloud = new RecordingTarget('cloud');
const slow = new RecordingTarget('slow');
let harness: SyncHarness;

beforeAll(async () => {
  harness = await startSyncHarness({ kite, targets: [cloud, slow] });
});
afterAll(() => harness?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type HistoryEvents = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>;
/** Where the first signal called `name` sits in the history. */
const signalIndex = (events: HistoryEvents, name: string) =>
  events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === name);

test('disable stops cycles without a timer, enable resumes at once, syncNow triggers a cycle', async () => {
  const group = uniqueName('onoff');
  kite.addSims(group, 3, 10_000);
  const handle = await harness.start(group, { targets: ['cloud'] });
  await harness.waitForCycles(handle, 1);

  await handle.signal(disableSignal);
  await handle.signal(syncNowSignal);
  await sleep(1500);
  const off = await handle.query(statusQuery);
  expect(off).toMatchObject({ cyclesCompleted: 1, config: { enabled: false } });
  expect(off.nextSyncAt).toBeUndefined();
  expect((await handle.describe()).typedSearchAttributes.get(KITE_SYNC_STATE)).toBe('OFF');

  const events = (await handle.fetchHistory()).events ?? [];
  const after = events.slice(signalIndex(events, 'disable'));
  expect(after.some((e) => e.timerStartedEventAttributes || e.activityTaskScheduledEventAttributes)).toBe(false);

  await handle.signal(enableSignal);
  const on = await harness.waitForCycles(handle, 2);
  expect(on.config.enabled).toBe(true);
  expect((await handle.describe()).typedSearchAttributes.get(KITE_SYNC_STATE)).toBe('ON');

  await handle.signal(syncNowSignal);
  await harness.waitForCycles(handle, 3);
  await handle.terminate();
});

test('disable and syncNow arriving in one workflow task: disable wins and no cycle runs while OFF', async () => {
  const group = uniqueName('batched');
  kite.addSims(group, 2, 18_000);
  const handle = await harness.start(group, { targets: ['cloud'] });
  await harness.waitForCycles(handle, 1);

  // With no worker polling, both signals wait for the same workflow task.
  await harness.whileWorkerDown(async () => {
    await handle.signal(disableSignal);
    await handle.signal(syncNowSignal);
  });
  const off = await handle.query(statusQuery);
  expect(off).toMatchObject({ cyclesCompleted: 1, config: { enabled: false } });

  const events = (await handle.fetchHistory()).events ?? [];
  const between = events.slice(signalIndex(events, 'disable'), signalIndex(events, 'syncNow'));
  expect(between.some((e) => e.workflowTaskStartedEventAttributes)).toBe(false);
  const after = events.slice(signalIndex(events, 'disable'));
  expect(after.some((e) => e.activityTaskScheduledEventAttributes)).toBe(false);

  await handle.signal(enableSignal);
  await harness.waitForCycles(handle, 2);
  await handle.terminate();
});

test('cycles repeat every interval on their own', async () => {
  const group = uniqueName('interval');
  kite.addSims(group, 2, 11_000);
  const handle = await harness.start(group, { targets: ['cloud'], intervalMs: 1_000 });
  const status = await harness.waitForCycles(handle, 3, 20_000);
  expect(status.lastCycle?.outcome).toBe('completed');
  await handle.terminate();
});

test('configure validates: a bad value is rejected with its reason and changes nothing', async () => {
  const group = uniqueName('configure');
  kite.addSims(group, 1, 12_000);
  const handle = await harness.start(group, { targets: ['cloud'] });
  await harness.waitForCycles(handle, 1);

  await expect(handle.executeUpdate(configureUpdate, { args: [{ intervalMs: 5 }] })).rejects.toThrow(
    WorkflowUpdateFailedError
  );
  await expect(handle.executeUpdate(configureUpdate, { args: [{ targets: [] }] })).rejects.toMatchObject({
    cause: { message: 'targets must name at least one target' },
  });
  const updated = await handle.executeUpdate(configureUpdate, {
    args: [{ intervalMs: 90_000, targets: ['cloud', 'slow'] }],
  });
  expect(updated).toMatchObject({ intervalMs: 90_000, targets: ['cloud', 'slow'] });

  await handle.signal(syncNowSignal);
  const status = await harness.waitForCycles(handle, 2);
  expect(status.config.intervalMs).toBe(90_000);
  expect(status.lastCycle?.targets.slow).toMatchObject({ changed: 1, published: 1 });
  const { memo } = await handle.describe();
  expect(memo?.config).toMatchObject({ intervalMs: 90_000 });
  await handle.terminate();
});

test('a throttled target is retried after its delay and never holds back another target', async () => {
  const group = uniqueName('throttle');
  const [icc] = kite.addSims(group, 2, 13_000);
  slow.throttled.add(icc);
  const handle = await harness.start(group, { targets: ['cloud', 'slow'] });
  await waitUntil(() => cloud.received.has(icc), 'the healthy target has the SIM');
  // The throttle is lifted only once the slow target has refused the SIM (on a busy machine, its first try may come
  // after the healthy target's).
  await waitUntil(() => (slow.throttledAnswers.get(icc) ?? 0) > 0, 'the slow target throttled the SIM');
  expect(slow.received.has(icc)).toBe(false);
  slow.throttled.delete(icc);
  const status = await harness.waitForCycles(handle, 1);
  expect(status.lastCycle?.targets.slow.throttled).toBeGreaterThan(0);
  expect(status.lastCycle?.targets.slow.published).toBe(2);
  expect(slow.received.get(icc)).toHaveLength(1);
  await handle.terminate();
});

test('continue-as-new carries configuration, counters and published state', async () => {
  const group = uniqueName('can');
  const [icc] = kite.addSims(group, 4, 14_000);
  const handle = await harness.start(group, { targets: ['cloud'], maxCyclesPerRun: 2 });
  const firstRunId = (await handle.describe()).runId;
  await harness.waitForCycles(handle, 1);
  await handle.signal(syncNowSignal);
  await harness.waitForCycles(handle, 2);
  cloud.drain();

  kite.update(icc, { alias: 'after-can' });
  const latest = harness.client.workflow.getHandle(handle.workflowId);
  await latest.signal(syncNowSignal);
  const status = await harness.waitForCycles(latest, 3);
  expect((await latest.describe()).runId).not.toBe(firstRunId);
  expect(status.config).toMatchObject({ group, maxCyclesPerRun: 2, targets: ['cloud'] });
  expect(cloud.drain().get(icc)).toEqual([{ alias: 'after-can' }]);
  await latest.terminate();
});

test('disable mid-publish cancels the cycle at a batch boundary; enable publishes the rest, nothing twice', async () => {
  const group = uniqueName('cancel');
  const iccs = kite.addSims(group, 2000, 15_000);
  slow.delayMs = 500;
  const handle = await harness.start(group, { targets: ['slow'] });
  for (let i = 0; (await handle.query(statusQuery)).phase !== 'publish' || !slow.received.size; i++) {
    if (i > 200) throw new Error('publish did not start');
    await sleep(50);
  }
  await handle.signal(disableSignal);
  const cancelled = await harness.waitForCycles(handle, 1);
  expect(cancelled.lastCycle).toMatchObject({ outcome: 'cancelled', error: 'group disabled during the cycle' });
  const sentBeforeEnable = iccs.filter((icc) => slow.received.has(icc)).length;
  expect(sentBeforeEnable).toBeLessThan(iccs.length);
  await sleep(1000);
  expect(iccs.filter((icc) => slow.received.has(icc)).length).toBe(sentBeforeEnable); // the activity really stopped

  slow.delayMs = 0;
  await handle.signal(enableSignal);
  const resumed = await harness.waitForCycles(handle, 2);
  expect(resumed.lastCycle).toMatchObject({ outcome: 'completed' });
  expect(resumed.lastCycle?.targets.slow.changed).toBe(iccs.length - sentBeforeEnable);
  expect(iccs.filter((icc) => slow.received.get(icc)?.length !== 1)).toEqual([]);
  await handle.terminate();
});
