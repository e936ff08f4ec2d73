/**
 * Builds a running worker from its configuration: Redis, the Kite clients, the targets, the activities and the
 * Temporal worker. `close()` releases all of them; the process entry point is worker/main.ts.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { kiteSourceFromClients } from '../activities/kite-source';
import type { ConfiguredTarget } from '../activities/publish';
import { KiteClient, kiteAccountPeer, tlsFromFiles } from '../kite';
import { redisBudgets } from '../shared/limits';
import type { Logger } from '../shared/log';
import { temporalSecurity } from '../shared/temporal-settings';
import { connectRedis } from '../state/redis';
import { StateStore } from '../state/store';
import { createTarget } from '../targets';
import type { WorkerConfig } from './config';

export interface RunningWorker {
  worker: Worker;
  close(): Promise<void>;
}

export interface WorkerHooks {
  /** Called with each target's outcomes (metrics). */
  onOutcomes?: ActivityDeps['onOutcomes'];
  onProgress?: ActivityDeps['onProgress'];
  onDiff?: ActivityDeps['onDiff'];
}

/** Where `npm run build` leaves the prebuilt workflow bundle. */
export const DEFAULT_BUNDLE_PATH = path.resolve(__dirname, '../workflow-bundle.js');

export async function startWorker(
  config: WorkerConfig,
  logger: Logger,
  hooks: WorkerHooks = {}
): Promise<RunningWorker> {
  const redis = connectRedis(config.redis.url);
  const store = new StateStore(redis, {
    prefix: config.redis.prefix,
    auditEntriesPerSim: config.audit.entriesPerSim,
    auditMaxAgeDays: config.audit.maxAgeDays,
  });
  const tls = tlsFromFiles({
    certFile: config.kite.certFile,
    keyFile: config.kite.keyFile,
    pfxFile: config.kite.pfxFile,
    passphrase: config.kite.pfxPassphrase,
    caFile: config.kite.caFile,
  });
  // Rate budgets belong to the peer, not the process: every worker takes from one bucket per peer in Redis.
  const budgets = redisBudgets(redis, {
    prefix: config.redis.prefix,
    onUnavailable: (key, error) =>
      logger.warn('Redis unavailable for a rate budget; waiting', { key, error: error.message }),
  });
  const kiteAccount = kiteAccountPeer({ baseUrl: config.kite.baseUrl, ...tls });
  const kiteBudget = budgets.rate(kiteAccount, {
    perSecond: config.kite.requestsPerSecond,
    burst: config.kite.requestsBurst,
  });
  const kite = kiteSourceFromClients(
    (groupFilter) =>
      new KiteClient({
        baseUrl: config.kite.baseUrl,
        apiVersion: config.kite.apiVersion,
        budget: kiteBudget,
        pageSize: config.kite.pageSize,
        maxResponseBytes: config.kite.maxResponseBytes,
        groupFilter,
        logger: logger.child({ component: 'kite-client' }),
        ...tls,
      }),
    config.kite.groupFilters,
    kiteAccount
  );
  const targets = new Map<string, ConfiguredTarget>(
    Object.values(config.targets).map((t) => [
      t.name,
      {
        target: createTarget(t, { logger: logger.child({ target: t.name }), budgets }),
        deviceIdTemplate: t.deviceIdTemplate,
        leftGroupNotice: t.leftGroupNotice,
      },
    ])
  );
  const release = async () => {
    kite.close();
    await Promise.allSettled([...targets.values()].map(({ target }) => target.close()));
    redis.disconnect();
  };
  try {
    // A target configured against the wrong peer (an AWS endpoint of another region) stops the worker here.
    await Promise.all([...targets.values()].map(({ target }) => target.ready?.()));
    const connection = await NativeConnection.connect({
      address: config.temporal.address,
      ...temporalSecurity(config.temporal),
    });
    const worker = await Worker.create({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      ...workflowSource(config),
      activities: createActivities({
        store,
        kite,
        targets,
        logger: logger.child({ component: 'activities' }),
        batchSize: config.publish.batchSize,
        inFlightBatches: config.publish.inFlightBatches,
        maxLeaveFraction: config.publish.maxLeaveFraction,
        kiteRequestsPerSecond: config.kite.requestsPerSecond,
        ...hooks,
      }),
      shutdownGraceTime: config.shutdownGraceMs,
      // Heartbeats carry progress (kite-cc sync --wait) and bring cancellation on disable: keep them frequent.
      maxHeartbeatThrottleInterval: '2 seconds',
    });
    return {
      worker,
      async close() {
        await release();
        await connection.close();
      },
    };
  } catch (err) {
    await release();
    throw err;
  }
}

/** The prebuilt bundle on the production path; bundling from source in development. */
function workflowSource(config: WorkerConfig): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const bundle = config.workflowBundle ?? (existsSync(DEFAULT_BUNDLE_PATH) ? DEFAULT_BUNDLE_PATH : undefined);
  if (bundle) return { workflowBundle: { codePath: bundle } };
  return { workflowsPath: require.resolve('../workflows') };
}
