/**
 * Presence freshness on the real stack: worker processes, the Temporal server, Redis, the Kite simulator over mTLS
 * with Kite's own budget (4 requests/s per account, 429 beyond it) and the connector's default Kite budget.
 * Kite's presence moves on (a new cell, a new cause) while the four connectivity hints (gprsStatus, ipStatus, ip,
 * apn) stay as they were: the rolling refresh still brings every SIM's new presence to the target within the
 * group's presence max age, without 429s, and across a worker SIGKILL, since each SIM's read time is kept in Redis.
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
/** A cycle's diff and publish after the read, on a loaded machine. */
const PUBLISH_SLACK_MS = 30_000;

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
 * target until each SIM's new presence arrived. Returns when each did, ms after the change.
 */
async function presenceMovesOn(iccs: string[], during?: () => Promise<void>): Promise<number[]> {
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
  await during?.();
  await follow;
  for (const icc of iccs) expect(receiver.state.get(icc)).toMatchObject({ event: 'UPDATE_LOCATION' });
  return arrived;
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
  expect(Math.max(...arrived)).toBeLessThanOrEqual(MAX_AGE_MS + PUBLISH_SLACK_MS);

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

test('across a worker SIGKILL: the refresh goes on from the read times in Redis, within the max age', async () => {
  const taskQueue = uniqueName('fresh-kill');
  const env = workerEnv(taskQueue);
  workers.push(await startWorkerProcess(env, 180_000));
  const handle = await startGroup('fresh-b', taskQueue);
  const iccs = await firstSync('fresh-b', handle);
  const presenceReadsBefore = sim.control.stats().requests.presence;
  const started = Date.now();

  const arrived = await presenceMovesOn(iccs, async () => {
    // A second worker polls the queue, then the first dies mid-refresh: its activity resumes on the second after
    // the heartbeat timeout (10 s) and a retry (up to 5 s).
    const first = workers.at(-1)!;
    workers.push(await startWorkerProcess(env, 180_000));
    await first.kill('SIGKILL');
  });
  console.log(`presence refresh across SIGKILL: last SIM after ${Math.max(...arrived)} ms`);
  // The max age, plus a crashed activity's recovery (heartbeat timeout and retry), plus a cycle's diff and publish.
  expect(Math.max(...arrived)).toBeLessThanOrEqual(MAX_AGE_MS + 15_000 + PUBLISH_SLACK_MS);

  const status = await presenceStatus(handle);
  expect(status.lastCycle!.presence).toMatchObject({ members: SIMS, overdue: 0, unknownAge: 0 });
  // The new worker went on with the schedule in Redis rather than re-reading every SIM at once: about one read per
  // SIM per slot period (the max age less one interval) since the change; re-reading all would add a whole group.
  const slots = (Date.now() - started) / (MAX_AGE_MS - INTERVAL_MS);
  expect(sim.control.stats().requests.presence - presenceReadsBefore).toBeLessThanOrEqual(SIMS * (slots + 0.5));
  await handle.terminate();
}, 600_000);
