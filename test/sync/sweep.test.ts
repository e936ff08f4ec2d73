/**
 * One inventory sweep per Kite account: three groups of one account, run by two real worker processes on one task
 * queue, list the inventory once per round of cycles, counted at the simulator; a worker SIGKILLed in the middle of
 * a sweep loses nothing (another fetch takes the sweep over at its cursor once the lock expired). Real Temporal
 * server, Redis, simulator, webhook receiver.
 */
import { Client, Connection } from '@temporalio/client';
import { startKiteSimulator, type KiteSimulator } from '../../simulator';
import { statusQuery, syncNowSignal, type GroupConfig } from '../../workflows/definitions';
import { tempDir } from '../setup/processes';
import { uniqueName } from '../setup/stack';
import { startGroupWorkflows } from '../support/group-workflows';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';
import { simulatorWorkerEnv, startWorkerProcess, type WorkerProcess } from '../support/worker-process';
import { waitUntil } from '../support/wait-until';
import { testStack } from '../setup/stack';

const GROUPS = ['sweep-a', 'sweep-b', 'sweep-c'];
const PER_GROUP = 200;
const UNGROUPED = 100;
const PAGE = 50;
const TOTAL = GROUPS.length * PER_GROUP + UNGROUPED;
/** A listing ends with a short page: one more request when the inventory fills its last page. */
const PAGES_PER_SWEEP = Math.floor(TOTAL / PAGE) + 1;

let sim: KiteSimulator;
let receiver: WebhookReceiver;
let connection: Connection;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  sim = await startKiteSimulator({
    groups: GROUPS,
    simsPerGroup: PER_GROUP,
    ungroupedSims: UNGROUPED,
    seed: 15,
    certDir: tempDir('certs'),
  });
  receiver = await startWebhookReceiver();
  connection = await Connection.connect({ address: testStack.temporalAddress });
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await connection?.close();
  await receiver?.close();
  await sim?.close();
});

const listRequests = () => sim.control.stats().requests.list;

test('three groups of one account: list requests per round = the pages of one sweep; a SIGKILL mid-sweep loses nothing', async () => {
  const taskQueue = uniqueName('sweep');
  const env = {
    ...simulatorWorkerEnv(sim, taskQueue),
    KITE_PAGE_SIZE: String(PAGE),
    KITE_TARGETS: JSON.stringify({
      hook: { type: 'webhook', url: receiver.url, secret: 'sweep-test-secret-0123456789', requestsPerSecond: 1000 },
    }),
  };
  workers.push(await startWorkerProcess(env), await startWorkerProcess(env));
  const client = new Client({ connection });
  const configs: GroupConfig[] = GROUPS.map((group) => ({
    group,
    enabled: true,
    intervalMs: 3_600_000,
    targets: ['hook'],
  }));
  const handles = await startGroupWorkflows(client, configs, taskQueue);
  const cyclesDone = async (n: number) => {
    const statuses = await Promise.all(handles.map((h) => h.query(statusQuery)));
    return statuses.every((s) => s.cyclesCompleted >= n && s.phase === 'idle');
  };
  const round = async (n: number) => {
    await Promise.all(handles.map((h) => h.signal(syncNowSignal)));
    await waitUntil(() => cyclesDone(n), `cycle ${n} of every group`, 180_000);
  };
  // Cycle 1 of each group: their first fetches (groups join the account's sweeps as they first ask).
  await waitUntil(() => cyclesDone(1), 'the first cycle of every group', 180_000);
  for (const group of GROUPS)
    for (const icc of sim.control.iccs(group)) expect(receiver.deliveries.get(icc)).toBeGreaterThanOrEqual(1);

  for (const n of [2, 3]) {
    const before = listRequests();
    await round(n);
    expect(listRequests() - before).toBe(PAGES_PER_SWEEP); // not pages × groups
    for (const h of handles)
      expect((await h.query(statusQuery)).lastCycle).toMatchObject({ outcome: 'completed', inGroup: PER_GROUP });
  }

  // A change per group, then a sweep slowed to about 400 ms a page, and its worker SIGKILLed in the middle.
  const changed = GROUPS.map((group) => sim.control.iccs(group)[7]);
  changed.forEach((icc, i) => sim.control.setSim(icc, { alias: `after-crash-${i}` }));
  sim.control.setFaults({ latencyMs: 400, only: 'list' });
  const before = listRequests();
  await Promise.all(handles.map((h) => h.signal(syncNowSignal)));
  await waitUntil(() => listRequests() - before >= 3, 'the sweep is under way', 60_000);
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  sim.control.clearFaults();
  const listedBeforeCrash = listRequests() - before;
  expect(listedBeforeCrash).toBeLessThan(PAGES_PER_SWEEP);
  workers.push(await startWorkerProcess(env));
  await waitUntil(() => cyclesDone(4), 'cycle 4 of every group, after the crash', 180_000);
  for (const h of handles) {
    expect((await h.query(statusQuery)).lastCycle).toMatchObject({
      outcome: 'completed',
      seen: TOTAL,
      inGroup: PER_GROUP,
      invalid: 0,
    });
  }
  // The sweep was taken over at its cursor: at most the pages in flight at the kill were listed twice.
  expect(listRequests() - before).toBeLessThanOrEqual(PAGES_PER_SWEEP + 2);
  changed.forEach((icc, i) => expect(receiver.state.get(icc)).toMatchObject({ alias: `after-crash-${i}` }));
  expect(workers.at(-1)!.output()).toContain('fetch resumed after a failed attempt');
  await Promise.all(handles.map((h) => h.terminate()));
}, 600_000);
