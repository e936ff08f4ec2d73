/**
 * Fast tier: a SIM whose ICC Kite sends unusable (a number, empty, F-padded, letters) keeps its place under its
 * last known ICC, recognised by its subscriptionId and IMSI: it is not taken for a leaver, its targets keep what
 * they hold, and once its ICC is good again only what changed is published.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type SyncActivities } from '../../activities';
import type { ConfiguredTarget } from '../../activities/publish';
import type { KiteSim } from '../../kite';
import { createLogger } from '../../shared/log';
import { uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { testStore } from '../support/test-store';

const { store, redis, prefix } = testStore('unusable-icc');

function setup() {
  const group = uniqueName('g');
  const kite = new MemoryKite(4);
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

async function cycle(acts: SyncActivities, group: string, n: number) {
  const fetched = await run(acts.fetchSnapshot, { group, cycle: n });
  const diffed = await run(acts.diffSnapshot, { group, cycle: n, targets: ['cloud'] });
  const published = await run(acts.publishChanges, { group, cycle: n, target: 'cloud' });
  return { fetched, diffed, published };
}

const identify = (kite: MemoryKite, iccs: string[]) =>
  iccs.forEach((icc, n) => kite.update(icc, { subscriptionId: String(40_000_000 + n), imsi: `21407${1e9 + n}` }));

/** The cycle's invalid SIMs as staged: filed under which key, for which reason. */
const invalidOf = async (group: string, n: number) => redis.hgetall(`${prefix}:{${group}}:invalid:${n}`);

test('a SIM whose ICC became unusable is filed under its last known ICC, not forgotten, and resumes with a patch', async () => {
  const { group, kite, cloud, acts } = setup();
  const iccs = kite.addSims(group, 10);
  identify(kite, iccs);
  await cycle(acts, group, 1);
  cloud.drain();

  const broken: Record<string, unknown>[] = [
    { icc: Number(iccs[0]) }, // a number: its 20 digits are rounded
    { icc: '' },
    { icc: `${iccs[2]}F` }, // F-padded
    { icc: `${iccs[3].slice(0, -3)}ABC` },
  ];
  broken.forEach((change, n) => kite.update(iccs[n], change as Partial<KiteSim>));
  kite.update(iccs[4], { alias: 'changed-meanwhile' });
  kite.presenceReads.length = 0;
  const second = await cycle(acts, group, 2);
  expect(second.fetched).toMatchObject({ inGroup: 6, invalid: 4, invalidReasons: { 'bad-icc': 4 } });
  expect(kite.presenceReads).toEqual([]); // nothing to address a presence read to
  expect(await invalidOf(group, 2)).toEqual(Object.fromEntries(iccs.slice(0, 4).map((icc) => [icc, 'bad-icc'])));
  expect(second.diffed.left).toBe(0);
  expect(await store.knownCount(group)).toBe(10);
  expect(await store.publishedRecords(group, 'cloud', iccs.slice(0, 4))).toEqual(Array(4).fill(expect.any(String)));
  expect([...cloud.drain().keys()]).toEqual([iccs[4]]);

  // Kite sends the ICCs right again, with a change: only that change goes out, not the whole record.
  iccs.slice(0, 4).forEach((icc) => kite.update(icc, { icc, alias: `${icc}-back` }));
  const third = await cycle(acts, group, 3);
  expect(third.fetched).toMatchObject({ inGroup: 10, invalid: 0 });
  expect(third.diffed.left).toBe(0);
  const sent = cloud.drain();
  expect(sent.size).toBe(4);
  for (const icc of iccs.slice(0, 4)) expect(sent.get(icc)).toEqual([{ alias: `${icc}-back` }]);
});

test('the identity of a SIM known before it was recorded is learnt without a presence read', async () => {
  const { group, kite, acts } = setup();
  const iccs = kite.addSims(group, 6); // no subscriptionId or IMSI: nothing to recognise them by yet
  await cycle(acts, group, 1);
  identify(kite, iccs);
  kite.presenceReads.length = 0;
  await cycle(acts, group, 2);
  expect(kite.presenceReads).toEqual([]);

  kite.update(iccs[5], { icc: undefined });
  const third = await cycle(acts, group, 3);
  expect(await invalidOf(group, 3)).toEqual({ [iccs[5]]: 'bad-icc' });
  expect(third.diffed.left).toBe(0);
});

test('a SIM never seen with a usable ICC is filed under its place in the listing; a leaver drops its identity', async () => {
  const { group, kite, acts } = setup();
  const iccs = kite.addSims(group, 8);
  identify(kite, iccs);
  await cycle(acts, group, 1);
  kite.addSims(group, 1, 100);
  const stranger = [...kite.sims.keys()].at(-1)!;
  kite.update(stranger, { icc: '', subscriptionId: '99' });
  kite.update(iccs[7], { supervisionGroup: 'elsewhere' });
  const second = await cycle(acts, group, 2);
  expect(await invalidOf(group, 2)).toEqual({ '#8': 'bad-icc' });
  expect(second.diffed.left).toBe(1);
  expect(await store.lastKnownIccs(group, ['sub:40000006|imsi:214071000000006'])).toEqual([iccs[6]]);
  // The leaver is forgotten with its identity: if it comes back with an unusable ICC it is a stranger.
  expect(await store.lastKnownIccs(group, ['sub:40000007|imsi:214071000000007'])).toEqual([null]);
});
