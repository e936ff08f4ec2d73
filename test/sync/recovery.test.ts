/**
 * Bounded recovery: a publish whose worker process is SIGKILLed again and again resumes on a new worker within
 * about 20 s of each kill, the 8th included (Temporal's default backoff would add up to a minute per crash), and
 * the cycle then completes with every SIM delivered. Real worker processes, Temporal server, Redis, simulator.
 */
import { Client, Connection } from '@temporalio/client';
import { startKiteSimulator, type KiteSimulator } from '../../simulator';
import { statusQuery, workflowIdForGroup } from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { KITE_GROUP } from '../../workflows/search-attributes';
import { tempDir } from '../setup/processes';
import { testStack, uniqueName } from '../setup/stack';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';
import { simulatorWorkerEnv, startWorkerProcess, type WorkerProcess } from '../support/worker-process';
import { statusAfterKill } from '../support/query-after-kill';
import { waitUntil } from '../support/wait-until';

const SIMS = 3_000;
const KILLS = 8;
const RESUMED = 'publish resumed after a failed attempt';

let sim: KiteSimulator;
let receiver: WebhookReceiver;
let connection: Connection;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  sim = await startKiteSimulator({ groups: ['recovery-fleet'], simsPerGroup: SIMS, certDir: tempDir('certs') });
  receiver = await startWebhookReceiver(2_000); // about 5 SIMs/s: the publish outlasts eight kills
  connection = await Connection.connect({ address: testStack.temporalAddress });
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await connection?.close();
  await receiver?.close();
  await sim?.close();
});

test(`a publish SIGKILLed ${KILLS} times in a row resumes within 20 s of the last kill, and completes`, async () => {
  const taskQueue = uniqueName('recovery');
  const group = 'recovery-fleet';
  const env = {
    ...simulatorWorkerEnv(sim, taskQueue),
    KITE_PUBLISH_BATCH_SIZE: '10',
    KITE_PUBLISH_IN_FLIGHT: '1',
    KITE_TARGETS: JSON.stringify({
      hook: { type: 'webhook', url: receiver.url, secret: 'recovery-test-secret-0123456789', batchSize: 10 },
    }),
  };
  workers.push(await startWorkerProcess(env));
  const handle = await new Client({ connection }).workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: workflowIdForGroup(`${group}-${taskQueue}`),
    args: [{ config: { group, enabled: true, intervalMs: 3_600_000, targets: ['hook'] } }],
    typedSearchAttributes: [{ key: KITE_GROUP, value: group }],
  });
  await waitUntil(() => receiver.total() >= 50, 'the publish is under way', 120_000);

  // Each round: a standby worker is already polling when the one running the publish is killed, so the time to
  // resume is Temporal's (heartbeat timeout + retry backoff), not a worker's start-up.
  const recoveries: number[] = [];
  for (let kill = 1; kill <= KILLS; kill++) {
    const victim = workers[workers.length - 1];
    const standby = await startWorkerProcess(env);
    workers.push(standby);
    await victim.kill('SIGKILL');
    const killedAt = Date.now();
    await waitUntil(() => standby.output().includes(RESUMED), `the publish resumes after kill ${kill}`, 120_000);
    recoveries.push(Date.now() - killedAt);
    const delivered = receiver.total();
    await waitUntil(() => receiver.total() >= delivered + 20, `deliveries flow after kill ${kill}`, 60_000);
  }
  console.log(`recovery after each of ${KILLS} kills (ms): ${recoveries.join(', ')}`);
  receiver.delayMs = 0; // the rest of the publish at full speed
  expect(recoveries[KILLS - 1]).toBeLessThanOrEqual(20_000);
  expect(workers[workers.length - 1].output()).toMatch(/"activity":"publishChanges".*"group":"recovery-fleet"/);

  await waitUntil(async () => ((await statusAfterKill(handle))?.cyclesCompleted ?? 0) >= 1, 'the cycle ends', 300_000);
  expect((await handle.query(statusQuery)).lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS });
  expect(sim.control.iccs(group).filter((icc) => !receiver.deliveries.has(icc))).toEqual([]);
  await handle.terminate();
}, 600_000);
