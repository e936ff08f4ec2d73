/**
 * `kite-cc sim` and `kite-cc failures` in-process against the shared test stack: a worker runs the real workflow
 * and activities (worker-setup.ts), and the CLI reads the same Redis state the worker wrote.
 */
import { testStack, uniqueName } from '../setup/stack';
import { runCli, type CliRuntime } from '../../cli/cli';
import { workflowIdForGroup, statusQuery } from '../../workflows/definitions';
import { waitUntil } from '../support/wait-until';
import { startTestWorker, type TestWorker } from './worker-setup';

let worker: TestWorker;
const env: Record<string, string> = {
  KITE_TEMPORAL_ADDRESS: testStack.temporalAddress,
  KITE_WEB_UI_URL: 'http://ui.test:8233',
  KITE_REDIS_URL: testStack.redisUrl,
};
const groups: string[] = [];

beforeAll(async () => {
  worker = await startTestWorker();
  env.KITE_TASK_QUEUE = worker.taskQueue;
  env.KITE_REDIS_PREFIX = worker.harness.prefix;
});

afterAll(async () => {
  const { client } = worker.harness;
  await Promise.allSettled(groups.map((g) => client.workflow.getHandle(workflowIdForGroup(g)).terminate('cleanup')));
  await worker?.stop();
});

async function cli(argv: string[], runtime: CliRuntime = {}) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    env: { ...env, ...runtime.env },
    stdout: { write: (t: string) => (stdout += t), isTTY: false },
    stderr: { write: (t: string) => (stderr += t) },
    workerTimeoutMs: 10_000,
  });
  return { code, stdout, stderr };
}

/** Starts a group on mqtt and webhook and waits until its workflow has completed `cycles` cycles. */
async function startGroup(group: string) {
  groups.push(group);
  expect((await cli(['start', group, '--target', 'mqtt,webhook', '--interval', '1h'])).code).toBe(0);
}

async function cycles(group: string, n: number) {
  const handle = worker.harness.client.workflow.getHandle(workflowIdForGroup(group));
  await waitUntil(
    async () => {
      const status = await handle.query(statusQuery);
      return status.cyclesCompleted >= n && status.phase === 'idle';
    },
    `group ${group} completed ${n} cycles`,
    60_000
  );
}

test('sim shows the record, what each target holds, pending and failing, and the audit trail', async () => {
  const group = uniqueName('sim');
  const [ok, refused] = worker.kite.addSims(group, 2, 700);
  worker.mqtt.rejected.add(refused);
  await startGroup(group);
  await cycles(group, 1);

  const run = await cli(['sim', group, ok]);
  expect(run).toMatchObject({ code: 0, stderr: '' });
  expect(run.stdout).toContain(`SIM ${ok} in group ${group}`);
  // The cycle's snapshot is dropped once diffed: the record is what the targets hold.
  expect(run.stdout).toContain('record: as its targets hold it, below');
  expect(run.stdout).toMatch(/target mqtt:\n {2}holds: \{"iccid":/);
  expect(run.stdout).toContain('  pending: none');
  expect(run.stdout).toContain('  failing: no');
  expect(run.stdout).toMatch(/last acknowledged publish: \d{4}-\d\d-\d\dT/);
  expect(run.stdout).toMatch(/audit trail \(newest first\):\n(.*\n)*.*(mqtt|webhook) {2}published in full/);

  const json = JSON.parse((await cli(['sim', group, refused, '--json'])).stdout);
  expect(json).toMatchObject({
    group,
    iccid: refused,
    targets: {
      mqtt: { published: null, pending: null, failure: { reason: 'rejected by test', at: expect.any(Number) } },
      webhook: { published: expect.stringContaining(refused), pending: null },
    },
  });
  expect(json.audit.map((e: { target: string; failed?: string }) => [e.target, e.failed ?? 'ok']).sort()).toEqual([
    ['mqtt', 'rejected by test'],
    ['webhook', 'ok'],
  ]);
  expect(json.lastPublishedAt.mqtt).toBeUndefined();
  expect(json.lastPublishedAt.webhook).toEqual(expect.any(Number));
  const text = (await cli(['sim', group, refused])).stdout;
  expect(text).toMatch(/target mqtt:\n {2}holds: nothing \(never acknowledged\)/);
  expect(text).toMatch(/failing: since \S+: rejected by test/);
  expect(text).toMatch(/mqtt {2}FAILED: rejected by test/);
});

test('failures groups the failing SIMs by target and reason, with counts', async () => {
  const group = uniqueName('failures');
  const iccs = worker.kite.addSims(group, 5, 800);
  for (const icc of iccs.slice(0, 3)) worker.mqtt.rejected.add(icc);
  await startGroup(group);
  await cycles(group, 1);

  const run = await cli(['failures', group]);
  expect(run).toMatchObject({ code: 0, stderr: '' });
  expect(run.stdout).toContain(`3 failing SIMs in group ${group}, by reason:`);
  expect(run.stdout).toMatch(
    /TARGET\s+SIMS\s+SINCE\s+REASON\s+FOR EXAMPLE\nmqtt\s+3\s+\S+\s+rejected by test\s+\d+,\d+,\d+/
  );
  const json = JSON.parse((await cli(['failures', group, '--json'])).stdout);
  expect(json).toEqual([
    { target: 'mqtt', reason: 'rejected by test', count: 3, since: expect.any(Number), sample: expect.any(Array) },
  ]);
  expect(json[0].sample.sort()).toEqual(iccs.slice(0, 3).sort());
  expect((await cli(['failures', group, '--target', 'webhook'])).stdout).toContain(
    `no failing SIMs in group ${group} at webhook`
  );
  const unknownTarget = await cli(['failures', group, '--target', 'azure']);
  expect(unknownTarget.code).toBe(3);
  expect(unknownTarget.stderr).toContain(`group ${group} has no target azure (its targets: mqtt, webhook)`);
});

test('sim and failures on a group or SIM that does not exist exit with 3 and say so', async () => {
  const nobody = uniqueName('nobody');
  for (const argv of [
    ['sim', nobody, '8934071100000000001'],
    ['failures', nobody],
  ]) {
    const run = await cli(argv);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain(`group ${nobody} is unknown: it has no workflow and no state in Redis`);
  }
  const group = uniqueName('nosim');
  worker.kite.addSims(group, 1, 900);
  await startGroup(group);
  await cycles(group, 1);
  const missing = await cli(['sim', group, '8934071199999999999']);
  expect(missing.code).toBe(3);
  expect(missing.stderr).toContain(`SIM 8934071199999999999 is not in group ${group}`);
  const bad = await cli(['sim', group, 'not-an-iccid']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('ICCID "not-an-iccid" is invalid');
});

test('resync queues full records durably: at the next cycle, or at once with --now; reports the count', async () => {
  const group = uniqueName('resync');
  const iccs = worker.kite.addSims(group, 4, 600);
  await startGroup(group);
  await cycles(group, 1);
  worker.mqtt.drain();

  const one = await cli(['resync', group, '--target', 'mqtt', '--sims', iccs[0]]);
  expect(one).toMatchObject({ code: 0, stderr: '' });
  expect(one.stdout).toContain(
    `queued 1 SIMs of group ${group} for a full republish (mqtt 1): they are published at the next cycle`
  );
  expect(worker.mqtt.drain().size).toBe(0); // nothing sent before the next cycle
  const sync = await cli(['sync', group, '--wait', '--timeout', '1m']);
  expect(sync.code).toBe(0);
  const first = worker.mqtt.drain();
  expect([...first.keys()]).toEqual([iccs[0]]);
  expect(Object.keys(first.get(iccs[0])![0]).length).toBeGreaterThan(10); // the whole record

  const all = await cli(['resync', group, '--now']);
  expect(all.code).toBe(0);
  expect(all.stdout).toContain(
    `queued 8 SIMs of group ${group} for a full republish (mqtt 4, webhook 4): a cycle runs now`
  );
  await cycles(group, 3);
  expect([...worker.mqtt.drain().keys()].sort()).toEqual([...iccs].sort());

  const badTarget = await cli(['resync', group, '--target', 'azure']);
  expect(badTarget.code).toBe(2);
  expect(badTarget.stderr).toContain(`the workflow rejected the resync: group ${group} has no target azure`);
  const nobody = uniqueName('nobody');
  const unknown = await cli(['resync', nobody]);
  expect(unknown.code).toBe(3);
  expect(unknown.stderr).toContain(`group ${nobody} has no running workflow: run \`kite-cc start ${nobody}\``);
  expect((await cli(['resync', group, '--sims', 'abc'])).stderr).toContain('--sims: ICCID "abc" is invalid');
});
