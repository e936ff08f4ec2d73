/**
 * The Temporal server itself dies (SIGKILL) mid-cycle and restarts on the same SQLite file: the workflow resumes
 * and completes its cycle. On this dedicated server, continue-as-new is suggested after a few dozen events, so
 * the test also shows that the server's suggestion is honoured and the published state survives it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { statusQuery, syncNowSignal } from '../../workflows/definitions';
import { TEMPORAL_BIN } from '../setup/ports';
import { freePort, stop, tempDir, waitForPort } from '../setup/processes';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';

const dbFile = path.join(tempDir('temporal-restart'), 'temporal.db');
let port: number;
let server: ChildProcess | undefined;
let harness: SyncHarness;
const kite = new MemoryKite(100);
const cloud = new RecordingTarget('cloud');

async function startServer(): Promise<void> {
  server = spawn(
    TEMPORAL_BIN,
    [
      ...['server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(port), '--db-filename', dbFile],
      ...[
        '--search-attribute',
        'KiteGroup=Keyword',
        '--search-attribute',
        'KiteSyncState=Keyword',
        '--log-level',
        'error',
      ],
      ...['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=40'],
    ],
    { stdio: 'ignore' }
  );
  await waitForPort(port, 'temporal dev server', 30_000);
}

beforeAll(async () => {
  port = await freePort();
  await startServer();
  harness = await startSyncHarness({ kite, targets: [cloud], batchSize: 20, temporalAddress: `127.0.0.1:${port}` });
}, 60_000);

afterAll(async () => {
  await harness?.close();
  await stop(server);
});

test('a cycle interrupted by a server crash completes after the restart; continue-as-new keeps the state', async () => {
  const group = uniqueName('restart');
  const iccs = kite.addSims(group, 400);
  cloud.delayMs = 100;
  const handle = await harness.start(group);
  const firstRun = (await handle.describe()).runId;

  await waitUntil(() => cloud.received.size >= 60, 'publishing has started', 30_000);
  await stop(server, 'SIGKILL');
  const beforeCrash = cloud.received.size;
  expect(beforeCrash).toBeLessThan(iccs.length);
  await startServer();

  const first = await harness.waitForCycles(handle, 1, 120_000);
  expect(first.lastCycle).toMatchObject({ outcome: 'completed', inGroup: 400 });
  expect(iccs.filter((icc) => !cloud.received.has(icc))).toEqual([]);
  cloud.delayMs = 0;
  cloud.drain();

  const latest = harness.client.workflow.getHandle(handle.workflowId);
  for (let cycle = 2; cycle <= 4; cycle++) {
    await latest.signal(syncNowSignal);
    await harness.waitForCycles(latest, cycle, 30_000);
  }
  const status = await latest.query(statusQuery);
  expect(status.cyclesCompleted).toBe(4);
  expect((await latest.describe()).runId).not.toBe(firstRun);
  expect(cloud.drain().size).toBe(0); // nothing republished after continue-as-new
  await latest.terminate();
}, 240_000);
