/**
 * Presence freshness on the real stack: worker processes, the Temporal server, Redis, the Kite simulator over mTLS
 * with Kite's own budget (4 requests/s per account, 429 beyond it) and the connector's default Kite budget.
 * Kite's presence moves on (a new cell, a new cause) while the four connectivity hints (gprsStatus, ipStatus, ip,
 * apn) stay as they were: the rolling refresh still brings every SIM's new presence to the target within the
 * group's presence max age, without 429s, and across a worker SIGKILL: each SIM's read time is kept in Redis, and a
 * SIM is due early enough that a cycle that crashes and is retried on another worker still delivers in time.
 */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { connectivityHints } from '../../kite';
import type { KiteSimulator } from '../../simulator';
import { statusQuery, workflowIdForGroup, type GroupConfig, type GroupStatus } from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { groupVisibility } from '../../workflows/search-attributes';
import { simulator } from '../kite/helpers';
import { testStack, uniqueName } from '../setup/stack';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';
import { simulatorWorkerEnv, startWorkerProcess, type WorkerProcess } from '../support/worker-process';
import { waitUntil } from '../support/wait-until';

const SIMS = 100; // per group: 100 SIMs refreshed every minute need about 1.7 of Kite's 4 requests/s
const MAX_AGE_MS = 60_000;
const INTERVAL_MS = 2_000;

let sim: KiteSimulator;
let receiver: WebhookReceiver;
let connection: Connection;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  sim = await simulator({ groups: ['fresh-a', 'fresh-b'], simsPerGroup: SIMS, rateLimit: { perSecond: 4 }, seed: 14 });
  receiver = await startWebhookReceiver();
  connection = await Connection.connect({ address: testStack.temporalAddress });
}, 120_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await connection?.close();
  await receiver?.close();
  await sim?.close();
});

function workerEnv(taskQueue: string): Record<string, string> {
  return {
    ...simulatorWorkerEnv(sim, taskQueue),
    KITE_REQUESTS_PER_SECOND: '4', // the default Kite budget, shared by the workers in Redis
    KITE_TARGETS: JSON.stringify({
      hook: { type: 'webhook', url: receiver.url, secret: 'presence-test-secret-0123456789', requestsPerSecond: 1000 },
    }),
  };
}

async function startGroup(group: string, taskQueue: string): Promise<WorkflowHandle> {
  const config: GroupConfig = {
    group,
    enabled: true,
    intervalMs: INTERVAL_MS,
    targets: ['hook'],
    presenceMaxAgeMs: MAX_AGE_MS,
  };
  return new Client({ connection }).workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: workflowIdForGroup(`${group}-${taskQueue}`),
    args: [{ config }],
    typedSearchAttributes: groupVisibility(config).searchAttributes,
  });
}

/** Waits until every SIM of the group reached the target (the first sync). */
async function firstSync(group: string, handle: WorkflowHandle): Promise<string[]> {
  const iccs = sim.control.iccs(group);
  await waitUntil(() => iccs.every((icc) => receiver.state.has(icc)), `the first sync of ${group}`, 240_000);
  await waitUntil(
    async () => (await handle.query(statusQuery)).cyclesCompleted >= 2,
    `a second cycle of ${group}`,
    120_000
  );
  return iccs;
}

/**
 * Moves every SIM's presence on in Kite without touching its list entry (the hints included), and follows the
 * target until each SIM's new presence arrived. Returns when each did, ms after the change; `during` runs meanwhile,
 * told when the change was made.
 */
async function presenceMovesOn(iccs: string[], during?: (changedAt: number) => Promise<void>): Promise<number[]> {
  const entries = iccs.map((icc) => JSON.stringify(sim.control.getSim(icc)));
  const published = iccs.map((icc) => receiver.state.get(icc)!.timestamp);
  const at = new Date(sim.control.now() + 90_000).toISOString();
  const changedAt = Date.now();
  for (const icc of iccs) sim.control.setSim(icc, { presence: { timeStamp: at, cause: 'UPDATE_LOCATION' } });
  // Kite's list entries are exactly as before: no connectivity hint moved.
  expect(iccs.map((icc) => JSON.stringify(sim.control.getSim(icc)))).toEqual(entries);
  expect(iccs.map((icc) => connectivityHints(sim.control.getSim(icc)))).toEqual(
    entries.map((json) => connectivityHints(JSON.parse(json)))
  );
  const arrived = iccs.map(() => -1);
  const follow = waitUntil(
    () => {
      iccs.forEach((icc, i) => {
        if (arrived[i] < 0 && receiver.state.get(icc)?.timestamp !== published[i]) arrived[i] = Date.now() - changedAt;
      });
      return arrived.every((ms) => ms >= 0);
    },
    "every SIM's new presence reaches the target",
    MAX_AGE_MS + 180_000
  );
  await during?.(changedAt);
  await follow;
  for (const icc of iccs) expect(receiver.state.get(icc)).toMatchObject({ event: 'UPDATE_LOCATION' });
  return arrived;
}

/** The SIMs whose presence Kite was asked for since `since` (epoch ms), by the simulator's request log. */
function presenceReadSince(since: number): Set<string> {
  const read = new Set<string>();
  for (const r of sim.control.requestLog())
    if (r.at >= since && r.status === 200) {
      const icc = /\/sim\/icc:([^/?]+)\/presence/.exec(r.path)?.[1];
      if (icc) read.add(icc);
    }
  return read;
}

/**
 * Waits for a cycle that refreshed presence, and returns the SIMs it read: right after it, they hold the freshest
 * presence of the group, so their next refresh is among the last a change made now waits for.
 */
async function justRefreshed(handle: WorkflowHandle, iccs: string[]): Promise<string[]> {
  for (;;) {
    const since = Date.now();
    const seen = (await handle.query(statusQuery)).cyclesCompleted;
    await waitUntil(async () => (await handle.query(statusQuery)).cyclesCompleted > seen, 'one more cycle', 60_000);
    const read = presenceReadSince(since);
    const refreshed = iccs.filter((icc) => read.has(icc));
    if (refreshed.length) return refreshed;
  }
}

/** The worker process running the group's fetch now (by the pid in its Temporal identity, `pid@host`). */
async function fetchingWorker(handle: WorkflowHandle): Promise<WorkerProcess> {
  const pending = (await handle.describe()).raw.pendingActivities ?? [];
  const fetch = pending.find((p) => p.activityType?.name === 'fetchSnapshot');
  const pid = Number(/^(\d+)@/.exec(fetch?.lastWorkerIdentity ?? '')?.[1]);
  const worker = workers.find((w) => w.child.pid === pid);
  if (!worker) throw new Error(`no worker of this test runs the fetch (pending: ${JSON.stringify(pending)})`);
  return worker;
}

async function presenceStatus(handle: WorkflowHandle): Promise<GroupStatus> {
  // The cycle after the last arrival has its figures: nothing past the max age, the budget keeping up.
  const seen = (await handle.query(statusQuery)).cyclesCompleted;
  await waitUntil(async () => (await handle.query(statusQuery)).cyclesCompleted > seen, 'one more cycle', 60_000);
  return handle.query(statusQuery);
}

test("a presence change that leaves the hints alone reaches the target within the max age, within Kite's budget", async () => {
  const taskQueue = uniqueName('fresh');
  workers.push(await startWorkerProcess(workerEnv(taskQueue), 180_000));
  const handle = await startGroup('fresh-a', taskQueue);
  const iccs = await firstSync('fresh-a', handle);
  const limitedBefore = sim.control.stats().rateLimit.limited;

  const arrived = await presenceMovesOn(iccs);
  console.log(`presence refresh: last SIM after ${Math.max(...arrived)} ms, first after ${Math.min(...arrived)} ms`);
  // The bound the issue states: the max age, the cycle's own diff and publish included.
  expect(Math.max(...arrived)).toBeLessThanOrEqual(MAX_AGE_MS);

  const status = await presenceStatus(handle);
  const presence = status.lastCycle!.presence!;
  expect(presence).toMatchObject({ maxAgeMs: MAX_AGE_MS, members: SIMS, overdue: 0, unknownAge: 0 });
  expect(presence.oldestAgeMs).toBeLessThanOrEqual(MAX_AGE_MS);
  expect(presence.budgetPerCycle).toBeGreaterThanOrEqual(presence.neededPerCycle);
  // Within Kite's budget: (near) no 429 while refreshing (a loaded machine may bunch a few requests).
  expect(sim.control.stats().rateLimit.limited - limitedBefore).toBeLessThanOrEqual(3);
  await handle.terminate();
  await workers.at(-1)!.kill('SIGKILL'); // its budget in Redis is its own: it must not compete with the next test's
}, 600_000);

test('across a worker SIGKILL in the refresh of the SIMs read just before a change, every SIM gets it within the max age', async () => {
  const taskQueue = uniqueName('fresh-kill');
  const env = workerEnv(taskQueue);
  workers.push(await startWorkerProcess(env, 180_000));
  const handle = await startGroup('fresh-b', taskQueue);
  const iccs = await firstSync('fresh-b', handle);
  // A second worker polls the queue before anything dies: the crash costs Temporal's recovery, not a start.
  workers.push(await startWorkerProcess(env, 180_000));
  const presenceReadsBefore = sim.control.stats().requests.presence;
  const started = Date.now();

  // The change comes right after a cycle refreshed some SIMs, which then wait longest for their next refresh; the
  // worker dies in the fetch that refreshes them again, as it reads the first: their new presence waits for the
  // refresh plus the crash's recovery.
  const latest = await justRefreshed(handle, iccs);
  let killedAt = 0;
  const arrived = await presenceMovesOn(iccs, async (changedAt) => {
    await waitUntil(
      () => latest.some((icc) => presenceReadSince(changedAt).has(icc)),
      'the refresh of the SIMs read last',
      MAX_AGE_MS + 60_000
    );
    const worker = await fetchingWorker(handle);
    killedAt = Date.now() - changedAt;
    await worker.kill('SIGKILL');
  });
  const last = Math.max(...latest.map((icc) => arrived[iccs.indexOf(icc)]));
  console.log(
    `presence refresh across SIGKILL: ${latest.length} SIMs read just before the change; killed after ${killedAt} ms; ` +
      `they arrived after ${last} ms, the last SIM after ${Math.max(...arrived)} ms`
  );
  // The bound the issue states, across the crash: the max age, the crashed cycle's recovery included.
  expect(Math.max(...arrived)).toBeLessThanOrEqual(MAX_AGE_MS);

  const status = await presenceStatus(handle);
  expect(status.lastCycle!.presence).toMatchObject({ members: SIMS, overdue: 0, unknownAge: 0 });
  // The surviving worker went on from the read times in Redis within 80% of Kite's budget (plus 20 s of it for the
  // cycles in flight at either end and the crashed attempt's reads done again), not re-reading every SIM at once.
  const seconds = (Date.now() - started) / 1000;
  expect(sim.control.stats().requests.presence - presenceReadsBefore).toBeLessThanOrEqual(0.8 * 4 * (seconds + 20));
  await handle.terminate();
}, 600_000);
