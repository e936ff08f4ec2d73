/**
 * `kite-cc` in-process against the shared test Temporal server, with a worker running the real group workflow
 * and activities (worker-setup.ts).
 */
import type { Client } from '@temporalio/client';
import { freePort } from '../setup/processes';
import { testStack, uniqueName } from '../setup/stack';
import { runCli, type CliRuntime } from '../../cli/cli';
import { connectClient, settingsFromEnv } from '../../cli/connection';
import { startGroup } from '../../cli/commands';
import { EVENT_TYPES, workflowIdForGroup, type GroupStatus } from '../../workflows/definitions';
import { KITE_SYNC_STATE } from '../../workflows/search-attributes';
import { startTestWorker, type TestWorker } from './worker-setup';

let worker: TestWorker;
let client: Client;
const baseEnv: Record<string, string> = {
  KITE_TEMPORAL_ADDRESS: testStack.temporalAddress,
  KITE_WEB_UI_URL: 'http://ui.test:8233',
};

beforeAll(async () => {
  worker = await startTestWorker();
  baseEnv.KITE_TASK_QUEUE = worker.taskQueue;
  client = worker.harness.client;
});

const startedGroups = new Set<string>();

afterAll(async () => {
  // Leave no running workflow behind on the shared server: its worker is gone after this file.
  await Promise.allSettled(
    [...startedGroups].map((g) => client.workflow.getHandle(workflowIdForGroup(g)).terminate('test cleanup'))
  );
  await worker?.stop();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(argv: string[], runtime: CliRuntime = {}): Promise<Run> {
  if (argv[0] === 'start' && argv[1]) startedGroups.add(argv[1]);
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    env: { ...baseEnv, ...runtime.env },
    stdout: { write: (t: string) => (stdout += t), isTTY: false },
    stderr: { write: (t: string) => (stderr += t) },
    workerTimeoutMs: runtime.workerTimeoutMs ?? 10_000,
    pollMs: 100,
  });
  return { code, stdout, stderr };
}

async function syncState(group: string): Promise<string | undefined> {
  const description = await client.workflow.getHandle(workflowIdForGroup(group)).describe();
  return description.typedSearchAttributes.get(KITE_SYNC_STATE);
}

async function statusJson(group: string) {
  const run = await cli(['status', group, '--json']);
  expect(run).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(run.stdout);
}

test('start is idempotent: a second start updates the running workflow instead of starting another', async () => {
  const group = uniqueName('idem');
  const first = await cli(['start', group, '--target', 'mqtt', '--interval', '1m']);
  expect(first.code).toBe(0);
  expect(first.stdout).toContain(`started group ${group}: Cloud Monitoring ON, targets mqtt, every 1m`);
  expect(first.stdout).toContain(`http://ui.test:8233/namespaces/default/workflows/cloud-connector%3A${group}`);
  const { runId } = await client.workflow.getHandle(workflowIdForGroup(group)).describe();

  const second = await cli(['start', group, '--target', 'mqtt,webhook', '--interval', '2m']);
  expect(second.code).toBe(0);
  expect(second.stdout).toContain(`updated group ${group}: Cloud Monitoring ON, targets mqtt, webhook, every 2m`);
  expect((await client.workflow.getHandle(workflowIdForGroup(group)).describe()).runId).toBe(runId);

  const third = await cli(['start', group]);
  expect(third.stdout).toContain('targets mqtt, webhook, every 2m');
  const report = await statusJson(group);
  expect(report).toMatchObject({ group, runId, state: 'ON' });
  expect(report.status.config).toMatchObject({
    group,
    enabled: true,
    intervalMs: 120_000,
    targets: ['mqtt', 'webhook'],
  });
});

test('a new group gets the default target and interval', async () => {
  const group = uniqueName('defaults');
  expect((await cli(['start', group])).code).toBe(0);
  expect((await statusJson(group)).status.config).toMatchObject({ targets: ['mqtt'], intervalMs: 300_000 });
});

test('start --disabled, enable and disable move KiteSyncState between OFF and ON', async () => {
  const group = uniqueName('onoff');
  expect((await cli(['start', group, '--disabled'])).stdout).toContain('Cloud Monitoring OFF');
  expect(await syncState(group)).toBe('OFF');

  const enable = await cli(['enable', group]);
  expect(enable).toMatchObject({ code: 0, stderr: '' });
  expect(enable.stdout).toContain(`group ${group}: Cloud Monitoring ON`);
  expect(await syncState(group)).toBe('ON');
  expect((await statusJson(group)).status.config.enabled).toBe(true);

  expect((await cli(['disable', group])).stdout).toContain('Cloud Monitoring OFF');
  expect(await syncState(group)).toBe('OFF');
  // --disabled on a running, enabled workflow turns it off as well.
  await cli(['enable', group]);
  expect((await cli(['start', group, '--disabled'])).stdout).toContain(`updated group ${group}: Cloud Monitoring OFF`);
  expect(await syncState(group)).toBe('OFF');
});

/** Polls `status --json` until `done` holds. */
async function waitForStatus(group: string, done: (status: GroupStatus) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await statusJson(group);
    if (done(report.status)) return report;
    if (Date.now() > deadline) throw new Error(`status of ${group} never matched: ${JSON.stringify(report)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('status prints a readable block with the last cycle, and --json the full status', async () => {
  const group = uniqueName('status');
  worker.kite.addSims(group, 3, 100);
  await cli(['start', group, '--interval', '90s', '--target', 'mqtt']);
  // The workflow's first run syncs at once.
  await waitForStatus(group, (s) => s.cyclesCompleted === 1 && s.phase === 'idle');
  const text = await cli(['status', group]);
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/monitoring\s+ON/);
  expect(text.stdout).toMatch(/interval\s+1m30s/);
  expect(text.stdout).toMatch(/next sync\s+in 1m\d*/);
  expect(text.stdout).toMatch(/last cycle\s+#1 completed, finished/);
  expect(text.stdout).toMatch(/3 SIMs seen, 3 in group, 0 invalid, 0 left/);
  expect(text.stdout).toContain('mqtt: 3 changed, 3 published, 0 failed, 0 throttled, 0 pending');
  const report = await statusJson(group);
  expect(report).toMatchObject({
    workflowId: workflowIdForGroup(group),
    state: 'ON',
    webUiUrl: `http://ui.test:8233/namespaces/default/workflows/cloud-connector%3A${group}`,
    runsUrl: `http://ui.test:8233/namespaces/default/workflows?query=${encodeURIComponent(`KiteGroup="${group}"`)}`,
    status: { phase: 'idle', cyclesCompleted: 1, lastCycle: { cycle: 1, inGroup: 3, outcome: 'completed' } },
  });
});

test('sync --wait follows the cycle live and prints its summary', async () => {
  const group = uniqueName('sync');
  const iccs = worker.kite.addSims(group, 20, 200);
  await cli(['start', group, '--target', 'mqtt', '--interval', '1h']);
  await waitForStatus(group, (s) => s.cyclesCompleted === 1 && s.phase === 'idle');
  for (const icc of iccs) worker.kite.update(icc, { alias: `renamed-${icc}` });
  // 10 batches of 2, 4 in flight, 700 ms each: the publish step heartbeats between its waves.
  worker.mqtt.delayMs = 700;
  try {
    const run = await cli(['sync', group, '--wait', '--timeout', '1m']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`sync requested for group ${group}`);
    expect(run.stdout).toMatch(/^publish mqtt: \d+ published$/m);
    expect(run.stdout).toMatch(/cycle #2 completed, finished/);
    expect(run.stdout).toMatch(/\d+ SIMs seen, 20 in group, 0 invalid/);
    expect(run.stdout).toContain('mqtt: 20 changed, 20 published, 0 failed');
  } finally {
    worker.mqtt.delayMs = 0;
  }
  expect((await statusJson(group)).status.cyclesCompleted).toBe(2);
});

test('start --events switches events on per group and type: the types reach the workflow, whose cycles then emit them', async () => {
  const group = uniqueName('events');
  const [moved, abroad] = worker.kite.addSims(group, 3, 300);
  const started = await cli(['start', group, '--target', 'mqtt', '--events', 'imeiChanged,operatorChanged']);
  expect(started).toMatchObject({ code: 0, stderr: '' });
  await waitForStatus(group, (s) => s.cyclesCompleted === 1 && s.phase === 'idle');
  expect((await statusJson(group)).status.config.events).toEqual({ types: ['imeiChanged', 'operatorChanged'] });
  const emitted = () =>
    worker.mqtt
      .drainEvents()
      .filter((e) => e.group === group)
      .map((e) => ({ type: e.type, iccid: e.iccid }));
  expect(emitted()).toEqual([]); // the group's first cycle with events: nothing changed yet

  worker.kite.update(moved, { imei: '356938035643809' });
  worker.kite.update(abroad, { country: 'FR' }); // countryChanged is not switched on
  expect((await cli(['sync', group, '--wait', '--timeout', '1m'])).code).toBe(0);
  expect(emitted()).toEqual([{ type: 'imeiChanged', iccid: moved }]);

  // `all`, then `none`: a running group's types are replaced, and with none nothing is emitted.
  expect((await cli(['start', group, '--events', 'all'])).code).toBe(0);
  expect((await statusJson(group)).status.config.events.types).toEqual([...EVENT_TYPES]);
  expect((await cli(['start', group, '--events', 'none'])).code).toBe(0);
  expect((await statusJson(group)).status.config.events).toEqual({ types: [] });
  worker.kite.update(moved, { imei: '356938035643810' });
  expect((await cli(['sync', group, '--wait', '--timeout', '1m'])).code).toBe(0);
  expect(emitted()).toEqual([]);

  const bad = await cli(['start', group, '--events', 'imeiChanged,imeiMoved']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('--events: events.types: "imeiMoved" is not an event type');
});

test('start --location-min-distance sets the publish policy in metres; a bad distance is a usage error', async () => {
  const group = uniqueName('distance');
  expect((await cli(['start', group, '--target', 'mqtt', '--location-min-distance', '1.5km'])).code).toBe(0);
  expect((await statusJson(group)).status.config.publishPolicy).toEqual({ locationMinDistanceM: 1_500 });
  expect((await cli(['start', group, '--counters-min-interval', '30m', '--location-min-distance', '0'])).code).toBe(0);
  expect((await statusJson(group)).status.config.publishPolicy).toEqual({
    locationMinDistanceM: 0,
    countersMinIntervalMs: 1_800_000,
  });
  for (const value of ['far', '5 miles', '2000km']) {
    const run = await cli(['start', group, '--location-min-distance', value]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`--location-min-distance "${value}": use a distance from 0 to 1000km`);
  }
});

test('sync on a group that is OFF says to enable it first', async () => {
  const group = uniqueName('syncoff');
  await cli(['start', group, '--disabled']);
  const run = await cli(['sync', group]);
  expect(run.code).toBe(1);
  expect(run.stderr).toContain(`run \`kite-cc enable ${group}\` first`);
});

test('list shows every running group with its state', async () => {
  const on = uniqueName('list-on');
  const off = uniqueName('list-off');
  await cli(['start', on]);
  await cli(['start', off, '--disabled']);
  let reports: { group: string; state: string; status?: GroupStatus }[] = [];
  for (let i = 0; i < 50; i++) {
    // Short query deadline: other test files' groups on this shared server may have no worker any more.
    const run = await cli(['list', '--json'], { workerTimeoutMs: 1_000 });
    expect(run.code).toBe(0);
    reports = JSON.parse(run.stdout);
    const onIdle = reports.some((r) => r.group === on && r.status?.cyclesCompleted && r.status.phase === 'idle');
    if (onIdle && reports.some((r) => r.group === off && r.state === 'OFF')) break;
    await new Promise((r) => setTimeout(r, 200)); // visibility is eventually consistent
  }
  expect(reports.find((r) => r.group === on)).toMatchObject({ state: 'ON', status: { config: { enabled: true } } });
  expect(reports.find((r) => r.group === off)).toMatchObject({ state: 'OFF', status: { config: { enabled: false } } });
  const table = await cli(['list'], { workerTimeoutMs: 1_000 });
  expect(table.stdout).toMatch(new RegExp(`${on}\\s+ON\\s+mqtt\\s+5m\\s+idle`));
  expect(table.stdout).toContain(`${off}: http://ui.test:8233/namespaces/default/workflows?query=`);
});

test('stop terminates the workflow; status then says to start it, and start brings it back', async () => {
  const group = uniqueName('stop');
  await cli(['start', group]);
  const stop = await cli(['stop', group]);
  expect(stop.code).toBe(0);
  const description = await client.workflow.getHandle(workflowIdForGroup(group)).describe();
  expect(description.status.name).toBe('TERMINATED');
  const status = await cli(['status', group]);
  expect(status.code).toBe(3);
  expect(status.stderr).toContain(`run \`kite-cc start ${group}\``);
  expect((await cli(['start', group])).stdout).toContain(`started group ${group}`);
});

test('an unknown group exits with 3 and says how to start it', async () => {
  const group = uniqueName('nobody');
  for (const command of ['status', 'enable', 'disable', 'sync', 'stop']) {
    const run = await cli([command, group]);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain(`group ${group} has no running workflow: run \`kite-cc start ${group}\``);
  }
});

test('an unreachable server exits with 4 and names the address', async () => {
  const address = `127.0.0.1:${await freePort()}`;
  const run = await cli(['status', 'any'], {
    env: { KITE_TEMPORAL_ADDRESS: address, KITE_TEMPORAL_CONNECT_TIMEOUT_MS: '1000' },
  });
  expect(run.code).toBe(4);
  expect(run.stderr).toContain(`cannot reach Temporal at ${address}`);
  expect(run.stderr).toContain('npm run stack start');
});

test('an invalid configuration is refused before contacting the server, with exit code 2', async () => {
  const badTarget = await cli(['start', 'g1', '--target', 'not a name']);
  expect(badTarget.code).toBe(2);
  expect(badTarget.stderr).toContain('target name "not a name" is invalid');
  const badInterval = await cli(['start', 'g1', '--interval', '10ms']);
  expect(badInterval).toMatchObject({ code: 2 });
  expect(badInterval.stderr).toContain('--interval must be from 1s to 7d, got 10ms');
  expect((await cli(['start', 'g1', '--interval', 'soon'])).stderr).toContain('is not a duration');
  expect((await cli(['start', 'bad group'])).code).toBe(2);
  expect((await cli(['frobnicate'])).code).toBe(2);
  expect((await cli(['list', 'extra'])).code).toBe(2);
  expect((await cli(['start', 'g1', '--bogus'])).stderr).toContain("unknown option '--bogus'");
  expect((await cli(['sync'])).stderr).toContain('sync: name the group, e.g. kite-cc sync fleet-a');
  const badEnv = await cli(['status', 'g1'], { env: { KITE_TEMPORAL_CONNECT_TIMEOUT_MS: 'soon' } });
  expect(badEnv).toMatchObject({ code: 2 });
  expect(badEnv.stderr).toContain('invalid configuration: KITE_TEMPORAL_CONNECT_TIMEOUT_MS: must be a number');
  const halfTls = await cli(['list'], { env: { KITE_TEMPORAL_TLS_KEY: '/etc/key.pem' } });
  expect(halfTls).toMatchObject({ code: 2 });
  expect(halfTls.stderr).toContain('KITE_TEMPORAL_TLS_CERT: set both KITE_TEMPORAL_TLS_CERT and KITE_TEMPORAL_TLS_KEY');
});

test("the workflow's validator rejects a configure, and the CLI prints its reason with exit code 2", async () => {
  const group = uniqueName('reject');
  await cli(['start', group]);
  const settings = settingsFromEnv({ ...baseEnv });
  const ctx = { client: await connectClient(settings), settings, io: { out() {}, err() {}, write() {}, isTTY: false } };
  try {
    // The CLI's own checks are bypassed here, so the request reaches the workflow's validator.
    await expect(startGroup(ctx, { group, targets: [] })).rejects.toMatchObject({
      exitCode: 2,
      message: 'the workflow rejected the configuration: targets must name at least one target',
    });
  } finally {
    await ctx.client.connection.close();
  }
  expect((await statusJson(group)).status.config.targets).toEqual(['mqtt']);
});

test('without a worker, start and status fail with exit code 1 naming the task queue', async () => {
  const group = uniqueName('noworker');
  const env = { KITE_TASK_QUEUE: uniqueName('unpolled') };
  const start = await cli(['start', group], { env, workerTimeoutMs: 1_500 });
  expect(start.code).toBe(1);
  expect(start.stderr).toContain(`no worker answered the configure update of group ${group} within 1.5s`);
  expect(start.stderr).toContain(env.KITE_TASK_QUEUE);
  const status = await cli(['status', group], { env, workerTimeoutMs: 1_500 });
  expect(status.code).toBe(1);
  expect(status.stderr).toContain('no worker answered the status query');
});

test('without a worker, status always says no worker answered, never a raw gRPC error', async () => {
  // Near the deadline the server may reset the call first (gRPC CANCELLED "Call cancelled"): the same cause.
  const group = uniqueName('noworker-repeat');
  const env = { KITE_TASK_QUEUE: uniqueName('unpolled') };
  await cli(['start', group], { env, workerTimeoutMs: 500 });
  const messages = new Set<string>();
  for (let i = 0; i < 12; i++) {
    const run = await cli(['status', group], { env, workerTimeoutMs: 200 + (i % 4) * 100 });
    expect(run.code).toBe(1);
    messages.add(run.stderr.replace(/within [\d.]+m?s:/, 'within T:').split('\n')[0]);
  }
  expect([...messages]).toEqual([
    `kite-cc: no worker answered the status query of group ${group} within T: ` +
      `is a worker polling task queue ${env.KITE_TASK_QUEUE}? (start one with \`npm start\`)`,
  ]);
});

test('help documents commands, environment and exit codes', async () => {
  const run = await cli(['--help']);
  expect(run.code).toBe(0);
  for (const word of ['start <group>', 'KITE_TEMPORAL_ADDRESS', 'KITE_WEB_UI_URL', 'Exit codes', 'Terminate']) {
    expect(run.stdout).toContain(word);
  }
  expect((await cli([])).stdout).toBe(run.stdout);
  const start = await cli(['help', 'start']);
  expect(start.code).toBe(0);
  for (const word of ['--target <names>', '--interval <duration>', '--disabled', 'update-with-start']) {
    expect(start.stdout).toContain(word);
  }
  expect((await cli(['sync', '--help'])).stdout).toContain('--timeout <duration>');
});
