/**
 * The README's worst case, over a whole cycle and not only per attempt: with a webhook that answers 503 to every
 * POST, one cycle posts each batch at most (Temporal's publish attempts) × (the webhook's `maxAttempts`) times,
 * and no more, because no retry layer sits between the two. The real workflow and its retry policy on the test
 * Temporal server, the real webhook target, a real HTTP receiver.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WorkflowFailedError } from '@temporalio/client';
import { createTarget } from '../../targets';
import { parseTargetConfigs } from '../../targets/config';
import { disableSignal, statusQuery } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';

/** workflows/group-sync.ts: the publish activity's `maximumAttempts`. */
const TEMPORAL_ATTEMPTS = 20;
/** The webhook's tries per batch within one call. */
const MAX_ATTEMPTS = 3;

let harness: SyncHarness | undefined;
let server: http.Server | undefined;

afterAll(async () => {
  await harness?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

test(`one cycle posts a refused webhook batch at most ${TEMPORAL_ATTEMPTS} × maxAttempts times`, async () => {
  /** Each POST: when it arrived, and the SIMs it carried. */
  const posts: { at: number; iccids: string[] }[] = [];
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items: { iccid: string }[] };
      posts.push({ at: Date.now(), iccids: body.items.map((i) => i.iccid) });
      res.writeHead(503, { 'retry-after': '0' }).end();
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/kite`;

  const group = uniqueName('bound');
  const kite = new MemoryKite();
  const iccids = kite.addSims(group, 3);
  const { hook } = parseTargetConfigs({
    hook: { type: 'webhook', url, secret: 'bound-test-secret-0123456789', maxAttempts: MAX_ATTEMPTS },
  });
  harness = await startSyncHarness({ kite, targets: [createTarget(hook)] });
  const handle = await harness.start(group);

  // Cycle 1 runs out of publish attempts; the workflow then starts cycle 2 at once, so the count stops at the
  // moment cycle 1's publish failed for good (its ActivityTaskFailed event).
  await waitUntil(
    async () => (await handle.query(statusQuery)).lastCycle?.outcome === 'failed',
    'cycle 1 ran out of publish attempts',
    400_000
  );
  await handle.signal(disableSignal);
  const history = (await handle.fetchHistory()).events ?? [];
  const publishScheduled = history.find(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'publishChanges'
  );
  const publishFailed = history.find(
    (e) => e.activityTaskFailedEventAttributes?.scheduledEventId?.toString() === publishScheduled?.eventId?.toString()
  );
  expect(publishFailed).toBeDefined();
  const endOfCycle1 =
    Number(publishFailed!.eventTime!.seconds) * 1000 + Math.floor(publishFailed!.eventTime!.nanos! / 1e6);
  const cycle1 = posts.filter((p) => p.at <= endOfCycle1);

  for (const iccid of iccids) {
    const sends = cycle1.filter((p) => p.iccids.includes(iccid)).length;
    // Retried across Temporal's attempts (more than one call's tries) and never beyond the bound.
    expect(sends).toBeGreaterThan(MAX_ATTEMPTS);
    expect(sends).toBeLessThanOrEqual(TEMPORAL_ATTEMPTS * MAX_ATTEMPTS);
  }
  console.log(`cycle 1: ${cycle1.length} POSTs of one 3-SIM batch (bound ${TEMPORAL_ATTEMPTS} × ${MAX_ATTEMPTS})`);
  await handle.terminate().catch((err: unknown) => {
    if (!(err instanceof WorkflowFailedError)) throw err;
  });
}, 600_000);
