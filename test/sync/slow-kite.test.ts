/**
 * A Kite slower per request than the activities' heartbeat timeout (10 s) still syncs, in several pages: the
 * fetch keeps heartbeating while a request is in flight. Real workflow, Temporal server, Redis, client, simulator.
 */
import { kiteSourceFromClients } from '../../activities/kite-source';
import type { KiteSimulator } from '../../simulator';
import { clientOf, simulator } from '../kite/helpers';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

/**
 * Longer than the heartbeat timeout of the workflow's activity options (10 s; it was 15 s), shorter than the Kite
 * client's request timeout (30 s).
 */
const PAGE_LATENCY_MS = 20_000;

let sim: KiteSimulator;
let harness: SyncHarness;
const cloud = new RecordingTarget('cloud');

beforeAll(async () => {
  sim = await simulator({ groups: ['slow-fleet'], simsPerGroup: 10 });
  const kite = kiteSourceFromClients(() => clientOf(sim, { pageSize: 5, timeoutMs: 30_000 }));
  harness = await startSyncHarness({ kite, targets: [cloud] });
});
afterAll(async () => {
  await harness?.close();
  await sim?.close();
});

test('inventory pages slower than the heartbeat timeout sync in one attempt', async () => {
  sim.control.setFaults({ latencyMs: PAGE_LATENCY_MS, only: 'list' });
  const handle = await harness.start('slow-fleet');
  const status = await harness.waitForCycles(handle, 1, 150_000);
  expect(status.lastCycle).toMatchObject({ outcome: 'completed', inGroup: 10 });
  expect(sim.control.stats().requests.list).toBe(3); // two full pages and the empty one that ends the list
  expect(cloud.drain().size).toBe(10);
  const { events } = await handle.fetchHistory();
  const attempts = (events ?? []).flatMap((e) => e.activityTaskStartedEventAttributes?.attempt ?? []);
  expect(Math.max(...attempts)).toBe(1); // no heartbeat timeout, no retry
  await handle.terminate();
}, 180_000);
