/** Addresses of the shared test stack that test/setup/global-setup.ts started or reused. */
import Redis from 'ioredis';
import { TEST_PORTS } from './ports';

export const testStack = {
  temporalAddress: process.env.KITE_TEST_TEMPORAL_ADDRESS ?? `127.0.0.1:${TEST_PORTS.temporal}`,
  /** The test server's Web UI (absent when a reused server was started without it). */
  webUiUrl: process.env.KITE_TEST_TEMPORAL_UI_URL ?? `http://127.0.0.1:${TEST_PORTS.temporalUi}`,
  redisUrl: process.env.KITE_TEST_REDIS_URL ?? `redis://127.0.0.1:${TEST_PORTS.redis}`,
  mqttUrl: process.env.KITE_TEST_MQTT_URL ?? `mqtt://127.0.0.1:${TEST_PORTS.mqtt}`,
};

/** A Redis client on the shared test server. Tests keep apart by using their own group names. */
export function testRedis(): Redis {
  return new Redis(testStack.redisUrl, { lazyConnect: false, maxRetriesPerRequest: 3 });
}

/** A name unique to this test run, for groups, task queues and workflow ids. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}
