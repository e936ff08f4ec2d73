/**
 * Kite's bad answers on the real workflow, Temporal server, Redis, Kite client and simulator: one SIM's failing
 * presence never stops its group, an inventory answer that is absent or truncated never makes the connector
 * forget SIMs that are still in the group, and a page Kite refuses fails only that fetch attempt, which Temporal
 * retries from the page it stopped at.
 */
import { kiteSourceFromClients } from '../../activities/kite-source';
import type { FaultKind, KiteSimulator } from '../../simulator';
import { syncNowSignal } from '../../workflows/definitions';
import { clientOf, simulator } from '../kite/helpers';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

const GROUPS = ['presence-faults', 'answers', 'vanish', 'resume'];
const SIMS = 50;
let sim: KiteSimulator;
let harness: SyncHarness;
const cloud = new RecordingTarget('cloud');

beforeAll(async () => {
  sim = await simulator({ groups: GROUPS, simsPerGroup: SIMS });
  const kite = kiteSourceFromClients(() => clientOf(sim, { pageSize: 20 }));
  harness = await startSyncHarness({ kite, targets: [cloud] });
});
afterEach(() => sim.control.clearFaults());
afterAll(async () => {
  await harness?.close();
  await sim?.close();
});

test("one SIM's failing presence (404 with only exceptionId, 500, HTML): the rest is published, the SIM counted", async () => {
  const group = 'presence-faults';
  const iccs = sim.control.iccs(group);
  const [bare, crash, html, later] = iccs;
  sim.control.setFaults({ presenceBySim: { [bare]: 'not-found-bare', [crash]: 'server-error', [html]: 'html' } });
  const handle = await harness.start(group);
  const first = await harness.waitForCycles(handle, 1);
  expect(first.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS, invalid: 0 });
  expect(first.lastCycle?.presenceErrors).toEqual({
    'presence-error:SVC.1006': 1,
    'presence-error:SVR.1000': 1,
    'presence-error:BAD_RESPONSE': 1,
  });
  const sent = cloud.drain();
  expect(iccs.filter((icc) => !sent.has(icc))).toEqual([]);
  for (const icc of [bare, crash, html]) expect(sent.get(icc)![0]).not.toHaveProperty('presenceLevel');
  expect(sent.get(later)![0]).toHaveProperty('presenceLevel', sim.control.getPresence(later).level);

  // A SIM with a known presence keeps it while its read fails; the broken ones are read again and, once Kite
  // answers, published with their presence.
  sim.control.setFaults({ presenceBySim: { [later]: 'server-error' } });
  sim.control.setSim(later, { ip: '10.99.0.1' }); // new connectivity hints: its presence is read again
  await handle.signal(syncNowSignal);
  const second = await harness.waitForCycles(handle, 2);
  expect(second.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS });
  expect(second.lastCycle?.presenceErrors).toEqual({ 'presence-error:SVR.1000': 1 });
  const again = cloud.drain();
  expect(Object.keys(again.get(later)?.[0] ?? {})).not.toContain('presenceLevel'); // kept, not nulled
  for (const icc of [bare, crash, html]) expect(again.get(icc)?.[0]).toHaveProperty('presenceLevel');
  await handle.terminate();
});

test.each<FaultKind>(['empty-200', 'no-content', 'error-200', 'short-page'])(
  'a 50-SIM group whose inventory answer is %s once: nothing is forgotten, nothing republished',
  async (kind) => {
    const group = 'answers';
    const handle = await harness.start(group);
    await harness.waitForCycles(handle, 1);
    cloud.drain();
    sim.control.setFaults({ sequence: ['ok', kind], only: 'list' }); // the second page of the next listing
    await handle.signal(syncNowSignal);
    const next = await harness.waitForCycles(handle, 2);
    expect(next.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS, left: 0 });
    expect(cloud.drain().size).toBe(0);
    expect(sim.control.stats().faultsInjected).toBeGreaterThan(0);
    await handle.terminate();
  }
);

test('a small group vanishing from the inventory is held, not forgotten, and the hold says why', async () => {
  const group = 'vanish';
  const iccs = sim.control.iccs(group);
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);
  cloud.drain();
  sim.control.moveToGroup(iccs, null);
  await handle.signal(syncNowSignal);
  const held = await harness.waitForCycles(handle, 2);
  expect(held.lastCycle).toMatchObject({ outcome: 'held', inGroup: 0 });
  expect(held.dropHold).toMatchObject({ missing: 50, known: 50, listed: 0 });
  expect(held.lastCycle?.error).toMatch(/^50 of 50 SIMs missing from Kite's inventory \(it listed 0 of the group/);

  sim.control.moveToGroup(iccs, group);
  await handle.signal(syncNowSignal);
  const back = await harness.waitForCycles(handle, 3);
  expect(back.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS, left: 0 });
  expect(back.dropHold).toBeUndefined(); // the SIMs came back: the hold ended by itself
  expect(cloud.drain().size).toBe(0); // still known: nothing is republished in full
  await handle.terminate();
});

test("a Kite 503 on one page fails the fetch attempt at once, and Temporal's next attempt resumes at that page", async () => {
  const group = 'resume';
  const startedAt = Date.now();
  // The listing's second page (startIndex 20) is refused once: the client does not retry it, Temporal does.
  sim.control.setFaults({ sequence: ['ok', 'overload'], only: 'list' });
  const handle = await harness.start(group);
  const status = await harness.waitForCycles(handle, 1);
  expect(status.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS });
  const listed = sim.control
    .requestLog()
    .filter((e) => e.at >= startedAt && /\/sim\?/.test(e.path))
    .map((e) => Number(/startIndex=(\d+)/.exec(e.path)![1]));
  expect(listed.filter((i) => i === 20)).toHaveLength(2); // refused, then asked again by the next attempt
  expect(listed.filter((i) => i === 0)).toHaveLength(1); // staged by the first attempt: never asked again
  expect(new Set(listed).size).toBe(listed.length - 1); // no other page twice
  const history = (await handle.fetchHistory()).events ?? [];
  const fetch = history.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'fetchSnapshot');
  const started = history.find(
    (e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(fetch!.eventId)
  );
  expect(started?.activityTaskStartedEventAttributes?.attempt).toBe(2); // the fetch, retried once by Temporal
  await handle.terminate();
});
