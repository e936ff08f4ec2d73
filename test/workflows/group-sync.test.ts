/**
 * Fast tier: the group workflow's own logic (timer, enable/disable, syncNow, configure, continue-as-new, failure
 * handling) with mocked activities, one worker and one workflow bundle for the file.
 *
 * These run on the shared dev server (test/setup/global-setup.ts) with real time and the shortest interval the
 * workflow accepts (1 s), for what the time-skipping server does not model as the real server does: activity
 * cancellation, search attributes in `describe`, and the history a real server keeps. Long intervals, day-long
 * waits and continue-as-new in skipped time are in group-sync-timers.test.ts.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker } from '@temporalio/worker';
import type { SyncActivities } from '../../activities';
import type { DiffInput, FetchResult, InventoryDrop, PublishInput } from '../../activities/types';
import {
  acceptDropUpdate,
  configureUpdate,
  disableSignal,
  enableSignal,
  previewUpdate,
  statusQuery,
  syncNowSignal,
  workflowIdForGroup,
  type GroupConfig,
  type GroupStatus,
} from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { PREVIEW_CYCLE } from '../../workflows/group-sync';
import { groupVisibility, KITE_SYNC_STATE } from '../../workflows/search-attributes';
import { testStack, uniqueName } from '../setup/stack';
import { waitUntil } from '../support/wait-until';

/** What a test makes one group's activities do; unset steps succeed at once with small counts. */
interface Behaviour {
  fetch?: (ctx: Context) => Promise<FetchResult>;
  publish?: (input: PublishInput) => Promise<Awaited<ReturnType<SyncActivities['publishChanges']>>>;
  /** The diff's inventory drop, given its input; none when unset or undefined. */
  drop?: (input: DiffInput) => InventoryDrop | undefined;
}

const behaviours = new Map<string, Behaviour>();
/** Activity calls per group, in order (`fetch:1`, `diff:1`, `publish:1:cloud`, …), with when they started. */
const calls = new Map<string, { name: string; at: number }[]>();
const record = (group: string, name: string) =>
  calls.set(group, [...(calls.get(group) ?? []), { name, at: Date.now() }]);
const callNames = (group: string) => calls.get(group)?.map((c) => c.name);

const fetched: FetchResult = {
  seen: 3,
  inGroup: 2,
  invalid: 1,
  invalidReasons: { 'bad-icc': 1 },
  presenceFetched: 2,
  presenceErrors: {},
};

const mockActivities: SyncActivities = {
  async fetchSnapshot({ group, cycle }) {
    record(group, `fetch:${cycle}`);
    return (await behaviours.get(group)?.fetch?.(Context.current())) ?? fetched;
  },
  async diffSnapshot(input: DiffInput) {
    const { group, cycle, targets } = input;
    record(group, `diff:${cycle}${input.approvedDrop ? `:approved=${input.approvedDrop}` : ''}`);
    const drop = behaviours.get(group)?.drop?.(input);
    const changed = drop ? 0 : 2;
    return { left: 0, targets: Object.fromEntries(targets.map((t) => [t, { changed, stillFailing: 0 }])), drop };
  },
  async publishChanges(input: PublishInput) {
    record(input.group, `publish:${input.cycle}:${input.target}`);
    const publish = behaviours.get(input.group)?.publish;
    return publish ? publish(input) : { published: 2, failed: 0, throttled: 0, failing: 0 };
  },
  async resyncSims({ group, targets }) {
    record(group, 'resync');
    return Object.fromEntries(targets.map((t) => [t, 0]));
  },
  async previewChanges({ group, cycle, targets }) {
    record(group, `preview:${cycle}`);
    const none = { publish: 0, full: 0, held: 0, stillFailing: 0, sample: [] };
    return { left: 0, targets: Object.fromEntries(targets.map((t) => [t, none])) };
  },
};

let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
const taskQueue = uniqueName('wf-fast');

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createFromExistingServer({ address: testStack.temporalAddress });
  const bundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: new DefaultLogger('WARN'),
  });
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: bundle,
    activities: mockActivities,
    // Heartbeats (and with them cancellation) reach the activity within a fraction of a second.
    maxHeartbeatThrottleInterval: '300 milliseconds',
  });
  running = worker.run();
}, 60_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await env?.teardown();
});

async function start(config: Partial<GroupConfig> & { group?: string } = {}) {
  const group = config.group ?? uniqueName('wf');
  const full: GroupConfig = { group, enabled: true, intervalMs: 3_600_000, targets: ['cloud'], ...config };
  const handle = await env.client.workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: workflowIdForGroup(group),
    args: [{ config: full }],
    typedSearchAttributes: groupVisibility(full).searchAttributes,
  });
  return { group, handle };
}

async function waitForCycles(handle: WorkflowHandle, cycles: number): Promise<GroupStatus> {
  let status: GroupStatus | undefined;
  await waitUntil(
    async () => {
      status = await handle.query(statusQuery);
      return status.cyclesCompleted >= cycles && status.phase === 'idle';
    },
    `${cycles} cycles completed`,
    20_000
  );
  return status!;
}

const historyOf = async (handle: WorkflowHandle) => (await handle.fetchHistory()).events ?? [];

test('the first cycle runs at once, then one every interval, fetch → diff → publish per target', async () => {
  const { group, handle } = await start({ intervalMs: 1_000, targets: ['cloud', 'backup'] });
  const status = await waitForCycles(handle, 2);
  expect(status.lastCycle).toMatchObject({
    outcome: 'completed',
    seen: 3,
    inGroup: 2,
    invalid: 1,
    targets: { cloud: { changed: 2, published: 2, pending: 0 }, backup: { changed: 2, published: 2 } },
  });
  const log = calls.get(group)!;
  const names = log.map((c) => c.name);
  expect(names.slice(0, 2)).toEqual(['fetch:1', 'diff:1']);
  // The targets publish concurrently, in no set order.
  expect(names.slice(2, 4).sort()).toEqual(['publish:1:backup', 'publish:1:cloud']);
  expect(names[4]).toBe('fetch:2');
  // The interval runs from the end of one cycle (after its last publish) to the start of the next.
  expect(log[4].at - Math.max(log[2].at, log[3].at)).toBeGreaterThanOrEqual(1_000);
  await handle.terminate();
});

test('disable: no timer and no activity while OFF; enable runs a cycle at once; syncNow runs one now', async () => {
  const { group, handle } = await start();
  await waitForCycles(handle, 1);
  expect((await handle.query(statusQuery)).nextSyncAt).toBeGreaterThan(Date.now());

  await handle.signal(disableSignal);
  await handle.signal(syncNowSignal);
  await waitUntil(async () => (await handle.query(statusQuery)).config.enabled === false, 'the group is OFF');
  const off = await handle.query(statusQuery);
  expect(off.nextSyncAt).toBeUndefined();
  expect((await handle.describe()).typedSearchAttributes.get(KITE_SYNC_STATE)).toBe('OFF');
  const events = await historyOf(handle);
  const disabledAt = events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'disable');
  expect(
    events.slice(disabledAt).some((e) => e.timerStartedEventAttributes || e.activityTaskScheduledEventAttributes)
  ).toBe(false);

  await handle.signal(enableSignal);
  await waitForCycles(handle, 2);
  expect((await handle.describe()).typedSearchAttributes.get(KITE_SYNC_STATE)).toBe('ON');
  await handle.signal(syncNowSignal);
  await waitForCycles(handle, 3);
  expect(callNames(group)!.filter((c) => c.startsWith('fetch'))).toEqual(['fetch:1', 'fetch:2', 'fetch:3']);
  await handle.terminate();
});

test('disable during a cycle cancels its activity and records the cycle as cancelled', async () => {
  const group = uniqueName('wf-cancel');
  let cancelled = false;
  behaviours.set(group, {
    async fetch(ctx) {
      // Heartbeat so that the cancellation reaches the activity.
      for (;;) {
        ctx.heartbeat();
        try {
          await ctx.sleep(100);
        } catch (err) {
          cancelled = true;
          throw err;
        }
      }
    },
  });
  const { handle } = await start({ group });
  await waitUntil(async () => (await handle.query(statusQuery)).phase === 'fetch', 'the fetch is running');
  await handle.signal(disableSignal);
  const status = await waitForCycles(handle, 1);
  expect(cancelled).toBe(true);
  expect(status.lastCycle).toMatchObject({ outcome: 'cancelled', error: 'group disabled during the cycle' });
  expect(callNames(group)).toEqual(['fetch:1']);
  await handle.terminate();
});

test('configure changes the interval of the wait in progress; an invalid patch is rejected with its reason', async () => {
  const { handle } = await start();
  await waitForCycles(handle, 1);
  await expect(handle.executeUpdate(configureUpdate, { args: [{ intervalMs: 5 }] })).rejects.toBeInstanceOf(
    WorkflowUpdateFailedError
  );
  const config = await handle.executeUpdate(configureUpdate, { args: [{ intervalMs: 1_000 }] });
  expect(config.intervalMs).toBe(1_000);
  await waitForCycles(handle, 2); // without a syncNow: the hour-long wait was re-evaluated
  expect((await handle.describe()).memo?.config).toMatchObject({ intervalMs: 1_000 });
  await handle.terminate();
});

test('continue-as-new after maxCyclesPerRun carries the counts, the last cycle and the failing SIMs', async () => {
  const group = uniqueName('wf-can');
  behaviours.set(group, { publish: async () => ({ published: 1, failed: 1, throttled: 0, failing: 1 }) });
  const { handle } = await start({ group, maxCyclesPerRun: 2 });
  const firstRunId = (await handle.describe()).runId;
  await waitForCycles(handle, 1);
  await handle.signal(syncNowSignal);
  await waitUntil(async () => (await handle.describe()).runId !== firstRunId, 'a new run started');
  const status = await handle.query(statusQuery);
  expect(status).toMatchObject({ cyclesCompleted: 2, failingSims: { cloud: 1 }, lastCycle: { cycle: 2 } });
  // The new run waits for the interval from the last cycle instead of syncing at once.
  expect(status.nextSyncAt).toBeGreaterThan(Date.now() + 60_000);
  await handle.signal(syncNowSignal);
  expect((await waitForCycles(handle, 3)).lastCycle?.cycle).toBe(3);
  await handle.terminate();
});

test('a failed step fails the cycle with its reason and the workflow carries on', async () => {
  const group = uniqueName('wf-fail');
  behaviours.set(group, {
    fetch: async () => {
      throw ApplicationFailure.nonRetryable('certificate refused', 'KiteAuthError');
    },
  });
  const { handle } = await start({ group });
  const status = await waitForCycles(handle, 1);
  expect(status.lastCycle).toMatchObject({ outcome: 'failed', error: 'certificate refused' });
  expect(status.lastError).toBe('certificate refused');
  expect(callNames(group)).toEqual(['fetch:1']); // not retried, no diff

  behaviours.delete(group);
  await handle.signal(syncNowSignal);
  expect((await waitForCycles(handle, 2)).lastError).toBeUndefined();
  await handle.terminate();
});

test('a cycle out of attempts is followed by one at once; a second in a row waits for the interval', async () => {
  const group = uniqueName('wf-exhausted');
  // Retryable every time, with a short Retry-After, so that the 20 attempts run out in seconds.
  behaviours.set(group, {
    publish: async () => {
      throw ApplicationFailure.create({ message: 'target down', type: 'TargetUnavailable', nextRetryDelay: 10 });
    },
  });
  const { handle } = await start({ group });
  let status: GroupStatus | undefined;
  await waitUntil(
    async () => (status = await handle.query(statusQuery)).cyclesCompleted >= 2 && status.phase === 'idle',
    'two cycles ran out of attempts',
    90_000
  );
  if (!status) throw new Error('no status');
  expect(status.lastCycle).toMatchObject({
    cycle: 2,
    outcome: 'failed',
    attemptsExhausted: true,
    error: expect.stringMatching(/^attempts exhausted, next cycle starts at once: .*target down/),
  });
  // Cycle 2 ran without a syncNow; after it the fault looks lasting, so cycle 3 waits for the interval.
  expect(callNames(group)?.filter((name) => name.startsWith('fetch'))).toEqual(['fetch:1', 'fetch:2']);
  expect(status.nextSyncAt).toBe((status.lastCycle?.finishedAt ?? NaN) + 3_600_000);

  behaviours.delete(group);
  await handle.signal(syncNowSignal);
  expect((await waitForCycles(handle, 3)).lastCycle).toMatchObject({ cycle: 3, outcome: 'completed' });
  await handle.terminate();
}, 120_000);

test('a group name that cannot be a Redis hash tag fails the workflow before it does anything', async () => {
  const group = 'bad}name';
  const handle = await env.client.workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: uniqueName('wf-badname'),
    args: [{ config: { group, enabled: true, intervalMs: 60_000, targets: ['cloud'] } }],
  });
  const failure = await handle.result().catch((err: unknown) => err);
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  expect((failure as WorkflowFailedError).cause).toMatchObject({ type: 'InvalidGroupName' });
  expect(callNames(group)).toBeUndefined();
});

test('a drop holds the group, visibly, until approved by its count; the hold survives continue-as-new', async () => {
  const group = uniqueName('wf-drop');
  const drop: InventoryDrop = { missing: 6, known: 10, listed: 4, maxLeaveFraction: 0.5 };
  behaviours.set(group, { drop: (input) => ((input.approvedDrop ?? 0) >= drop.missing ? undefined : drop) });
  const { handle } = await start({ group, maxCyclesPerRun: 2 });
  const held = await waitForCycles(handle, 1);
  expect(held.dropHold).toEqual({ ...drop, cycle: 1, since: expect.any(Number) });
  expect(held.lastCycle).toMatchObject({ outcome: 'held', error: expect.stringContaining('6 of 10 SIMs missing') });
  expect(held.lastError).toBeUndefined();
  expect(callNames(group)).toEqual(['fetch:1', 'diff:1']); // nothing published
  const metadata = await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata');
  expect(metadata.currentDetails).toContain(
    `6 of 10 SIMs missing from Kite's inventory (it listed 4 of the group; limit 50%); approve with \`kite-cc accept-drop ${group}\``
  );

  // Another count than the drop's is refused; the next cycle re-checks Kite and holds again.
  const wrong = await handle.executeUpdate(acceptDropUpdate, { args: [{ missing: 5 }] }).catch((e: unknown) => e);
  expect(wrong).toBeInstanceOf(WorkflowUpdateFailedError);
  expect((wrong as Error & { cause: Error }).cause.message).toBe(
    `group ${group} holds a drop of 6 of 10 SIMs missing, not 5: check \`kite-cc status ${group}\` and approve the count it shows`
  );
  await handle.signal(syncNowSignal);
  const again = await waitForCycles(handle, 2);
  expect(again.dropHold).toEqual({ ...drop, cycle: 2, since: held.dropHold!.since });

  // Continued as new after 2 cycles: the hold came along; the approval runs a cycle at once, which forgets them.
  const next = env.client.workflow.getHandle(handle.workflowId);
  await waitUntil(async () => (await next.describe()).runId !== handle.firstExecutionRunId, 'continued as new');
  expect((await next.query(statusQuery)).dropHold).toEqual(again.dropHold);
  const approved = await next.executeUpdate(acceptDropUpdate, { args: [{ missing: 6 }] });
  expect(approved).toMatchObject({ missing: 6, approved: 6 });
  const done = await waitForCycles(next, 3);
  expect(done.dropHold).toBeUndefined();
  expect(done.lastCycle).toMatchObject({ outcome: 'completed', targets: { cloud: { published: 2 } } });
  expect(callNames(group)).toContain('diff:3:approved=6');
  const none = await next.executeUpdate(acceptDropUpdate, { args: [{ missing: 6 }] }).catch((e: Error) => e);
  expect((none as Error & { cause: Error }).cause.message).toBe(
    `group ${group} holds no inventory drop: there is nothing to approve`
  );
  await next.terminate();
});

test('a hold ends by itself when the SIMs come back', async () => {
  const group = uniqueName('wf-back');
  let missing = true;
  behaviours.set(group, {
    drop: () => (missing ? { missing: 3, known: 4, listed: 1, maxLeaveFraction: 0.5 } : undefined),
  });
  const { handle } = await start({ group });
  expect((await waitForCycles(handle, 1)).dropHold).toMatchObject({ missing: 3 });
  missing = false;
  await handle.signal(syncNowSignal);
  const status = await waitForCycles(handle, 2);
  expect(status.dropHold).toBeUndefined();
  expect(status.lastCycle?.outcome).toBe('completed');
  const metadata = await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata');
  expect(metadata.currentDetails).not.toContain('SIMs missing');
  await handle.terminate();
});

test('preview runs fetch and the preview diff on the preview staging cycle, beside the cycles', async () => {
  const { group, handle } = await start();
  await waitForCycles(handle, 1);
  const preview = await handle.executeUpdate(previewUpdate, { args: [{ sample: 2 }] });
  expect(preview).toMatchObject({
    group,
    enabled: true,
    seen: 3,
    inGroup: 2,
    left: 0,
    targets: { cloud: { publish: 0 } },
  });
  expect(callNames(group)!.slice(-2)).toEqual([`fetch:${PREVIEW_CYCLE}`, `preview:${PREVIEW_CYCLE}`]);
  expect((await handle.query(statusQuery)).cyclesCompleted).toBe(1); // not a cycle
  await handle.terminate();
});
