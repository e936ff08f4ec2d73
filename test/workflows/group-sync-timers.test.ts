/**
 * Fast tier, in skipped time: the group workflow's timer, enable/disable, syncNow, configure and continue-as-new
 * with intervals of minutes to days, on Temporal's time-skipping test server (fetched from Maven Central by
 * scripts/setup.sh) and mocked activities. A test moves the server's clock with `env.sleep`, so "no cycle before
 * the interval" and "a cycle after it" are exact, not real-time races.
 *
 * Cancellation of a running activity and the search attributes seen by `describe` stay in group-sync.test.ts, on the
 * dev server.
 */
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker } from '@temporalio/worker';
import type { WorkflowHandle } from '@temporalio/client';
import type { SyncActivities } from '../../activities';
import {
  configureUpdate,
  disableSignal,
  enableSignal,
  statusQuery,
  syncNowSignal,
  workflowIdForGroup,
  type GroupConfig,
  type GroupStatus,
} from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { startTimeSkippingServer, type TimeSkippingServer } from '../setup/time-skipping';
import { uniqueName } from '../setup/stack';
import { waitUntil } from '../support/wait-until';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Fetches per group, in order, with the server's (skipped) time at which each started. */
const fetches = new Map<string, number[]>();

let server: TimeSkippingServer;
let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
const taskQueue = uniqueName('wf-time');

beforeAll(async () => {
  server = await startTimeSkippingServer();
  env = server.env;
  const activities: SyncActivities = {
    async fetchSnapshot({ group }) {
      fetches.set(group, [...(fetches.get(group) ?? []), await env.currentTimeMs()]);
      return { seen: 2, inGroup: 2, invalid: 0, invalidReasons: {}, presenceFetched: 2, presenceErrors: {} };
    },
    async diffSnapshot({ targets }) {
      return { left: 0, targets: Object.fromEntries(targets.map((t) => [t, { changed: 1, stillFailing: 0 }])) };
    },
    async publishChanges() {
      return { published: 1, failed: 0, throttled: 0, failing: 0 };
    },
    async resyncSims({ targets }) {
      return Object.fromEntries(targets.map((t) => [t, 0]));
    },
    async previewChanges({ targets }) {
      const none = { publish: 0, full: 0, held: 0, stillFailing: 0, sample: [] };
      return { left: 0, targets: Object.fromEntries(targets.map((t) => [t, none])) };
    },
  };
  const bundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: new DefaultLogger('WARN'),
  });
  worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities });
  running = worker.run();
}, 120_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await server?.stop();
});

async function start(config: Partial<GroupConfig>) {
  const group = uniqueName('wft');
  const full: GroupConfig = { group, enabled: true, intervalMs: HOUR, targets: ['cloud'], ...config };
  const handle = await env.client.workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: workflowIdForGroup(group),
    args: [{ config: full }],
  });
  return { group, handle };
}

/** Waits, in real time, until `cycles` cycles completed and the workflow idles (its activities are immediate). */
async function cyclesDone(handle: WorkflowHandle, cycles: number): Promise<GroupStatus> {
  let status: GroupStatus | undefined;
  await waitUntil(
    async () => {
      status = await handle.query(statusQuery);
      return status.cyclesCompleted >= cycles && status.phase === 'idle';
    },
    `${cycles} cycles completed`,
    30_000
  );
  return status!;
}

/** Timers that fired in the current run: a timer due within the skipped time has fired when `env.sleep` returns. */
const timersFired = async (handle: WorkflowHandle) =>
  ((await handle.fetchHistory()).events ?? []).filter((e) => e.timerFiredEventAttributes).length;

test('a cycle runs at once, then exactly one interval after the previous ended, in workflow time', async () => {
  const { group, handle } = await start({ intervalMs: 5 * MINUTE });
  const first = await cyclesDone(handle, 1);
  expect(first.nextSyncAt! - first.lastCycle!.finishedAt!).toBe(5 * MINUTE);

  await env.sleep(4 * MINUTE);
  expect(await timersFired(handle)).toBe(0);
  expect((await handle.query(statusQuery)).cyclesCompleted).toBe(1);

  await env.sleep(2 * MINUTE);
  const second = await cyclesDone(handle, 2);
  const [at1, at2] = fetches.get(group)!;
  expect(at2 - at1).toBeGreaterThanOrEqual(5 * MINUTE);
  expect(at2 - at1).toBeLessThan(6 * MINUTE + MINUTE);
  expect(second.nextSyncAt! - second.lastCycle!.finishedAt!).toBe(5 * MINUTE);
  await handle.terminate();
});

test('OFF for two days runs nothing; enable syncs at once; syncNow cuts a day-long wait short', async () => {
  const { group, handle } = await start({ intervalMs: 24 * HOUR });
  await cyclesDone(handle, 1);
  await handle.signal(disableSignal);
  await waitUntil(async () => (await handle.query(statusQuery)).config.enabled === false, 'the group is OFF');

  await env.sleep(48 * HOUR);
  expect(fetches.get(group)).toHaveLength(1);
  expect((await handle.query(statusQuery)).nextSyncAt).toBeUndefined();

  const enabledAt = await env.currentTimeMs();
  await handle.signal(enableSignal);
  await cyclesDone(handle, 2);
  expect(fetches.get(group)![1] - enabledAt).toBeLessThan(MINUTE);

  const askedAt = await env.currentTimeMs();
  await handle.signal(syncNowSignal);
  await cyclesDone(handle, 3);
  expect(fetches.get(group)![2] - askedAt).toBeLessThan(MINUTE);
  await handle.terminate();
});

test('configure shortens the wait in progress: a 10-minute interval set during an hour-long wait applies to it', async () => {
  const { group, handle } = await start({ intervalMs: HOUR });
  await cyclesDone(handle, 1);
  await handle.executeUpdate(configureUpdate, { args: [{ intervalMs: 10 * MINUTE }] });

  await env.sleep(11 * MINUTE);
  await cyclesDone(handle, 2);
  const [at1, at2] = fetches.get(group)!;
  expect(at2 - at1).toBeGreaterThanOrEqual(10 * MINUTE);
  expect(at2 - at1).toBeLessThan(HOUR);
  await handle.terminate();
});

test('continue-as-new after maxCyclesPerRun: the new run keeps the count and waits the interval from the last cycle', async () => {
  const { group, handle } = await start({ intervalMs: HOUR, maxCyclesPerRun: 2 });
  const firstRunId = (await handle.describe()).runId;
  await cyclesDone(handle, 1);
  await env.sleep(HOUR + MINUTE);
  await waitUntil(async () => (await handle.describe()).runId !== firstRunId, 'a new run started', 30_000);
  const carried = await handle.query(statusQuery);
  expect(carried).toMatchObject({ cyclesCompleted: 2, lastCycle: { cycle: 2 } });

  // The new run's first cycle is due an interval after the last cycle of the old run, not at once.
  await env.sleep(30 * MINUTE);
  expect(fetches.get(group)).toHaveLength(2);
  await env.sleep(31 * MINUTE);
  expect((await cyclesDone(handle, 3)).lastCycle?.cycle).toBe(3);
  const [, at2, at3] = fetches.get(group)!;
  expect(at3 - at2).toBeGreaterThanOrEqual(HOUR);
  await handle.terminate();
});
