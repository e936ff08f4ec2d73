/**
 * Fast tier: which Kite faults fail the fetch and which stay with one SIM. One SIM's failed presence read (a
 * transient fault included: the Kite client does not retry it) is counted and the fetch goes on; a presence
 * service failing for every SIM, Kite unreachable or the certificate refused fail it; an inventory holding none of
 * the group's SIMs holds the diff for approval, not taken as leavers.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import type { ConfiguredTarget } from '../../activities/publish';
import { KiteApiError, type KitePresence } from '../../kite';
import { createLogger } from '../../shared/log';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { testStore } from '../support/test-store';

const { store } = testStore('kite-faults');

/** An in-memory Kite whose presence reads fail with a chosen error for chosen SIMs (or all of them). */
class PresenceFaultKite extends MemoryKite {
  failing: Set<string> | 'all' = new Set();
  fault = () => new KiteApiError({ code: 'SVR.1000', text: 'Generic server error', status: 500 });

  override async presence(icc: string): Promise<KitePresence | undefined> {
    if (this.failing === 'all' || this.failing.has(icc)) {
      this.presenceReads.push(icc);
      throw this.fault();
    }
    return super.presence(icc);
  }
}

function setup() {
  const group = uniqueName('g');
  const kite = new PresenceFaultKite(5);
  const cloud = new RecordingTarget('cloud');
  const acts = createActivities({
    store,
    kite,
    targets: new Map<string, ConfiguredTarget>([['cloud', { target: cloud }]]),
    logger: createLogger({}, { level: 'error' }),
  });
  return { group, kite, cloud, acts };
}

const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run(fn, ...args) as Promise<R>;

test("every presence read failing fails the fetch as Kite's presence outage, retryable", async () => {
  const { group, kite, acts } = setup();
  kite.addSims(group, 12);
  kite.failing = 'all';
  await expect(run(acts.fetchSnapshot, { group, cycle: 1 })).rejects.toMatchObject({
    type: 'KitePresenceOutage',
    nonRetryable: false,
    message: expect.stringMatching(/presence service looks down: 5 presence reads failed and none succeeded/),
  });
});

test('SIMs whose presence failed before do not make an outage again: the fetch completes and counts them', async () => {
  const { group, kite, acts } = setup();
  const iccs = kite.addSims(group, 12);
  const broken = new Set(iccs.filter((_, i) => i % 2 === 1));
  kite.failing = broken;
  const first = await run(acts.fetchSnapshot, { group, cycle: 1 });
  expect(first).toMatchObject({ inGroup: 12, presenceFetched: 6, presenceErrors: { 'presence-error:SVR.1000': 6 } });

  // Next cycle only the broken SIMs are read again (the others' hints did not change), and they fail again.
  kite.presenceReads.length = 0;
  const second = await run(acts.fetchSnapshot, { group, cycle: 2 });
  expect(new Set(kite.presenceReads)).toEqual(broken);
  expect(second).toMatchObject({ inGroup: 12, presenceFetched: 0, presenceErrors: { 'presence-error:SVR.1000': 6 } });
});

// The Kite client re-sends nothing but a 429 (and that only a few times): a transient fault of one SIM's presence
// read now reaches fetch at once, and must stay that SIM's, not fail the fetch (Temporal would re-list the page).
test.each([
  ['a kept-alive connection closed under the read', 'DISCONNECTED', 0],
  ['a timeout', 'TIMEOUT', 0],
  ['Kite overloaded', 'SVR.1006', 503],
  ["a 429 left after the client's Retry-After waits", 'POL.1005', 429],
])(
  "one SIM's transient presence fault (%s) is that SIM's: published with its last known presence, read again next cycle",
  async (_what, code, status) => {
    const { group, kite, cloud, acts } = setup();
    const iccs = kite.addSims(group, 8);
    const cycle = async (n: number) => {
      const fetched = await run(acts.fetchSnapshot, { group, cycle: n });
      await run(acts.diffSnapshot, { group, cycle: n, targets: ['cloud'] });
      await run(acts.publishChanges, { group, cycle: n, target: 'cloud' });
      return fetched;
    };
    await cycle(1);
    cloud.drain();

    const sim = iccs[3];
    kite.update(sim, { ip: '10.9.9.9' }); // new connectivity hints: its presence is read again
    kite.presences.set(sim, { level: 'LTE', timeStamp: '2026-11-26T11:00:00Z', cause: 'ACCOUNTING_RADIUS_START' });
    kite.failing = new Set([sim]);
    kite.fault = () => new KiteApiError({ code, text: 'transient', status });
    const second = await cycle(2);
    expect(second).toMatchObject({ inGroup: 8, presenceErrors: { [`presence-error:${code}`]: 1 } });
    const [patch] = cloud.drain().get(sim)!;
    expect(patch).toMatchObject({ ip: '10.9.9.9' }); // the SIM's other changes are published
    expect(Object.keys(patch)).not.toContain('presenceLevel'); // its last known presence (GPRS) is kept

    kite.failing = new Set();
    kite.presenceReads.length = 0;
    const third = await cycle(3);
    expect(kite.presenceReads).toEqual([sim]); // read again, although its hints did not change since
    expect(third.presenceFetched).toBe(1);
    expect(third.presenceErrors).toEqual({});
    expect(cloud.drain().get(sim)).toEqual([expect.objectContaining({ presenceLevel: 'LTE' })]);
  }
);

test.each([
  ['Kite unreachable', 'NETWORK', 0, { nonRetryable: false }],
  ['the certificate refused', 'SVC.1013', 403, { nonRetryable: true, type: 'KiteAuthError' }],
])('%s on a presence read fails the fetch', async (_what, code, status, expected) => {
  const { group, kite, acts } = setup();
  const iccs = kite.addSims(group, 8);
  kite.failing = new Set([iccs[6]]);
  kite.fault = () => new KiteApiError({ code, text: 'account-wide', status });
  await expect(run(acts.fetchSnapshot, { group, cycle: 1 })).rejects.toMatchObject(expected);
});

test('an inventory holding none of the known SIMs holds the cycle, whatever the group size, and forgets nothing', async () => {
  const { group, kite, acts } = setup();
  kite.addSims(group, 3);
  await run(acts.fetchSnapshot, { group, cycle: 1 });
  await run(acts.diffSnapshot, { group, cycle: 1, targets: ['cloud'] });
  kite.sims.clear(); // Kite answers an empty list
  const fetched = await run(acts.fetchSnapshot, { group, cycle: 2 });
  expect(fetched).toMatchObject({ seen: 0, inGroup: 0 });
  const diffed = await run(acts.diffSnapshot, { group, cycle: 2, targets: ['cloud'] });
  expect(diffed.drop).toEqual({ missing: 3, known: 3, listed: 0, maxLeaveFraction: 0.5 });
  expect(await store.knownCount(group)).toBe(3);
});
