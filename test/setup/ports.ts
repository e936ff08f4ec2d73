/**
 * Ports of the shared test stack, apart from the demo stack's defaults so that `npm test` and `npm start`
 * can run side by side. Override with the variables named here.
 */
const redisPort = Number(process.env.KITE_TEST_REDIS_PORT ?? 16379);
const clusterBase = Number(process.env.KITE_TEST_REDIS_CLUSTER_PORT ?? redisPort + 10_000);

export const TEST_PORTS = {
  temporal: Number(process.env.KITE_TEST_TEMPORAL_PORT ?? 17233),
  /** The Web UI of the test Temporal server (the browser test drives it). */
  temporalUi: Number(process.env.KITE_TEST_TEMPORAL_UI_PORT ?? 18233),
  redis: redisPort,
  /** The test Redis Cluster's three masters (their cluster buses listen 10000 above each). */
  redisCluster: [clusterBase, clusterBase + 1, clusterBase + 2],
  mqtt: Number(process.env.KITE_TEST_MQTT_PORT ?? 11883),
};

export const ROOT = `${__dirname}/../..`;
export const TEMPORAL_BIN = process.env.KITE_TEMPORAL_BIN ?? `${ROOT}/.cache/bin/temporal`;
/** Temporal's time-skipping test server, which scripts/setup.sh --test-peers fetches (test/workflows/ uses it). */
export const TEST_SERVER_BIN =
  process.env.KITE_TEMPORAL_TEST_SERVER_BIN ?? `${ROOT}/.cache/temporal-test-server/temporal-test-server`;
