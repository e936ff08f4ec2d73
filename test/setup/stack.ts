/** Addresses of the shared test stack that test/setup/global-setup.ts started or reused. */
import Redis, { Cluster } from 'ioredis';
import { TEST_PORTS } from './ports';
import { redisClusterUrl } from './redis-cluster';

export const testStack = {
  temporalAddress: process.env.KITE_TEST_TEMPORAL_ADDRESS ?? `127.0.0.1:${TEST_PORTS.temporal}`,
  /** The test server's Web UI (absent when a reused server was started without it). */
  webUiUrl: process.env.KITE_TEST_TEMPORAL_UI_URL ?? `http://127.0.0.1:${TEST_PORTS.temporalUi}`,
  redisUrl: process.env.KITE_TEST_REDIS_URL ?? `redis://127.0.0.1:${TEST_PORTS.redis}`,
  /** The test Redis Cluster's seed list, `redis-cluster://127.0.0.1:<port>,…` (a KITE_REDIS_URL). */
  redisClusterUrl: process.env.KITE_TEST_REDIS_CLUSTER_URL ?? redisClusterUrl(TEST_PORTS.redisCluster),
  mqttUrl: process.env.KITE_TEST_MQTT_URL ?? `mqtt://127.0.0.1:${TEST_PORTS.mqtt}`,
};

/** A Redis client on the shared test server. Tests keep apart by using their own group names. */
export function testRedis(): Redis {
  return new Redis(testStack.redisUrl, { lazyConnect: false, maxRetriesPerRequest: 3 });
}

/** A client on the shared test Redis Cluster. Tests keep apart by using their own key prefixes and group names. */
export function testRedisCluster(): Cluster {
  return new Cluster(
    TEST_PORTS.redisCluster.map((port) => ({ host: '127.0.0.1', port })),
    { redisOptions: { maxRetriesPerRequest: 3 } }
  );
}

/** A name unique to this test run, for groups, task queues and workflow ids. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}
