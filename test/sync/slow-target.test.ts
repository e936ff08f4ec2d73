/**
 * Issue #12's "done when": a slow target (100 ms per item, 100 items/s, the worker's default batch size and
 * batches in flight, 2,000 SIMs) completes each cycle in one attempt per activity, without a heartbeat timeout.
 * Before, a batch of 500 sharing the target's rate with 3 others took 20 s and heartbeated only when done: the
 * 15 s heartbeat timeout killed every attempt, and overlapping attempts sent the same SIMs again.
 */
import { mapPool } from '../../shared/concurrency';
import { sleep, TokenBucket } from '../../shared/limits';
import type { PublishItem, PublishOutcome, Target } from '../../targets/target';
import { syncNowSignal } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

/** 100 ms per item, 10 at a time per call, at most 100 items/s across calls: a cloud API with a rate limit. */
class SlowTarget implements Target {
  readonly itemsPerSecond = 100;
  private readonly rate = new TokenBucket({ perSecond: this.itemsPerSecond });
  readonly sends = new Map<string, number>();

  constructor(readonly name: string) {}

  async publish(items: PublishItem[], signal?: AbortSignal): Promise<PublishOutcome[]> {
    return mapPool(items, 10, async (item): Promise<PublishOutcome> => {
      try {
        await this.rate.take(1, signal);
        await sleep(100, signal);
      } catch {
        return { iccid: item.iccid, status: 'retryable', reason: 'cancelled' };
      }
      this.sends.set(item.iccid, (this.sends.get(item.iccid) ?? 0) + 1);
      return { iccid: item.iccid, status: 'ok' };
    });
  }

  async close(): Promise<void> {}
}

const SIMS = 2_000;
const kite = new MemoryKite(1000);
const slow = new SlowTarget('slow');
let harness: SyncHarness;

beforeAll(async () => {
  // The worker's defaults: 500 SIMs per batch, 4 batches in flight, the workflow's 10 s heartbeat timeout.
  harness = await startSyncHarness({ kite, targets: [slow], batchSize: 500 });
});
afterAll(() => harness?.close());

test('2,000 SIMs through a slow target: one attempt per activity, no heartbeat timeout, each SIM sent once', async () => {
  const group = uniqueName('slow');
  const iccs = kite.addSims(group, SIMS);
  const handle = await harness.start(group);

  const first = await harness.waitForCycles(handle, 1, 180_000);
  expect(first.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS });
  expect(first.lastCycle?.targets.slow).toMatchObject({ changed: SIMS, published: SIMS, failed: 0 });

  for (const icc of iccs) kite.update(icc, { apn: 'iot.example' });
  await handle.signal(syncNowSignal);
  const second = await harness.waitForCycles(handle, 2, 180_000);
  expect(second.lastCycle?.targets.slow).toMatchObject({ changed: SIMS, published: SIMS, failed: 0 });

  expect([...slow.sends.values()].every((n) => n === 2)).toBe(true);
  expect(slow.sends.size).toBe(SIMS);

  const { events } = await handle.fetchHistory();
  const timeouts = events!.filter((e) => e.activityTaskTimedOutEventAttributes);
  expect(timeouts).toEqual([]);
  const attempts = events!.flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt] : [])); // prettier-ignore
  expect(attempts.length).toBeGreaterThanOrEqual(6); // fetch, diff, publish per cycle
  expect(new Set(attempts)).toEqual(new Set([1]));
  await handle.terminate();
});
