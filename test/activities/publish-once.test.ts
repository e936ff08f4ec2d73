/**
 * The retry bound of the README: one publish attempt hands each pending SIM to the target once, whatever the
 * target answers. SIMs it could not take stay pending, the attempt fails with TargetUnavailable (the peer's
 * Retry-After as the next retry delay), and the next attempt (Temporal's) sends only those; the counts of the
 * cycle add up over the attempts. Heartbeats carry the counts from one attempt to the next.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import type Redis from 'ioredis';
import { createActivities } from '../../activities';
import type { ConfiguredTarget } from '../../activities/publish';
import { batchSizeFor } from '../../activities/publish';
import { createLogger } from '../../shared/log';
import { StateStore } from '../../state/store';
import { testRedis, uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';

let redis: Redis;
let store: StateStore;
let prefix: string;

beforeAll(() => {
  redis = testRedis();
  prefix = uniqueName('once');
  store = new StateStore(redis, { prefix });
});

afterAll(async () => {
  for await (const keys of redis.scanStream({ match: `${prefix}:*` }) as AsyncIterable<string[]>)
    if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

test('an attempt sends each pending SIM once; the next attempt sends only what is left, and counts add up', async () => {
  const group = uniqueName('g');
  const kite = new MemoryKite(10);
  const cloud = new RecordingTarget('cloud');
  const acts = createActivities({
    store,
    kite,
    targets: new Map<string, ConfiguredTarget>([['cloud', { target: cloud }]]),
    logger: createLogger({}, { level: 'error' }),
    batchSize: 4,
  });
  const iccs = kite.addSims(group, 20);
  const throttled = iccs.slice(0, 5);
  throttled.forEach((icc) => cloud.throttled.add(icc));

  const env = new MockActivityEnvironment();
  let details: unknown;
  env.on('heartbeat', (d: unknown) => (details = d));
  await env.run(acts.fetchSnapshot, { group, cycle: 1 });
  await env.run(acts.diffSnapshot, { group, cycle: 1, targets: ['cloud'] });

  const first = new MockActivityEnvironment();
  first.on('heartbeat', (d: unknown) => (details = d));
  const failure = await first.run(acts.publishChanges, { group, cycle: 1, target: 'cloud' }).catch((e: unknown) => e);
  expect(failure).toMatchObject({ type: 'TargetUnavailable', nextRetryDelay: 100 });
  expect(cloud.calls).toBeGreaterThanOrEqual(5); // 20 SIMs in batches of 4
  expect(cloud.received.size).toBe(15); // each accepted SIM exactly once, nothing sent twice
  expect([...cloud.received.values()].every((list) => list.length === 1)).toBe(true);
  expect(details).toMatchObject({ phase: 'publish', done: 15, inFlight: 0 });

  // Temporal's next attempt carries the last heartbeat's details.
  cloud.throttled.clear();
  const second = new MockActivityEnvironment({ heartbeatDetails: details });
  const result = await second.run(acts.publishChanges, { group, cycle: 1, target: 'cloud' });
  expect(result).toMatchObject({ published: 20, failed: 0, pending: 0 });
  expect([...cloud.received.values()].every((list) => list.length === 1)).toBe(true);
  expect(cloud.received.size).toBe(20);
});

test('batches last about five seconds of the target’s rate, shared by the batches in flight', () => {
  const options = { batchSize: 500, inFlightBatches: 4, batchMs: 5_000 };
  expect(batchSizeFor({ itemsPerSecond: 10 }, options)).toBe(12); // AWS CreateThing at 10/s
  expect(batchSizeFor({ itemsPerSecond: 500 }, options)).toBe(500); // MQTT: capped by batchSize
  expect(batchSizeFor({ itemsPerSecond: 0.1 }, options)).toBe(1);
  expect(batchSizeFor({}, options)).toBe(500);
});
