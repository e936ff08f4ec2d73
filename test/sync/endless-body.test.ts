/**
 * A Kite answer whose body never ends: the worker process, run with the image's heap flags, reads at most its
 * configured response limit (KITE_MAX_RESPONSE_BYTES), fails the cycle with an error naming that limit, and its
 * resident memory stays bounded. The
 * test watches the worker's RSS and kills it at once if it runs away, so a regression fails fast and safely.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { startKiteSimulator, type KiteSimulator } from '../../simulator';
import { statusQuery, workflowIdForGroup } from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { KITE_GROUP } from '../../workflows/search-attributes';
import { tempDir } from '../setup/processes';
import { testStack, uniqueName } from '../setup/stack';
import { simulatorWorkerEnv, startWorkerProcess, type WorkerProcess } from '../support/worker-process';
import { waitUntil } from '../support/wait-until';

/** Growth of the worker's resident memory that an 8 MiB response limit must stay well within. */
const MAX_RSS_GROWTH_MB = 200;

let sim: KiteSimulator;
let connection: Connection;
let worker: WorkerProcess | undefined;

beforeAll(async () => {
  sim = await startKiteSimulator({ groups: ['endless-fleet'], simsPerGroup: 10, certDir: tempDir('certs') });
  connection = await Connection.connect({ address: testStack.temporalAddress });
}, 60_000);

afterAll(async () => {
  await worker?.kill('SIGKILL');
  await connection?.close();
  await sim?.close();
});

/** Resident and peak resident memory of a process, in MB (Linux). */
function memoryMb(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

test('an endless inventory body fails the cycle with the limit named, and the worker RSS stays bounded', async () => {
  const taskQueue = uniqueName('endless');
  const group = 'endless-fleet';
  worker = await startWorkerProcess({
    ...simulatorWorkerEnv(sim, taskQueue),
    NODE_OPTIONS: '--max-old-space-size=256 --max-semi-space-size=16',
    KITE_TARGETS: JSON.stringify({ sink: { type: 'null' } }),
    KITE_MAX_RESPONSE_BYTES: String(8 * 1024 * 1024),
  });
  const pid = worker.child.pid!;
  const before = memoryMb(pid).rss;
  let peak = before;
  const watch = setInterval(() => {
    try {
      peak = Math.max(peak, memoryMb(pid).rss);
      if (peak - before > 3 * MAX_RSS_GROWTH_MB) worker!.child.kill('SIGKILL'); // runaway: stop it before the host suffers
    } catch {
      // the process is gone
    }
  }, 50);

  sim.control.setFaults({ rate: 1, kinds: ['endless'], only: 'list' });
  const handle = await new Client({ connection }).workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: workflowIdForGroup(`${group}-${taskQueue}`),
    args: [{ config: { group, enabled: true, intervalMs: 3_600_000, targets: ['sink'] } }],
    typedSearchAttributes: [{ key: KITE_GROUP, value: group }],
  });
  try {
    await waitUntil(
      async () => worker!.child.exitCode !== null || (await handle.query(statusQuery)).cyclesCompleted >= 1,
      'the cycle ends',
      120_000
    );
  } finally {
    clearInterval(watch);
  }
  console.log(`worker RSS before ${before.toFixed(0)} MB, peak while reading the endless body ${peak.toFixed(0)} MB`);
  expect(worker.child.signalCode).toBeNull(); // not killed as a runaway
  expect(peak - before).toBeLessThan(MAX_RSS_GROWTH_MB);
  const status = await handle.query(statusQuery);
  expect(status.lastCycle).toMatchObject({ outcome: 'failed' });
  expect(status.lastError).toMatch(/larger than 8388608 bytes \(maxResponseBytes\)/);
  await handle.terminate();
}, 180_000);
