/**
 * The README's worst case, over a whole cycle and not only per attempt: with a webhook that answers 503 to every
 * POST, one cycle posts each batch at most (Temporal's publish attempts) × (the webhook's `maxAttempts`) times,
 * and no more, because no retry layer sits between the two. Likewise a webhook that never answers (every POST
 * times out): 20 × 1; and AWS's own worst case, 20 × 2, where each attempt's shadow update finds no thing (404),
 * creates it and is sent once more (then fails with a 503); and Kite's: a list page Kite refuses every time is
 * requested once per fetch attempt (20) when refused with a 503 (SVR.1006), and 20 × (1 + the Kite client's 3
 * re-sends after Retry-After) when refused with a 429 (POL.1005). The real workflow and its retry policy on the test
 * Temporal server, the real webhook and AWS targets and Kite client, a real HTTP receiver, moto behind a fault
 * proxy, the Kite simulator.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { kiteSourceFromClients } from '../../activities/kite-source';
import { DEFAULT_RATE_LIMIT_RETRIES } from '../../kite';
import type { KiteSimulator } from '../../simulator';
import { createTarget } from '../../targets';
import { parseTargetConfigs } from '../../targets/config';
import { disableSignal, statusQuery } from '../../workflows/definitions';
import { uniqueName } from '../setup/stack';
import { clientOf, simulator } from '../kite/helpers';
import { startMoto, type MotoServer } from '../setup/moto';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';
import { startFaultProxy, type FaultProxy } from '../targets/fault-proxy';

/** workflows/group-sync.ts: the activities' `maximumAttempts` (publish and fetch). */
const TEMPORAL_ATTEMPTS = 20;
/** The webhook's tries per batch within one call. */
const MAX_ATTEMPTS = 3;

let harness: SyncHarness | undefined;
let server: http.Server | undefined;
let moto: MotoServer | undefined;
let proxy: FaultProxy | undefined;
let sim: KiteSimulator | undefined;

afterEach(async () => {
  await harness?.close();
  harness = undefined;
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
  await proxy?.close();
  await moto?.stop();
  await sim?.close();
  [proxy, moto, sim] = [undefined, undefined, undefined];
});

const epochMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

/**
 * When each activity of cycle 1 failed for good (its ActivityTaskFailed event), by target for the publish
 * activities and by activity type for the others: the workflow then starts cycle 2 at once, so sends are counted
 * up to that moment.
 */
async function cycleOneFailures(handle: WorkflowHandle): Promise<Map<string, number>> {
  const history = (await handle.fetchHistory()).events ?? [];
  const keyOf = new Map<string, string>();
  for (const e of history) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (!scheduled) continue;
    const input = JSON.parse(Buffer.from(scheduled.input!.payloads![0].data!).toString('utf8')) as {
      cycle: number;
      target?: string;
    };
    if (input.cycle === 1) keyOf.set(String(e.eventId), input.target ?? scheduled.activityType!.name!);
  }
  const failedAt = new Map<string, number>();
  for (const e of history) {
    const failed = e.activityTaskFailedEventAttributes;
    const key = failed && keyOf.get(String(failed.scheduledEventId));
    if (key) failedAt.set(key, epochMs(e.eventTime));
  }
  return failedAt;
}

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
  const endOfCycle1 = (await cycleOneFailures(handle)).get('hook');
  expect(endOfCycle1).toBeDefined();
  const cycle1 = posts.filter((p) => p.at <= endOfCycle1!);

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

test(`a webhook that never answers gets a batch at most ${TEMPORAL_ATTEMPTS} times, AWS a shadow update at most ${TEMPORAL_ATTEMPTS} × 2`, async () => {
  // The webhook: every POST is read and never answered, so each one times out (after 1 s).
  const posts: { at: number; iccids: string[] }[] = [];
  server = http.createServer((req) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items: { iccid: string }[] };
      posts.push({ at: Date.now(), iccids: body.items.map((i) => i.iccid) });
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/kite`;
  // AWS: every shadow update finds no thing (404) on its first send of an attempt, and fails (503) after
  // CreateThing, on its second; CreateThing reaches moto.
  moto = await startMoto();
  proxy = await startFaultProxy(moto.url);
  const shadowPosts: { at: number; thing: string }[] = [];
  const tries = new Map<string, number>();
  proxy.inject = (req) => {
    const thing = /^\/things\/([^/?]+)\/shadow/.exec(req.url ?? '')?.[1];
    if (!thing || req.method !== 'POST') return undefined;
    shadowPosts.push({ at: Date.now(), thing });
    const n = (tries.get(thing) ?? 0) + 1;
    tries.set(thing, n);
    return n % 2 === 1
      ? { status: 404, headers: { 'x-amzn-errortype': 'ResourceNotFoundException' }, body: '{"message":"No shadow exists"}' } // prettier-ignore
      : { status: 503, headers: { 'x-amzn-errortype': 'ServiceUnavailableException' }, body: '{"message":"injected"}' }; // prettier-ignore
  };

  const group = uniqueName('bound-hang');
  const kite = new MemoryKite();
  const iccids = kite.addSims(group, 3);
  const configs = parseTargetConfigs({
    hang: { type: 'webhook', url, secret: 'bound-test-secret-0123456789', timeoutMs: 1_000 },
    aws: {
      type: 'aws',
      region: 'eu-west-1',
      endpoint: proxy.url,
      controlEndpoint: proxy.url,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing-secret-key' },
    },
  });
  harness = await startSyncHarness({ kite, targets: [createTarget(configs.hang), createTarget(configs.aws)] });
  const handle = await harness.start(group);

  await waitUntil(
    async () => (await handle.query(statusQuery)).lastCycle?.outcome === 'failed',
    'cycle 1 ran out of publish attempts',
    600_000
  );
  await handle.signal(disableSignal);
  const failedAt = await cycleOneFailures(handle);
  expect([...failedAt.keys()].sort()).toEqual(['aws', 'hang']);

  for (const iccid of iccids) {
    const hung = posts.filter((p) => p.at <= failedAt.get('hang')! && p.iccids.includes(iccid)).length;
    expect(hung).toBeGreaterThan(1); // retried across attempts
    expect(hung).toBeLessThanOrEqual(TEMPORAL_ATTEMPTS);
    const updates = shadowPosts.filter((p) => p.at <= failedAt.get('aws')! && p.thing === iccid).length;
    expect(updates).toBeGreaterThan(TEMPORAL_ATTEMPTS); // the send after CreateThing is real: the bound is 2 per attempt
    expect(updates).toBeLessThanOrEqual(2 * TEMPORAL_ATTEMPTS);
  }
  console.log(`cycle 1: ${posts.length} POSTs timed out, ${shadowPosts.length} shadow updates for 3 SIMs`);
  await handle.terminate().catch((err: unknown) => {
    if (!(err instanceof WorkflowFailedError)) throw err;
  });
}, 900_000);

/** The attempt number of the last attempt of each finished `activityType` activity, in history order. */
async function lastAttempts(handle: WorkflowHandle, activityType: string): Promise<number[]> {
  const history = (await handle.fetchHistory()).events ?? [];
  const scheduled = new Set(
    history
      .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activityType)
      .map((e) => String(e.eventId))
  );
  return history
    .filter((e) => scheduled.has(String(e.activityTaskStartedEventAttributes?.scheduledEventId)))
    .map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1);
}

/**
 * Runs group `group` against a simulator whose list requests all fail with `kind` until cycle 1 runs out of
 * fetch attempts; returns the requests of page 0 up to then (arrival times, ms) and the fetch attempts made.
 */
async function refusedKitePage(
  group: string,
  kind: 'overload' | 'rate-limit'
): Promise<{ at: number[]; attempts: number }> {
  sim = await simulator({ groups: [group], simsPerGroup: 3 });
  sim.control.setFaults({ rate: 1, kinds: [kind], only: 'list' });
  // The worker's Kite client with its defaults (a test client only lifts the rate budget).
  const kite = kiteSourceFromClients(() => clientOf(sim!));
  harness = await startSyncHarness({ kite, targets: [new RecordingTarget('cloud')] });
  const handle = await harness.start(group);

  await waitUntil(
    async () => (await handle.query(statusQuery)).lastCycle?.outcome === 'failed',
    'cycle 1 ran out of fetch attempts',
    600_000
  );
  await handle.signal(disableSignal);
  const failedAt = (await cycleOneFailures(handle)).get('fetchSnapshot');
  expect(failedAt).toBeDefined();
  const [attempts] = await lastAttempts(handle, 'fetchSnapshot');
  const at = sim.control
    .requestLog()
    .filter((e) => e.at <= failedAt! && /\/sim\?/.test(e.path) && /startIndex=0\b/.test(e.path))
    .map((e) => e.at);
  await handle.terminate().catch((err: unknown) => {
    if (!(err instanceof WorkflowFailedError)) throw err;
  });
  return { at, attempts };
}

test(`a Kite list page refused every time (503) is requested once per fetch attempt: at most ${TEMPORAL_ATTEMPTS} times in a cycle`, async () => {
  const { at, attempts } = await refusedKitePage('bound-kite', 'overload');
  expect(attempts).toBe(TEMPORAL_ATTEMPTS); // cycle 1 failed because Temporal ran out of attempts
  expect(at.length).toBeGreaterThan(1); // retried across Temporal's attempts
  // The client does not retry a 503 (nor a 5xx, a timeout or a broken answer): Temporal's attempts are the only layer.
  expect(at.length).toBeLessThanOrEqual(attempts);
  console.log(
    `cycle 1: page 0 requested ${at.length} times in ${attempts} fetch attempts (bound ${TEMPORAL_ATTEMPTS} × 1)`
  );
}, 900_000);

test(`a Kite list page refused every time with 429 is requested at most ${TEMPORAL_ATTEMPTS} × (1 + ${DEFAULT_RATE_LIMIT_RETRIES} re-sends after Retry-After) times in a cycle`, async () => {
  const { at, attempts } = await refusedKitePage('bound-kite-429', 'rate-limit');
  expect(attempts).toBe(TEMPORAL_ATTEMPTS);
  expect(at.length).toBeGreaterThan(attempts); // re-sent within a call, after Kite's Retry-After
  expect(at.length).toBeLessThanOrEqual(attempts * (1 + DEFAULT_RATE_LIMIT_RETRIES));
  // Kite's Retry-After (1 s) holds between any two requests: within a call the client waits for it, and
  // Temporal's first retry interval is 1 s.
  const gaps = at.slice(1).map((t, i) => t - at[i]);
  expect(Math.min(...gaps)).toBeGreaterThanOrEqual(950);
  console.log(
    `cycle 1: page 0 requested ${at.length} times in ${attempts} fetch attempts (bound ${TEMPORAL_ATTEMPTS} × ${1 + DEFAULT_RATE_LIMIT_RETRIES})`
  );
}, 900_000);
