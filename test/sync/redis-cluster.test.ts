/**
 * The connector on a real 3-master Redis Cluster: a worker process given `KITE_REDIS_URL=redis-cluster://…` syncs
 * two groups whose keys sit on different Cluster nodes, end to end (fetch → diff → publish to a webhook), then only
 * what changed. What the webhook holds equals what the store says each SIM's target holds.
 */
import { Client, Connection } from '@temporalio/client';
import type { Cluster } from 'ioredis';
import { startKiteSimulator, type KiteSimulator } from '../../simulator';
import { scanKeys } from '../../state/redis';
import { StateStore } from '../../state/store';
import { statusQuery, syncNowSignal, type GroupConfig } from '../../workflows/definitions';
import { tempDir } from '../setup/processes';
import { testRedisCluster, testStack, uniqueName } from '../setup/stack';
import { startGroupWorkflows, waitForGroupCycles } from '../support/group-workflows';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';
import { simulatorWorkerEnv, startWorkerProcess, type WorkerProcess } from '../support/worker-process';
import { waitUntil } from '../support/wait-until';

const SIMS = 150;

let cluster: Cluster;
let sim: KiteSimulator;
let receiver: WebhookReceiver;
let connection: Connection;
let worker: WorkerProcess | undefined;
let groups: string[];

/** The Cluster node (`host:port`) serving the hash slot of `key`. */
async function nodeOf(key: string): Promise<string> {
  const slot = Number(await cluster.cluster('KEYSLOT', key));
  const [master] = cluster.slots[slot];
  return master;
}

beforeAll(async () => {
  cluster = testRedisCluster();
  await waitUntil(() => cluster.status === 'ready', 'the Cluster client is ready', 30_000);
  // Two groups whose hash tags land on different masters: the connector must use the Cluster, not one node.
  const base = uniqueName('cl');
  const candidates = Array.from({ length: 20 }, (_, i) => `${base}-${i}`);
  const nodes = await Promise.all(candidates.map((g) => nodeOf(`{${g}}`)));
  const second = nodes.findIndex((n) => n !== nodes[0]);
  groups = [candidates[0], candidates[second]];
  sim = await startKiteSimulator({ groups, simsPerGroup: SIMS, certDir: tempDir('certs') });
  receiver = await startWebhookReceiver();
  connection = await Connection.connect({ address: testStack.temporalAddress });
}, 120_000);

afterAll(async () => {
  await worker?.kill('SIGKILL');
  await connection?.close();
  await receiver?.close();
  await sim?.close();
  cluster?.disconnect();
});

test('a worker on a Redis Cluster publishes every SIM of two groups once, then only what changed', async () => {
  const taskQueue = uniqueName('cluster');
  const prefix = uniqueName('cc');
  worker = await startWorkerProcess({
    ...simulatorWorkerEnv(sim, taskQueue),
    KITE_REDIS_URL: testStack.redisClusterUrl,
    KITE_REDIS_PREFIX: prefix,
    KITE_TARGETS: JSON.stringify({
      hook: { type: 'webhook', url: receiver.url, secret: 'cluster-test-secret-0123456789', batchSize: 25 },
    }),
  });
  const client = new Client({ connection });
  const configs: GroupConfig[] = groups.map((group) => ({
    group,
    enabled: true,
    intervalMs: 3_600_000,
    targets: ['hook'],
    publishPolicy: { countersMinIntervalMs: 0, locationMinDistanceM: 0 },
  }));
  const handles = await startGroupWorkflows(client, configs, taskQueue);
  const cyclesDone = (n: number) => waitForGroupCycles(handles, n);

  await cyclesDone(1);
  for (const handle of handles) {
    expect((await handle.query(statusQuery)).lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS });
  }
  const all = groups.flatMap((g) => sim.control.iccs(g));
  expect(all.filter((icc) => receiver.deliveries.get(icc) !== 1)).toEqual([]);

  // Each group's keys sit in its own slot, on the node the hash tag chose: two different masters.
  const keyNodes = await Promise.all(
    groups.map(async (group) => {
      const keys: string[] = [];
      for await (const batch of scanKeys(cluster, `${prefix}:{${group}}:*`)) keys.push(...batch);
      expect(keys).toContain(`${prefix}:{${group}}:pub:hook`);
      return new Set(await Promise.all(keys.map(nodeOf)));
    })
  );
  expect(keyNodes.map((n) => n.size)).toEqual([1, 1]);
  expect([...keyNodes[0]][0]).not.toBe([...keyNodes[1]][0]);

  // Changes in Kite: only the changed SIMs go out again, with the new values.
  const changed = groups.flatMap((g) => sim.control.iccs(g).slice(0, 10));
  changed.forEach((icc, i) => sim.control.setSim(icc, { alias: `cluster-${i}` }));
  await Promise.all(handles.map((h) => h.signal(syncNowSignal)));
  await cyclesDone(2);
  expect(changed.filter((icc) => receiver.deliveries.get(icc) !== 2)).toEqual([]);
  expect(all.filter((icc) => !changed.includes(icc) && receiver.deliveries.get(icc) !== 1)).toEqual([]);
  changed.forEach((icc, i) => expect(receiver.state.get(icc)?.alias).toBe(`cluster-${i}`));

  // What the webhook holds is what the store on the Cluster says it holds.
  for (const group of groups) {
    const store = new StateStore(cluster, { prefix });
    const iccs = sim.control.iccs(group);
    expect(iccs).toHaveLength(SIMS);
    const published = await store.publishedRecords(group, 'hook', iccs);
    iccs.forEach((icc, i) => expect(receiver.state.get(icc)).toEqual(JSON.parse(published[i]!)));
    expect(await store.pendingCount(group, 'hook')).toBe(0);
  }
  await Promise.all(handles.map((h) => h.terminate()));
}, 400_000);
