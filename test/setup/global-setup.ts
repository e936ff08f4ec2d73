/**
 * Starts the shared test stack once for the whole run: Temporal dev server with its Web UI (through
 * @temporalio/testing, from the binary setup.sh built, never a download), Redis, a 3-master Redis Cluster and
 * Mosquitto. A service already listening on its test port is reused. Addresses reach the test files through environment variables (see test/setup/stack.ts).
 */
import { existsSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { KITE_GROUP, KITE_SYNC_STATE } from '../../workflows/search-attributes';
import { TEMPORAL_BIN, TEST_PORTS } from './ports';
import { portOpen, startMosquitto, startRedis } from './processes';
import { anyPortOpen, redisClusterOk, redisClusterUrl, startRedisCluster } from './redis-cluster';

export interface SharedStack {
  env?: TestWorkflowEnvironment;
  children: ChildProcess[];
}

/** Small so that continue-as-new is exercised by ordinary tests, not only by a dedicated one. */
export const SUGGEST_CAN_AFTER_EVENTS = 400;

async function startTemporal(stack: SharedStack): Promise<void> {
  if (await portOpen(TEST_PORTS.temporal)) return;
  if (!existsSync(TEMPORAL_BIN)) {
    throw new Error(`Temporal CLI not found at ${TEMPORAL_BIN}: run 'bash scripts/setup.sh' first`);
  }
  const create = () =>
    TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: TEMPORAL_BIN },
        ip: '127.0.0.1',
        port: TEST_PORTS.temporal,
        // The UI is served by the same process; it adds well under a second to the start.
        ui: true,
        uiPort: TEST_PORTS.temporalUi,
        searchAttributes: [KITE_GROUP, KITE_SYNC_STATE],
        extraArgs: ['--dynamic-config-value', `limit.historyCount.suggestContinueAsNew=${SUGGEST_CAN_AFTER_EVENTS}`],
      },
    });
  // Core gives the server 5 s to answer; a cold start on a loaded 2-core machine can miss that once.
  stack.env = await create().catch(() => create());
}

/** The Cluster for the tests that run on one (test/state/store-cluster.test.ts, …); reused when it already runs. */
async function startCluster(stack: SharedStack): Promise<void> {
  const ports = TEST_PORTS.redisCluster;
  if (await anyPortOpen(ports)) {
    if (await redisClusterOk(ports)) return;
    throw new Error(
      `ports ${ports.join(', ')} are taken but serve no Redis Cluster: set KITE_TEST_REDIS_CLUSTER_PORT to a free range`
    );
  }
  stack.children.push(...(await startRedisCluster(ports)));
}

export default async function globalSetup(): Promise<void> {
  const stack: SharedStack = { children: [] };
  (globalThis as { __kiteStack?: SharedStack }).__kiteStack = stack;
  if (!(await portOpen(TEST_PORTS.redis))) stack.children.push(await startRedis(TEST_PORTS.redis));
  if (!(await portOpen(TEST_PORTS.mqtt))) stack.children.push(await startMosquitto(TEST_PORTS.mqtt));
  // The Cluster forms while Temporal starts: on a loaded machine both take seconds.
  await Promise.all([
    startCluster(stack),
    process.env.KITE_TEST_NO_TEMPORAL !== '1' ? startTemporal(stack) : undefined,
  ]);
  process.env.KITE_TEST_TEMPORAL_ADDRESS = `127.0.0.1:${TEST_PORTS.temporal}`;
  process.env.KITE_TEST_TEMPORAL_UI_URL = `http://127.0.0.1:${TEST_PORTS.temporalUi}`;
  process.env.KITE_TEST_REDIS_URL = `redis://127.0.0.1:${TEST_PORTS.redis}`;
  process.env.KITE_TEST_REDIS_CLUSTER_URL = redisClusterUrl(TEST_PORTS.redisCluster);
  process.env.KITE_TEST_MQTT_URL = `mqtt://127.0.0.1:${TEST_PORTS.mqtt}`;
}
