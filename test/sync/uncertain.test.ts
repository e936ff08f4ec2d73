/**
 * A patch handed to a target and never acknowledged leaves the target's state unknown. When the cycle then ends
 * without a retry (the group disabled, or stopped, or the publish out of attempts) and Kite's values flip back,
 * the next cycle must still correct the target: every SIM at the target equals Kite afterwards. Real workflow,
 * Temporal server and Redis.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { mapSim } from '../../kite';
import { applyPatch, type SimRecord } from '../../record';
import type { PublishItem, PublishOutcome } from '../../targets/target';
import { disableSignal, enableSignal, statusQuery, syncNowSignal, type GroupConfig } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';

/** Delivers every patch, then, while `loseAcks` is set, fails the call as if the acknowledgement was lost. */
class LostAckTarget extends RecordingTarget {
  loseAcks = false;
  /**
   * How a lost acknowledgement shows: the call throws (a transient fault, retried after Temporal's backoff), or
   * every SIM is throttled with a short Retry-After (the attempts run out within seconds).
   */
  lossAs: 'error' | 'throttle' = 'error';
  /** While acknowledgements are lost, only these SIMs reach the target (a partial delivery); all when absent. */
  reaching?: Set<string>;

  override async publish(items: PublishItem[]): Promise<PublishOutcome[]> {
    if (!this.loseAcks) return super.publish(items);
    await super.publish(this.reaching ? items.filter((item) => this.reaching!.has(item.iccid)) : items);
    if (this.lossAs === 'error') throw new Error('connection reset before the acknowledgement');
    return items.map((item) => ({
      iccid: item.iccid,
      status: 'throttled',
      retryAfterMs: 20,
      reason: 'acknowledgement lost',
    }));
  }

  /** What the target holds per SIM: every patch received, applied in order. */
  state(iccid: string): SimRecord | undefined {
    return (this.received.get(iccid) ?? []).reduce<SimRecord | undefined>((s, r) => applyPatch(s, r.patch), undefined);
  }
}

const kite = new MemoryKite(50);
const cloud = new LostAckTarget('cloud');
let harness: SyncHarness;

beforeAll(async () => {
  harness = await startSyncHarness({ kite, targets: [cloud], batchSize: 10 });
});
afterAll(() => harness?.close());

function kiteRecord(icc: string): SimRecord {
  const mapped = mapSim(kite.sims.get(icc), kite.presences.get(icc));
  if (!mapped.ok) throw new Error(mapped.reason);
  return mapped.record;
}

/**
 * Publishes a 30-SIM group, changes 20 aliases, lets the target receive them but lose the acknowledgements,
 * ends the cycle with `interrupt`, flips the aliases back in Kite, resumes with `resume`, and checks the target.
 */
async function flipBack(
  name: string,
  interrupt: (handle: WorkflowHandle) => Promise<void>,
  resume: (group: string, handle: WorkflowHandle) => Promise<{ handle: WorkflowHandle; cycles: number }>,
  config: Partial<GroupConfig> = {}
): Promise<void> {
  const group = uniqueName(name);
  const iccs = kite.addSims(group, 30, Math.floor(Math.random() * 1e6));
  const handle = await harness.start(group, config);
  await harness.waitForCycles(handle, 1);
  const changed = iccs.slice(0, 20);
  const original = new Map(changed.map((icc) => [icc, kite.sims.get(icc)!.alias]));
  for (const icc of changed) kite.update(icc, { alias: `new-${icc.slice(-6)}` });

  cloud.loseAcks = true;
  await handle.signal(syncNowSignal);
  await waitUntil(
    () => changed.every((icc) => cloud.state(icc)?.alias === `new-${icc.slice(-6)}`),
    'the target received every new alias'
  );
  await interrupt(handle);
  cloud.loseAcks = false;
  for (const icc of changed) kite.update(icc, { alias: original.get(icc) });

  const resumed = await resume(group, handle);
  const status = await harness.waitForCycles(resumed.handle, resumed.cycles);
  expect(status.lastCycle?.outcome).toBe('completed');
  const wrong = iccs.filter((icc) => JSON.stringify(cloud.state(icc)) !== JSON.stringify(kiteRecord(icc)));
  expect(wrong).toEqual([]);
  await resumed.handle.terminate();
}

test('flip-back across disable and enable: every SIM at the target equals Kite', async () => {
  await flipBack(
    'flip-disable',
    async (handle) => {
      await handle.signal(disableSignal);
      await waitUntil(async () => (await handle.query(statusQuery)).phase === 'idle', 'the cycle is cancelled');
    },
    async (_group, handle) => {
      const { cyclesCompleted } = await handle.query(statusQuery);
      await handle.signal(enableSignal);
      return { handle, cycles: cyclesCompleted + 1 };
    }
  );
});

test('flip-back across disable, continue-as-new and enable: every SIM at the target equals Kite', async () => {
  let firstRun = '';
  await flipBack(
    'flip-can',
    async (handle) => {
      const latest = harness.client.workflow.getHandle(handle.workflowId);
      firstRun = (await latest.describe()).runId;
      // The cancelled cycle is the run's second: the run continues as new before it waits for enable.
      await handle.signal(disableSignal);
      await waitUntil(async () => (await latest.describe()).runId !== firstRun, 'the run continued as new');
    },
    async (_group, handle) => {
      const latest = harness.client.workflow.getHandle(handle.workflowId);
      const { cyclesCompleted } = await latest.query(statusQuery);
      await latest.signal(enableSignal);
      return { handle: latest, cycles: cyclesCompleted + 1 };
    },
    { maxCyclesPerRun: 2 }
  );
  expect(firstRun).not.toBe('');
});

test('flip-back across stop and start: every SIM at the target equals Kite', async () => {
  await flipBack(
    'flip-stop',
    async (handle) => void (await handle.terminate('stopped by the test')),
    async (group) => ({ handle: await harness.start(group), cycles: 1 })
  );
});

test('flip-back after the publish ran out of attempts with a partial delivery: every SIM at the target equals Kite', async () => {
  const group = uniqueName('flip-exhausted');
  const iccs = kite.addSims(group, 30, Math.floor(Math.random() * 1e6));
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);
  const changed = iccs.slice(0, 20);
  const [reached, unreached] = [changed.slice(0, 10), changed.slice(10)];
  const original = new Map(changed.map((icc) => [icc, kite.sims.get(icc)!.alias]));
  const renamed = (icc: string) => `new-${icc.slice(-6)}`;
  for (const icc of changed) kite.update(icc, { alias: renamed(icc) });

  // Half of the new aliases reach the target, no acknowledgement comes back, and every attempt is throttled.
  Object.assign(cloud, { loseAcks: true, lossAs: 'throttle', reaching: new Set(reached) });
  try {
    await handle.signal(syncNowSignal);
    await waitUntil(() => reached.every((icc) => cloud.state(icc)?.alias === renamed(icc)), 'the partial delivery');
    // From here nothing reaches the target until what the exhausted cycle left is checked: the next cycle starts at
    // once, and it would correct the target first.
    Object.assign(cloud, { reaching: new Set() });
    // The snapshot of the cycle is staged: Kite's values flip back while its publish retries.
    for (const icc of changed) kite.update(icc, { alias: original.get(icc) });
    await waitUntil(
      async () => (await handle.query(statusQuery)).lastCycle?.cycle === 2,
      'the cycle ran out of attempts',
      120_000
    );
    const exhausted = (await handle.query(statusQuery)).lastCycle;
    expect(exhausted).toMatchObject({ outcome: 'failed', error: expect.stringMatching(/attempts exhausted/) });
    for (const icc of reached) expect(cloud.state(icc)?.alias).toBe(renamed(icc)); // the target holds new values
    for (const icc of unreached) expect(cloud.state(icc)?.alias).toBe(original.get(icc));
  } finally {
    Object.assign(cloud, { loseAcks: false, lossAs: 'error', reaching: undefined });
  }

  // The next cycle starts at once, without a syncNow, and corrects what was delivered.
  const status = await harness.waitForCycles(handle, 3, 60_000);
  expect(status.lastCycle?.outcome).toBe('completed');
  const wrong = iccs.filter((icc) => JSON.stringify(cloud.state(icc)) !== JSON.stringify(kiteRecord(icc)));
  expect(wrong).toEqual([]);
  await handle.terminate();
});
