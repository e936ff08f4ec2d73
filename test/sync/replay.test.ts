/**
 * Determinism guard: committed histories of the group workflow replay against today's code. A change that would
 * break running workflows fails here; guard it with `patched()` and record new histories.
 *
 * Record them again with `KITE_RECORD_HISTORIES=1 npx jest test/sync/replay` (needs the test stack).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import type { WorkflowHandle } from '@temporalio/client';
import { configureUpdate, disableSignal, enableSignal, syncNowSignal } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness } from '../support/sync-harness';

const HISTORIES = path.join(__dirname, '../histories');
const recording = process.env.KITE_RECORD_HISTORIES === '1';

async function recordScenario(): Promise<void> {
  const kite = new MemoryKite(10);
  const cloud = new RecordingTarget('cloud');
  const harness = await startSyncHarness({ kite, targets: [cloud, new RecordingTarget('backup')] });
  try {
    const group = uniqueName('golden');
    const [icc] = kite.addSims(group, 25);
    const handle = await harness.start(group, { targets: ['cloud'], maxCyclesPerRun: 3 });
    await harness.waitForCycles(handle, 1);
    await handle.signal(disableSignal);
    await handle.signal(enableSignal);
    await harness.waitForCycles(handle, 2);
    await handle.executeUpdate(configureUpdate, { args: [{ targets: ['cloud', 'backup'], intervalMs: 60_000 }] });
    kite.update(icc, { alias: 'changed' });
    cloud.rejected.add(icc);
    await handle.signal(syncNowSignal);
    await harness.waitForCycles(handle, 3);
    const next = harness.client.workflow.getHandle(handle.workflowId);
    await next.signal(syncNowSignal);
    await harness.waitForCycles(next, 4);
    await save('group-sync-first-run', handle as WorkflowHandle, (await handle.describe()).runId);
    await save('group-sync-after-continue-as-new', next, (await next.describe()).runId, true);
  } finally {
    await harness.close();
  }

  async function save(name: string, handle: WorkflowHandle, runId: string, terminate = false) {
    if (terminate) await handle.terminate('history recorded');
    const history = await harness.client.workflow.getHandle(handle.workflowId, runId).fetchHistory();
    writeFileSync(path.join(HISTORIES, `${name}.json`), JSON.stringify(JSON.parse(historyToJSON(history)), null, 1));
  }
}

(recording ? test : test.skip)('record golden histories', recordScenario, 60_000);

const files = readdirSync(HISTORIES).filter((f) => f.endsWith('.json'));

test('golden histories exist', () => {
  expect(files.length).toBeGreaterThanOrEqual(2);
});

let bundle: { code: string } | undefined;
const workflowBundle = async () =>
  (bundle ??= await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows') }));

test.each(files)('%s replays without a determinism error', async (file) => {
  const history = JSON.parse(readFileSync(path.join(HISTORIES, file), 'utf8'));
  await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history);
});
