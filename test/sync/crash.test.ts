/**
 * Crash safety: a worker process killed with SIGKILL in the middle of publishing a 5,000-SIM group. A new worker
 * finishes the cycle; every SIM reaches the target; duplicates stay within the in-flight window; Redis's
 * last-published state equals what the target holds.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import type Redis from 'ioredis';
import { startKiteSimulator, type KiteSimulator } from '../../simulator';
import { StateStore } from '../../state/store';
import { statusQuery, workflowIdForGroup, type GroupConfig } from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { groupVisibility } from '../../workflows/search-attributes';
import { tempDir } from '../setup/processes';
import { testRedis, testStack, uniqueName } from '../setup/stack';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process';
import { statusAfterKill } from '../support/query-after-kill';
import { waitUntil } from '../support/wait-until';

const SIMS = 5_000;
const WEBHOOK_SECRET = 'crash-test-secret-0123456789';
const BATCH = 100;
const IN_FLIGHT = 2;

let sim: KiteSimulator;
let receiver: WebhookReceiver;
let redis: Redis;
let connection: Connection;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  sim = await startKiteSimulator({
    groups: ['crash-fleet'],
    simsPerGroup: SIMS,
    ungroupedSims: 500,
    seed: 7,
    certDir: tempDir('certs'),
  });
  receiver = await startWebhookReceiver(40);
  redis = testRedis();
  connection = await Connection.connect({ address: testStack.temporalAddress });
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await connection?.close();
  redis?.disconnect();
  await receiver?.close();
  await sim?.close();
});

test('SIGKILL mid-publish: the cycle completes, nothing is lost, duplicates stay within the in-flight window', async () => {
  const taskQueue = uniqueName('crash');
  const prefix = uniqueName('cc');
  const group = 'crash-fleet';
  const env = {
    KITE_TEMPORAL_ADDRESS: testStack.temporalAddress,
    KITE_TASK_QUEUE: taskQueue,
    KITE_REDIS_URL: testStack.redisUrl,
    KITE_REDIS_PREFIX: prefix,
    KITE_API_URL: sim.baseUrl,
    KITE_CA_FILE: sim.tls.caFile,
    KITE_CERT_FILE: sim.tls.clientCertFile,
    KITE_KEY_FILE: sim.tls.clientKeyFile,
    KITE_REQUESTS_PER_SECOND: '0',
    KITE_PUBLISH_BATCH_SIZE: String(BATCH),
    KITE_PUBLISH_IN_FLIGHT: String(IN_FLIGHT),
    KITE_TARGETS: JSON.stringify({
      hook: {
        type: 'webhook',
        url: receiver.url,
        secret: 'crash-test-secret-0123456789',
        batchSize: 50,
        concurrency: 2,
        requestsPerSecond: 1000,
      },
    }),
  };
  workers.push(await startWorkerProcess(env));
  const client = new Client({ connection });
  const config: GroupConfig = { group, enabled: true, intervalMs: 3_600_000, targets: ['hook'] };
  const handle = await client.workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: workflowIdForGroup(`${group}-${taskQueue}`),
    args: [{ config }],
    typedSearchAttributes: groupVisibility(config).searchAttributes,
  });

  await waitUntil(() => receiver.total() >= SIMS / 3, 'a third of the group is published', 120_000);
  await workers[0].kill('SIGKILL');
  const deliveredBeforeCrash = receiver.total();
  expect(deliveredBeforeCrash).toBeLessThan(SIMS);

  workers.push(await startWorkerProcess(env));
  const cycleDone = async () => ((await statusAfterKill(handle))?.cyclesCompleted ?? 0) >= 1;
  await waitUntil(cycleDone, 'the cycle completes on the new worker', 120_000);
  const status = await handle.query(statusQuery);
  expect(status.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS, invalid: 0 });

  const iccs = sim.control.iccs(group);
  expect(iccs).toHaveLength(SIMS);
  expect(iccs.filter((icc) => !receiver.deliveries.has(icc))).toEqual([]);
  const duplicates = receiver.total() - SIMS;
  console.log(`crash test: ${deliveredBeforeCrash} SIMs delivered before SIGKILL, ${duplicates} delivered twice`);
  expect(duplicates).toBeLessThanOrEqual(BATCH * IN_FLIGHT);

  const store = new StateStore(redis, { prefix });
  const published = await store.publishedRecords(group, 'hook', iccs);
  iccs.forEach((icc, i) => expect(JSON.parse(published[i]!)).toEqual(receiver.state.get(icc)));
  expect(await store.pendingCount(group, 'hook')).toBe(0);

  // Secrets stay out of the workflow history and the worker's logs: the webhook key, Kite's client key.
  const history = JSON.stringify(await handle.fetchHistory());
  const kiteKey = readFileSync(sim.tls.clientKeyFile, 'utf8').split('\n')[1];
  for (const secret of [WEBHOOK_SECRET, kiteKey]) {
    expect(history).not.toContain(secret);
    for (const worker of workers) expect(worker.output()).not.toContain(secret);
  }
  expect(workers[1].output()).toContain('"published changes"');
  await handle.terminate();
}, 240_000);
