/**
 * One worker per test file on the shared Temporal server and Redis, running the real workflow and activities
 * with the sources and targets a test chooses. Each file gets its own task queue and Redis key prefix.
 */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import type Redis from 'ioredis';
import { createActivities, type ActivityDeps } from '../../activities';
import type { KiteSource } from '../../activities/kite-source';
import type { ConfiguredTarget, PublishDeps } from '../../activities/publish';
import { createLogger } from '../../shared/log';
import { StateStore } from '../../state/store';
import type { Target } from '../../targets/target';
import { statusQuery, workflowIdForGroup, type GroupConfig, type GroupStatus } from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { groupSummary } from '../../workflows/details';
import { groupVisibility } from '../../workflows/search-attributes';
import { testRedis, testStack, uniqueName } from '../setup/stack';

export interface SyncHarness {
  client: Client;
  store: StateStore;
  /** The store's key prefix (KITE_REDIS_PREFIX for a CLI that reads this harness's state). */
  prefix: string;
  redis: Redis;
  taskQueue: string;
  /**
   * Starts the group's workflow; `intervalMs` defaults to an hour so that cycles run only when asked, and
   * `presenceMaxAgeMs` to a week so that presence is read only for new SIMs and changed hints unless a test asks.
   */
  start(group: string, config?: Partial<GroupConfig>): Promise<WorkflowHandle<typeof groupSyncWorkflow>>;
  /** Waits until the group's workflow has completed `cycles` cycles, and returns its status. */
  waitForCycles(handle: WorkflowHandle, cycles: number, timeoutMs?: number): Promise<GroupStatus>;
  /** Stops the worker, runs `fn` (whose signals then reach the workflow in one task), and starts a new worker. */
  whileWorkerDown(fn: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export async function startSyncHarness(options: {
  kite: KiteSource;
  targets: Target[];
  batchSize?: number;
  /** @default the shared test server */
  temporalAddress?: string;
  /** Told each target call's outcomes, as the worker's metrics are. @default none */
  onOutcomes?: PublishDeps['onOutcomes'];
  /** Names of the targets told when a SIM leaves the group (their `leftGroupNotice`). @default none */
  leftGroupNotice?: string[];
  /** More of the activities' dependencies, e.g. `kiteRequestsPerSecond`. @default none */
  deps?: Partial<ActivityDeps>;
}): Promise<SyncHarness> {
  const redis = testRedis();
  const prefix = uniqueName('cc');
  const store = new StateStore(redis, { prefix });
  const address = options.temporalAddress ?? testStack.temporalAddress;
  const connection = await Connection.connect({ address });
  const nativeConnection = await NativeConnection.connect({ address });
  const client = new Client({ connection });
  const taskQueue = uniqueName('sync');
  const targets = new Map<string, ConfiguredTarget>(
    options.targets.map((target) => [
      target.name,
      { target, leftGroupNotice: options.leftGroupNotice?.includes(target.name) },
    ])
  );
  const activities = createActivities({
    store,
    kite: options.kite,
    targets,
    logger: createLogger({}, { level: 'warn' }),
    batchSize: options.batchSize ?? 50,
    onOutcomes: options.onOutcomes,
    ...options.deps,
  });
  const startWorker = async () => {
    const worker = await Worker.create({
      connection: nativeConnection,
      taskQueue,
      workflowsPath: require.resolve('../../workflows'),
      maxHeartbeatThrottleInterval: '300 milliseconds',
      activities,
    });
    return { worker, running: worker.run() };
  };
  let current = await startWorker();
  const stopWorker = async () => {
    current.worker.shutdown();
    await current.running;
  };

  return {
    client,
    store,
    prefix,
    redis,
    taskQueue,
    async start(group, config = {}) {
      const groupConfig: GroupConfig = {
        group,
        enabled: true,
        intervalMs: 3_600_000,
        presenceMaxAgeMs: 7 * 24 * 3_600_000,
        targets: options.targets.map((t) => t.name),
        ...config,
      };
      return client.workflow.start(groupSyncWorkflow, {
        taskQueue,
        workflowId: workflowIdForGroup(group),
        args: [{ config: groupConfig }],
        typedSearchAttributes: groupVisibility(groupConfig).searchAttributes,
        staticSummary: groupSummary(groupConfig),
        workflowIdConflictPolicy: 'TERMINATE_EXISTING',
      });
    },
    async waitForCycles(handle, cycles, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const status = await handle.query(statusQuery);
        if (status.cyclesCompleted >= cycles && status.phase === 'idle') return status;
        if (Date.now() > deadline) {
          throw new Error(
            `only ${status.cyclesCompleted} of ${cycles} cycles after ${timeoutMs} ms: ${JSON.stringify(status)}`
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async whileWorkerDown(fn) {
      await stopWorker();
      try {
        await fn();
      } finally {
        current = await startWorker();
      }
    },
    async close() {
      await stopWorker();
      await nativeConnection.close();
      await connection.close();
      redis.disconnect();
    },
  };
}
