/**
 * What `kite-cc status` and the Web UI's current details tell the operator when Kite misbehaves: the activities
 * Temporal is retrying with their last error, how many SIMs a failed fetch read, and the SIMs whose presence read
 * failed. `kite-cc` in-process against the test Temporal server, with the real workflow and activities.
 */
import { ApplicationFailure } from '@temporalio/common';
import { KiteApiError, type KitePage, type KitePresence } from '../../kite';
import { FailureType } from '../../shared/failures';
import { statusQuery, syncNowSignal, type GroupStatus } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { cliStatus } from '../support/cli-status';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';

/** An in-memory Kite whose listing fails from a given SIM on, and whose presence reads fail for chosen SIMs. */
class FaultyKite extends MemoryKite {
  /** The listing fails with this error once it reaches `failFrom` (a position in the listing). */
  listingFault?: { failFrom: number; error: () => Error };
  readonly presenceFaults = new Map<string, () => Error>();

  override async *pages(group: string, fromIndex: number): AsyncIterable<KitePage> {
    for await (const page of super.pages(group, fromIndex)) {
      if (this.listingFault && page.startIndex >= this.listingFault.failFrom) throw this.listingFault.error();
      yield page;
    }
  }

  override async presence(icc: string): Promise<KitePresence | undefined> {
    const fault = this.presenceFaults.get(icc);
    if (fault) throw fault();
    return super.presence(icc);
  }
}

/** The Web UI's current details of a run, as the SDK's built-in metadata query returns them. */
const detailsOf = async (handle: { query<R>(name: string): Promise<R> }) =>
  (await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata')).currentDetails ?? '';

const kite = new FaultyKite(2);
let harness: SyncHarness;

beforeAll(async () => {
  harness = await startSyncHarness({ kite, targets: [new RecordingTarget('cloud')] });
});
afterAll(() => harness?.close());
afterEach(() => {
  kite.listingFault = undefined;
  kite.presenceFaults.clear();
});

const status = (group: string, json = false) => cliStatus(harness.taskQueue, group, json);

test('while a fetch is retried, status shows it with its attempt, last error and the SIMs it read', async () => {
  const group = uniqueName('retrying');
  kite.addSims(group, 6, 1000);
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);
  expect(await status(group)).not.toMatch(/^retrying/m);

  kite.listingFault = {
    failFrom: 4,
    error: () => new KiteApiError({ code: 'SVR.1006', text: 'Service temporarily unavailable', status: 503 }),
  };
  await handle.signal(syncNowSignal);
  let text = '';
  await waitUntil(
    async () => /^retrying/m.test((text = await status(group))),
    'status shows the retried fetch',
    30_000
  );
  // Two pages of 2 SIMs were read before Kite failed; the cycle's own outcome is not known yet.
  expect(text).toMatch(
    /^retrying\s+fetchSnapshot, attempt \d+: Kite SVR\.1006 \(HTTP 503\).*after reading 4 SIMs of Kite's inventory/m
  );
  expect(text).toMatch(/^phase\s+fetch$/m);
  const report = JSON.parse(await status(group, true)) as { retrying: string[]; status: GroupStatus };
  expect(report.retrying).toEqual([expect.stringMatching(/^fetchSnapshot, attempt \d+: .*after reading 4 SIMs/)]);

  kite.listingFault = undefined;
  const done = await harness.waitForCycles(handle, 2, 60_000);
  expect(done.lastCycle).toMatchObject({ outcome: 'completed', inGroup: 6 });
  expect(await status(group)).not.toMatch(/^retrying/m);
  await handle.terminate();
});

test("a failed fetch's cycle error says how many SIMs it read", async () => {
  const group = uniqueName('fetch-failed');
  kite.addSims(group, 6, 2000);
  kite.listingFault = {
    failFrom: 2,
    error: () => ApplicationFailure.nonRetryable('Kite refused the client certificate', FailureType.KiteAuth),
  };
  const handle = await harness.start(group);
  const failed = await harness.waitForCycles(handle, 1);
  expect(failed.lastCycle).toMatchObject({ outcome: 'failed' });
  expect(failed.lastCycle?.error).toMatch(/Kite refused the client certificate \(after reading 2 SIMs of Kite's/);
  expect(await status(group)).toMatch(/^last error\s+.*after reading 2 SIMs of Kite's inventory/m);
  await handle.terminate();
});

test('SIMs whose presence read failed show in status and in the Web UI current details', async () => {
  const group = uniqueName('presence');
  const iccs = kite.addSims(group, 5, 3000);
  kite.presenceFaults.set(iccs[0], () => new KiteApiError({ code: 'SVC.1006', text: 'Sim not found', status: 404 }));
  kite.presenceFaults.set(iccs[1], () => new KiteApiError({ code: 'SVR.1000', text: 'Server error', status: 500 }));
  const handle = await harness.start(group);
  const done = await harness.waitForCycles(handle, 1);
  expect(done.lastCycle).toMatchObject({ outcome: 'completed', inGroup: 5 });
  const line =
    '2 SIMs published without a fresh presence, read again next cycle ' +
    '(presence-error:SVC.1006: 1, presence-error:SVR.1000: 1)';
  expect(await status(group)).toContain(line);
  const currentDetails = await detailsOf(handle);
  expect(currentDetails).toMatch(/\*\*Last cycle #1 completed\*\*/);
  expect(currentDetails).toContain(line);

  // Kite answers again: the next cycle reads them and the line goes away.
  kite.presenceFaults.clear();
  await handle.signal(syncNowSignal);
  await harness.waitForCycles(handle, 2);
  expect(await status(group)).not.toContain('without a fresh presence');
  expect((await handle.query(statusQuery)).lastCycle?.presenceErrors).toEqual({});
  expect(await detailsOf(handle)).not.toContain('without a fresh presence');
  await handle.terminate();
});
