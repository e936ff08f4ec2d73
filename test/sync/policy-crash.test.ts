/**
 * The counter hold across a worker SIGKILL and continue-as-new: a held change is neither released early (the
 * time of each SIM's last release is in Redis, not in a worker or the workflow) nor lost (it goes out later, with
 * its latest value). Real worker processes, Temporal server, Redis, the Kite simulator and a webhook receiver.
 */
import { Client, Connection } from '@temporalio/client';
import { startKiteSimulator, type KiteSimulator } from '../../simulator';
import { statusQuery, syncNowSignal, workflowIdForGroup, type GroupConfig } from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { groupVisibility } from '../../workflows/search-attributes';
import { StateStore } from '../../state/store';
import { tempDir } from '../setup/processes';
import { testRedis, testStack, uniqueName } from '../setup/stack';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';
import { simulatorWorkerEnv, startWorkerProcess, type WorkerProcess } from '../support/worker-process';
import { statusAfterKill } from '../support/query-after-kill';
import { waitUntil } from '../support/wait-until';

const GROUP = 'policy-crash';
const SIMS = 20;
/** Long enough for a cycle killed mid-fetch to resume and end within it on a loaded machine. */
const HOLD_MS = 90_000;

let sim: KiteSimulator;
let receiver: WebhookReceiver;
let connection: Connection;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  sim = await startKiteSimulator({ groups: [GROUP], simsPerGroup: SIMS, seed: 15, certDir: tempDir('certs') });
  receiver = await startWebhookReceiver();
  connection = await Connection.connect({ address: testStack.temporalAddress });
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await connection?.close();
  await receiver?.close();
  await sim?.close();
});

const usage = (sms: number) => ({ consumptionDaily: { sms: { value: sms }, data: { value: sms * 10_240 } } });

test('held counters survive a worker SIGKILL and continue-as-new, and go out later with their latest value', async () => {
  const c = sim.control;
  const iccs = c.iccs(GROUP);
  for (const icc of iccs) c.setSim(icc, usage(1));
  const taskQueue = uniqueName('policy-crash');
  const env: Record<string, string> = {
    ...simulatorWorkerEnv(sim, taskQueue),
    KITE_TARGETS: JSON.stringify({ hook: { type: 'webhook', url: receiver.url, secret: 'policy-crash-0123456789' } }),
  };
  workers.push(await startWorkerProcess(env));
  const config: GroupConfig = {
    group: GROUP,
    enabled: true,
    intervalMs: 3_600_000,
    targets: ['hook'],
    maxCyclesPerRun: 1, // every cycle ends its run: each later one runs after continue-as-new
    publishPolicy: { countersMinIntervalMs: HOLD_MS },
  };
  const handle = await new Client({ connection }).workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: workflowIdForGroup(`${GROUP}-${taskQueue}`),
    args: [{ config }],
    typedSearchAttributes: groupVisibility(config).searchAttributes,
  });
  const cycleDone = (n: number) =>
    waitUntil(
      async () => {
        const status = await statusAfterKill(handle);
        return status !== undefined && status.cyclesCompleted >= n && status.phase === 'idle';
      },
      `cycle ${n} completes`,
      180_000
    );
  await cycleDone(1);
  expect(receiver.log).toHaveLength(SIMS);
  const countersSent = () => receiver.log.slice(SIMS).filter((entry) => 'dailySMS' in entry.patch);

  // Cycle 2: every SIM's counters change; held.
  for (const icc of iccs) c.setSim(icc, usage(2));
  await handle.signal(syncNowSignal);
  await cycleDone(2);
  expect((await handle.query(statusQuery)).lastCycle?.targets.hook).toMatchObject({ held: SIMS, published: 0 });
  // When each SIM's counters last went out (cycle 1), as the store keeps it.
  const redis = testRedis();
  const store = new StateStore(redis, { prefix: env.KITE_REDIS_PREFIX });
  const releases = async () => (await store.lookups(GROUP, ['hook'], iccs))[0].countersSentAt;
  const released = await releases();
  expect(released.every((at) => typeof at === 'number')).toBe(true);
  const holdEnds = Math.max(...(released as number[])) + HOLD_MS;

  // Cycle 3: they change again, and the worker is killed while the cycle fetches (Kite answers slowly).
  for (const icc of iccs) c.setSim(icc, usage(3));
  c.setFaults({ latencyMs: 3_000 });
  await handle.signal(syncNowSignal);
  await waitUntil(async () => (await handle.query(statusQuery)).phase === 'fetch', 'cycle 3 fetches', 60_000);
  await workers[0].kill('SIGKILL');
  c.clearFaults();
  workers.push(await startWorkerProcess(env));
  await cycleDone(3);
  // Still within the interval: a hold forgotten by the crash would have let the counters out in cycle 3.
  expect(Date.now()).toBeLessThan(holdEnds);
  expect((await handle.query(statusQuery)).lastCycle?.targets.hook).toMatchObject({ held: SIMS, published: 0 });
  expect(countersSent()).toEqual([]);
  expect(await releases()).toEqual(released);

  // Once the interval is over, the next cycle (a new run) sends the latest value.
  for (const icc of iccs) c.setSim(icc, usage(4));
  await waitUntil(() => Date.now() >= holdEnds, 'the hold interval is over', HOLD_MS + 60_000);
  await handle.signal(syncNowSignal);
  await cycleDone(4);
  expect((await handle.query(statusQuery)).lastCycle?.targets.hook).toMatchObject({ held: 0, published: SIMS });
  const sent = countersSent();
  expect(sent.map((entry) => entry.iccid).sort()).toEqual([...iccs].sort());
  for (const entry of sent) expect(entry.patch).toEqual({ dailySMS: 4, dailyData: 40 });
  redis.disconnect();
  await handle.terminate();
}, 600_000);
