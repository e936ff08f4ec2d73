/**
 * The connector's metrics appear, with their labels, on the SDK's Prometheus endpoint next to the SDK's own,
 * and SDK logs reach our JSON logger. Runs in a child process: the test process already has a Runtime.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort, stop } from '../setup/processes';
import { testStack } from '../setup/stack';

let child: ChildProcess | undefined;
let stderr = '';

afterEach(async () => {
  child?.stdin?.end();
  await stop(child);
});

async function startChild(bindAddress: string): Promise<void> {
  const root = path.resolve(__dirname, '../..');
  child = spawn(
    process.execPath,
    ['-r', '@swc-node/register', 'test/ops/metrics-child.ts', bindAddress, testStack.temporalAddress],
    { cwd: root, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KITE_LOG_LEVEL: 'info' } }
  );
  child.stderr!.on('data', (d) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    child!.stdout!.on('data', (d) => String(d).includes('ready') && resolve());
    child!.once('exit', (code) => reject(new Error(`metrics child exited with ${code}: ${stderr}`)));
  });
}

test('connector metrics and SDK metrics share the Prometheus endpoint, with group and target labels', async () => {
  const bindAddress = `127.0.0.1:${await freePort()}`;
  await startChild(bindAddress);
  const response = await fetch(`http://${bindAddress}/metrics`);
  expect(response.status).toBe(200);
  const text = await response.text();
  const lines = text.split('\n');
  const value = (series: string) => lines.find((l) => l.startsWith(series + ' '))?.split(' ')[1];

  expect(value('kite_cc_sims_fetched{group="fleet-a"}')).toBe('120');
  expect(value('kite_cc_sims_fetched{group="fleet-b"}')).toBe('3');
  expect(value('kite_cc_sims_changed{group="fleet-a",target="mqtt"}')).toBe('7');
  expect(value('kite_cc_sims_changed{group="fleet-b",target="aws"}')).toBe('4');
  expect(value('kite_cc_sims_published{group="fleet-a",target="mqtt"}')).toBe('2');
  expect(value('kite_cc_sims_failed{group="fleet-a",target="mqtt"}')).toBe('1');
  expect(value('kite_cc_target_throttles{target="mqtt"}')).toBe('1');
  expect(lines).toContain('# TYPE kite_cc_cycle_duration histogram');
  expect(value('kite_cc_cycle_duration_sum{group="fleet-a"}')).toBe('42000');
  // Our bucket boundaries, not the SDK's default ones (which stop at 10 s).
  expect(value('kite_cc_cycle_duration_bucket{group="fleet-a",le="30000"}')).toBe('0');
  expect(value('kite_cc_cycle_duration_bucket{group="fleet-a",le="60000"}')).toBe('1');
  expect(value('kite_cc_target_latency_bucket{target="mqtt",le="250"}')).toBe('1');
  expect(value('kite_cc_target_latency_count{target="mqtt"}')).toBe('1');
  // The SDK's own metrics are served by the same endpoint.
  expect(text).toMatch(/^temporal_\w+/m);

  // Forwarded logs are buffered for 100 ms: read them once the child has shut down.
  child!.stdin!.end();
  await new Promise((resolve) => child!.once('exit', resolve));
  const sdkLog = stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .find((entry) => entry.msg === 'hello from the sdk logger');
  expect(sdkLog).toMatchObject({ level: 'warn', component: 'temporal-sdk', workflowId: 'wf-1' });
});
