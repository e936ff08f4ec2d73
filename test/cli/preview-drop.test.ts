/**
 * `kite-cc preview` and `kite-cc accept-drop` on the real stack: the worker process (worker/main.ts), the Kite
 * simulator over mTLS, the test Temporal server and Redis, a webhook receiver and the test Mosquitto as targets.
 */
import { Client, Connection } from '@temporalio/client';
import type Redis from 'ioredis';
import { runCli } from '../../cli/cli';
import { startKiteSimulator, type KiteSimulator } from '../../simulator';
import { StateStore } from '../../state/store';
import { statusQuery, workflowIdForGroup, type GroupStatus } from '../../workflows/definitions';
import { tempDir } from '../setup/processes';
import { testRedis, testStack, uniqueName } from '../setup/stack';
import { waitUntil } from '../support/wait-until';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';
import { simulatorWorkerEnv, startWorkerProcess, type WorkerProcess } from '../support/worker-process';

const SIMS = 20;
const PREVIEWED = 'preview-fleet';
const DROPPING = 'drop-fleet';
let sim: KiteSimulator;
let receiver: WebhookReceiver;
let worker: WorkerProcess;
let connection: Connection;
let client: Client;
let redis: Redis;
let store: StateStore;
const env: Record<string, string> = {};

beforeAll(async () => {
  sim = await startKiteSimulator({ groups: [PREVIEWED, DROPPING], simsPerGroup: SIMS, certDir: tempDir('certs') });
  receiver = await startWebhookReceiver();
  const workerEnv: Record<string, string> = {
    ...simulatorWorkerEnv(sim, uniqueName('preview-drop')),
    KITE_TARGETS: JSON.stringify({
      hook: { type: 'webhook', url: receiver.url, secret: 'preview-drop-test-secret-0123456789' },
      mqtt: { type: 'mqtt', url: testStack.mqttUrl },
    }),
  };
  worker = await startWorkerProcess(workerEnv);
  Object.assign(env, {
    KITE_TEMPORAL_ADDRESS: testStack.temporalAddress,
    KITE_TASK_QUEUE: workerEnv.KITE_TASK_QUEUE,
    KITE_WEB_UI_URL: 'http://ui.test:8233',
    KITE_REDIS_URL: testStack.redisUrl,
    KITE_REDIS_PREFIX: workerEnv.KITE_REDIS_PREFIX,
  });
  connection = await Connection.connect({ address: testStack.temporalAddress });
  client = new Client({ connection });
  redis = testRedis();
  store = new StateStore(redis, { prefix: workerEnv.KITE_REDIS_PREFIX });
}, 120_000);

afterAll(async () => {
  for (const group of [PREVIEWED, DROPPING]) {
    await client?.workflow
      .getHandle(workflowIdForGroup(group))
      .terminate('test cleanup')
      .catch(() => undefined);
    await store?.dropGroup(group);
  }
  await worker?.kill('SIGKILL');
  redis?.disconnect();
  await connection?.close();
  await receiver?.close();
  await sim?.close();
});

async function cli(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    env,
    stdout: { write: (t: string) => (stdout += t), isTTY: false },
    stderr: { write: (t: string) => (stderr += t) },
    workerTimeoutMs: 20_000,
    pollMs: 200,
  });
  return { code, stdout, stderr };
}

const status = (group: string): Promise<GroupStatus> =>
  client.workflow.getHandle(workflowIdForGroup(group)).query(statusQuery);

async function waitForCycles(group: string, n: number): Promise<GroupStatus> {
  let last: GroupStatus | undefined;
  await waitUntil(
    async () => {
      last = await status(group);
      return last.cyclesCompleted >= n && last.phase === 'idle';
    },
    `group ${group} completed ${n} cycles`,
    120_000
  );
  return last!;
}

test('preview: what a cycle would publish per target, with sample patches; nothing sent, written or recorded', async () => {
  const nobody = uniqueName('nobody');
  const missing = await cli('preview', nobody);
  expect(missing.code).toBe(3);
  expect(missing.stderr).toContain(`group ${nobody} has no running workflow: run \`kite-cc start ${nobody}\``);
  expect(missing.stderr).toContain(`start it OFF with \`kite-cc start ${nobody} --disabled\``);

  // A new group, OFF: the preview says what its first cycle would publish, and nothing is published.
  expect((await cli('start', PREVIEWED, '--target', 'hook,mqtt', '--interval', '1h', '--disabled')).code).toBe(0);
  const first = await cli('preview', PREVIEWED, '--sample', '2');
  expect(first).toMatchObject({ code: 0, stderr: '' });
  expect(first.stdout).toContain(`preview of group ${PREVIEWED}: nothing was sent, and nothing recorded as published`);
  expect(first.stdout).toContain(
    `Cloud Monitoring OFF: nothing is published until \`kite-cc enable ${PREVIEWED}\`; the first cycle then would do this`
  );
  expect(first.stdout).toContain(`in group, 0 invalid, 0 known SIMs missing`);
  expect(first.stdout).toMatch(
    /\nhook: 20 SIMs would be published \(20 in full, 0 changes\)\n {2}\d+ \(in full\): \{"iccid":/
  );
  expect(first.stdout).toContain('mqtt: 20 SIMs would be published (20 in full, 0 changes)');
  expect(first.stdout.match(/ \(in full\): \{/g)).toHaveLength(4);
  expect(first.stdout).toContain('  … and 18 more');
  expect(receiver.total()).toBe(0);
  const footprint = await store.groupFootprint(PREVIEWED);
  expect(footprint).toEqual({ snapshotCycles: [], targets: [] }); // no pending, pub, fail or sent key; no staging
  expect((await status(PREVIEWED)).cyclesCompleted).toBe(0);

  // The first cycle publishes exactly what the preview counted.
  expect((await cli('enable', PREVIEWED)).code).toBe(0);
  const one = await waitForCycles(PREVIEWED, 1);
  expect(one.lastCycle?.targets).toMatchObject({ hook: { published: 20 }, mqtt: { published: 20 } });
  expect(receiver.deliveries.size).toBe(20);

  // One change in Kite: the preview shows its patch, and the cycle that follows sends that very patch.
  const [changed] = sim.control.iccs(PREVIEWED);
  sim.control.setSim(changed, { alias: 'previewed-alias' });
  const trail = await store.auditTrail(PREVIEWED, changed);
  const json = await cli('preview', PREVIEWED, '--json');
  expect(json.code).toBe(0);
  const preview = JSON.parse(json.stdout);
  const onlyAlias = { publish: 1, full: 0, held: 0, stillFailing: 0 };
  expect(preview).toMatchObject({ group: PREVIEWED, enabled: true, inGroup: SIMS, left: 0 });
  expect(preview.targets.hook).toEqual({
    ...onlyAlias,
    sample: [{ iccid: changed, full: false, patch: { alias: 'previewed-alias' } }],
  });
  expect(preview.targets.mqtt).toMatchObject(onlyAlias);
  expect(await store.auditTrail(PREVIEWED, changed)).toEqual(trail); // no audit entry
  expect(await store.hasPending(PREVIEWED, 'hook')).toBe(false);
  expect(receiver.deliveries.get(changed)).toBe(1);

  // A preview beside a running cycle (Kite slowed down) leaves the cycle's staging alone.
  sim.control.setFaults({ latencyMs: 1_500, only: 'list' });
  expect((await cli('sync', PREVIEWED)).code).toBe(0);
  await waitUntil(async () => (await status(PREVIEWED)).phase === 'fetch', 'the cycle fetches', 30_000);
  const beside = await cli('preview', PREVIEWED, '--json');
  expect(beside.code).toBe(0);
  expect(JSON.parse(beside.stdout)).toMatchObject({ inGroup: SIMS, left: 0 });
  const two = await waitForCycles(PREVIEWED, 2);
  sim.control.clearFaults();
  expect(two.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS, left: 0 });
  expect(two.lastCycle?.targets.hook).toMatchObject({ changed: 1, published: 1 });
  expect(receiver.deliveries.get(changed)).toBe(2);
  expect(receiver.state.get(changed)?.alias).toBe('previewed-alias');
}, 300_000);

test('accept-drop: a drop holds the group visibly until approved by its count; the limit is per group', async () => {
  const nobody = uniqueName('nobody');
  const missing = await cli('accept-drop', nobody);
  expect(missing.code).toBe(3);
  expect(missing.stderr).toContain(`group ${nobody} has no running workflow: run \`kite-cc start ${nobody}\``);

  expect((await cli('start', DROPPING, '--target', 'hook', '--interval', '1h')).code).toBe(0);
  await waitForCycles(DROPPING, 1);
  const nothing = await cli('accept-drop', DROPPING);
  expect(nothing.code).toBe(1);
  expect(nothing.stderr).toContain(`group ${DROPPING} holds no inventory drop: there is nothing to approve`);

  // 12 of 20 SIMs vanish: the cycle holds, publishing nothing and forgetting nothing.
  const iccs = sim.control.iccs(DROPPING);
  sim.control.moveToGroup(iccs.slice(0, 12), null);
  sim.control.setSim(iccs[19], { alias: 'changed-during-hold' });
  const held = await cli('sync', DROPPING, '--wait', '--timeout', '2m');
  expect(held.code).toBe(1);
  expect(held.stdout).toMatch(/cycle #2 held/);
  const hint = `approve with \`kite-cc accept-drop ${DROPPING}\``;
  expect(held.stderr).toContain(`12 of 20 SIMs missing from Kite's inventory (it listed 8 of the group; limit 50%)`);
  expect(await store.knownCount(DROPPING)).toBe(20);
  expect(receiver.state.get(iccs[19])?.alias).not.toBe('changed-during-hold');

  const shown = await cli('status', DROPPING);
  expect(shown.stdout).toMatch(new RegExp(`\\nheld +since .*: 12 of 20 SIMs missing from Kite's inventory .*`));
  expect(shown.stdout).toContain(hint);
  expect((await cli('list')).stdout).toMatch(
    new RegExp(`${DROPPING} .* HELD: 12 of 20 SIMs missing \\(kite-cc accept-drop ${DROPPING}\\)`)
  );
  const ui = await client.workflow
    .getHandle(workflowIdForGroup(DROPPING))
    .query<{ currentDetails: string }>('__temporal_workflow_metadata');
  expect(ui.currentDetails).toMatch(/\*\*Held since .*:\*\* 12 of 20 SIMs missing/);
  const preview = await cli('preview', DROPPING);
  expect(preview.stdout).toContain('HELD: the cycle would publish nothing: 12 of 20 SIMs missing');

  // One comes back: the next cycle re-checks Kite and holds on 11; approving the old count is refused.
  sim.control.moveToGroup(iccs.slice(0, 1), DROPPING);
  expect((await cli('sync', DROPPING, '--wait', '--timeout', '2m')).code).toBe(1);
  expect((await status(DROPPING)).dropHold).toMatchObject({ missing: 11, known: 20, listed: 9 });
  const stale = await cli('accept-drop', DROPPING, '--missing', '12');
  expect(stale.code).toBe(1);
  expect(stale.stderr).toContain(
    `the workflow refused the approval: group ${DROPPING} holds a drop of 11 of 20 SIMs missing, not 12`
  );

  const approved = await cli('accept-drop', DROPPING);
  expect(approved).toMatchObject({ code: 0, stderr: '' });
  expect(approved.stdout).toContain(
    `approved the drop of group ${DROPPING}: 11 of 20 SIMs missing from Kite's inventory; the next cycle forgets ` +
      'them (up to 11) unless more are missing by then, and it runs now'
  );
  const after = await waitForCycles(DROPPING, 4);
  expect(after.dropHold).toBeUndefined();
  expect(after.lastCycle).toMatchObject({ outcome: 'completed', left: 11, targets: { hook: { published: 1 } } });
  expect(await store.knownCount(DROPPING)).toBe(9);
  expect(receiver.state.get(iccs[19])?.alias).toBe('changed-during-hold');

  // The group's own limit: with 80 %, 5 of its 9 SIMs leaving is no drop to approve.
  const limit = await cli('start', DROPPING, '--max-leave-fraction', '80%');
  expect(limit.code).toBe(0);
  expect((await status(DROPPING)).config.maxLeaveFraction).toBe(0.8);
  sim.control.moveToGroup(iccs.slice(12, 17), null);
  expect((await cli('sync', DROPPING, '--wait', '--timeout', '2m')).code).toBe(0);
  expect((await status(DROPPING)).lastCycle).toMatchObject({ outcome: 'completed', left: 5 });
  const bad = await cli('start', DROPPING, '--max-leave-fraction', '1.5');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('--max-leave-fraction "1.5": use a fraction from 0 to 1 or a percentage');
}, 300_000);
