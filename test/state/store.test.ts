/**
 * The state store against the test Redis: the key layout is persisted data (it must not drift without a
 * migration), the group name is checked before it becomes a hash tag, and the domain reads mean what they say.
 */
import { scanKeys } from '../../state/redis';
import { RECORD_KEYS } from '../../record';
import { KEY_CODES } from '../../state/audit-format';
import { InvalidGroupNameError, KEPT, StateStore, type Entry } from '../../state/store';
import { uniqueName } from '../setup/stack';
import { testStore } from '../support/test-store';

const { redis, store, prefix } = testStore('store', { stagingTtlSeconds: 600 });

test('the key layout is the persisted one: cc:{group}:snap|changed|invalid|conn|pub|pending|fail|audit', async () => {
  const group = 'layout-1';
  await store.stagePage(group, 7, {
    records: [['8934', '{"iccid":"8934"}']],
    connectivity: [['8934', '{"h":"x"}']],
    invalid: [['#3', 'bad-icc']],
  });
  await store.writePending(group, 'hook', [['8934', '{"alias":"a"}']], []);
  await store.commitPublished(group, 'hook', [{ iccid: '8934', patch: '{"alias":"a"}', merged: '{"alias":"a"}' }]);
  await store.writePending(group, 'hook', [['8935', '{"alias":"b"}']], []);
  await store.recordFailures(group, 'hook', [{ iccid: '8935', patch: '{"alias":"b"}', reason: 'refused' }]);
  await store.writePending(group, 'hook', [['8936', '{"alias":"c"}']], []);

  const base = `${prefix}:{${group}}:`;
  const keys: string[] = [];
  for await (const batch of scanKeys(redis, `${base}*`)) keys.push(...batch);
  expect(keys.sort()).toEqual(
    ['audit', 'changed:7', 'conn', 'fail:hook', 'invalid:7', 'pending:hook', 'pub:hook', 'snap:7']
      .map((k) => base + k)
      .sort()
  );
  expect(await redis.hget(`${base}snap:7`, '8934')).toBe('{"iccid":"8934"}');
  expect(await redis.ttl(`${base}snap:7`)).toBeGreaterThan(0);
  expect(await redis.smembers(`${base}changed:7`)).toEqual(['8934']);
  expect(await redis.ttl(`${base}changed:7`)).toBeGreaterThan(0);
  expect(await redis.hget(`${base}pub:hook`, '8934')).toBe('[null,"a"]'); // by position: state/record-format.ts
  expect(await store.publishedRecords(group, 'hook', ['8934'])).toEqual(['{"alias":"a"}']);
  expect(JSON.parse((await redis.hget(`${base}fail:hook`, '8935'))!)).toEqual({
    reason: 'refused',
    patch: '{"alias":"b"}',
    at: expect.any(Number),
  });
});

test('a group name that would break the hash tag or a SCAN pattern is refused before any key is touched', async () => {
  for (const bad of ['a}b', 'a{b', 'a:b', '*', 'a*', '', ' a', 'x'.repeat(129)]) {
    await expect(store.knownCount(bad)).rejects.toBeInstanceOf(InvalidGroupNameError);
    await expect(store.dropGroup(bad)).rejects.toThrow(/is invalid/);
  }
  // The error's name is the failure type the workflow does not retry.
  await expect(store.hasPending('a}b', 't')).rejects.toMatchObject({ name: 'InvalidGroupName' });
});

test('lookups return, per target, what it holds and the failed patch; leavers are the known SIMs not seen', async () => {
  const group = uniqueName('reads');
  await store.stagePage(group, 1, {
    records: ['1', '2', '3'].map((i) => [i, `{"iccid":"${i}"}`]),
    connectivity: ['1', '2', '3', '4'].map((i) => [i, '{"h":""}']),
    invalid: [],
  });
  await store.stagePage(group, 2, { records: [['1', '{"iccid":"1"}']], connectivity: [], invalid: [['2', 'bad']] });
  await store.writePending(
    group,
    'a',
    [
      ['1', '{"p":1}'],
      ['2', '{"p":2}'],
    ],
    [],
    { iccids: ['1'], at: 1_700_000_000_000 }
  );
  await store.commitPublished(group, 'a', [{ iccid: '1', patch: '{"p":1}', merged: '{"iccid":"1"}' }]);
  await store.recordFailures(group, 'a', [{ iccid: '2', patch: '{"p":2}', reason: 'no' }]);

  const [a, b] = await store.lookups(group, ['a', 'b'], ['1', '2', '3']);
  expect(a.published).toEqual(['{"iccid":"1"}', null, null]);
  expect(a.failures.map((f) => f?.patch)).toEqual([undefined, '{"p":2}', undefined]);
  expect(a.countersSentAt).toEqual([1_700_000_000_000, undefined, undefined]);
  expect(b).toEqual({
    published: [null, null, null],
    failures: [undefined, undefined, undefined],
    uncertain: [null, null, null],
    countersSentAt: [undefined, undefined, undefined],
  });
  expect(await store.hasPending(group, 'a')).toBe(false);
  expect(await store.failingCount(group, 'a')).toBe(1);
  expect((await store.memberStates(group, ['4', '5'])).connectivity).toEqual(['{"h":""}', null]);

  expect(await store.knownCount(group)).toBe(4);
  // Cycle 2 staged 1 and holds 2 as invalid: 3 and 4 left.
  expect((await store.leavers(group, 2, 1)).sort()).toEqual(['3', '4']);

  await store.forget(group, ['a'], ['1', '2']);
  expect(await store.publishedRecords(group, 'a', ['1'])).toEqual([null]);
  expect((await store.lookups(group, ['a'], ['1']))[0].countersSentAt).toEqual([undefined]);
  expect(await store.failures(group, 'a', ['2'])).toEqual([undefined]);
  await store.dropGroup(group);
  expect(await store.knownCount(group)).toBe(0);
});

test("forget queues the leavers' leftGroup events for their targets in the same transaction", async () => {
  const group = uniqueName('told');
  await store.stagePage(group, 1, {
    records: ['1', '2'].map((i) => [i, `{"iccid":"${i}"}`]),
    connectivity: ['1', '2'].map((i) => [i, '{"h":""}']),
    invalid: [],
  });
  await store.queueEvents(group, ['a'], [{ iccid: '1', baseline: '{"i":"x"}', events: ['{"id":"earlier"}'] }]);
  await store.forget(group, ['a', 'b'], ['1', '2'], [{ iccid: '1', targets: ['a'], event: '{"id":"left"}' }]);
  expect(await store.knownCount(group)).toBe(0);
  expect(await store.eventBaselines(group, ['1'])).toEqual([null]);
  const queued = async (target: string) => {
    const out: [string, string][] = [];
    for await (const page of store.scanEvents(group, target)) out.push(...page);
    return out;
  };
  expect(await queued('a')).toEqual([['1', '[{"id":"earlier"},{"id":"left"}]']]);
  expect(await queued('b')).toEqual([]);
  await store.dropGroup(group);
});

test('the audit trail keeps, per SIM and newest first, what each target acknowledged or refused, capped', async () => {
  const group = uniqueName('audit');
  const capped = new StateStore(redis, { prefix, auditEntriesPerSim: 3 });
  const publish = async (target: string, iccid: string, patch: string) => {
    await capped.writePending(group, target, [[iccid, patch]], []);
    expect(await capped.commitPublished(group, target, [{ iccid, patch, merged: patch }])).toBe(1);
  };
  await publish('mqtt', '1', '{"alias":"a","ip":"10.0.0.1"}');
  await publish('hook', '1', '{"alias":"a","ip":"10.0.0.1"}');
  await publish('mqtt', '1', '{"ip":null}');
  await capped.writePending(group, 'hook', [['1', '{"ip":null}']], []);
  await capped.recordFailures(group, 'hook', [{ iccid: '1', patch: '{"ip":null}', reason: 'HTTP 400: bad "ip"' }]);
  await publish('mqtt', '2', '{"alias":"b"}');

  const trail = await capped.auditTrail(group, '1');
  expect(trail).toEqual([
    { at: expect.any(Number), target: 'hook', failed: 'HTTP 400: bad "ip"' },
    { at: expect.any(Number), target: 'mqtt', published: { ip: null } },
    { at: expect.any(Number), target: 'hook', published: { alias: 'a', ip: '10.0.0.1' }, full: true },
  ]); // the 4th entry, the first publish to mqtt, fell off the cap of 3
  expect(trail.map((e) => e.at)).toEqual([...trail.map((e) => e.at)].sort((a, b) => b - a));
  expect(await capped.auditTrail(group, '2')).toEqual([
    { at: expect.any(Number), target: 'mqtt', published: { alias: 'b' }, full: true },
  ]);
  // A commit that no longer matches the pending patch is no publish, and leaves no entry.
  expect(await capped.commitPublished(group, 'mqtt', [{ iccid: '2', patch: '{"x":1}', merged: '{}' }])).toBe(0);
  expect(await capped.auditTrail(group, '2')).toHaveLength(1);
  // A SIM that leaves the group loses its trail with the rest of its state.
  await capped.forget(group, ['mqtt', 'hook'], ['1']);
  expect(await capped.auditTrail(group, '1')).toEqual([]);
});

test('audit entries older than the maximum age are dropped, on write and on read', async () => {
  const group = uniqueName('audit-age');
  const base = `${prefix}:{${group}}:`;
  const old = Date.now() - 3 * 86_400_000;
  await redis.hset(`${base}audit`, '1', `{"at":${old},"target":"mqtt","published":{"alias":"old"}}`);
  const store2d = new StateStore(redis, { prefix, auditMaxAgeDays: 2 });
  expect(await store2d.auditTrail(group, '1')).toEqual([]);
  await store2d.writePending(group, 'mqtt', [['1', '{"alias":"new"}']], []);
  await store2d.commitPublished(group, 'mqtt', [{ iccid: '1', patch: '{"alias":"new"}', merged: '{}' }]);
  expect((await redis.hget(`${base}audit`, '1'))!.split('\n')).toHaveLength(1);
  expect(await new StateStore(redis, { prefix }).auditTrail(group, '1')).toEqual([
    { at: expect.any(Number), target: 'mqtt', published: { alias: 'new' }, full: true },
  ]);
});

test('the audit trail is stored compactly: short keys and a short head, and reads back exactly', async () => {
  const group = uniqueName('audit-compact');
  const base = `${prefix}:{${group}}:`;
  const record = {
    iccid: '8934071100000000001',
    alias: 'meter "7"\nfloor 2',
    imei: '356938035643809',
    commsModModel: 'BG96',
    commsModManufacturer: 'Quectel',
    lifeCycleStatus: 'ACTIVE',
    activationDate: 1764500000000,
    country: 'ES',
    operator: 'Movistar',
    apn: 'm2m.movistar.es',
    ip: '10.1.2.3',
    presenceLevel: 'IP_SESSION',
    event: 'PDP_CONTEXT_ACTIVATED',
    timestamp: 1764500001234,
    Latitude: 40.4168,
    Longitude: -3.7038,
    dailyVoice: 0,
    dailySMS: 2,
    dailyData: 1234.5,
  };
  const patch = JSON.stringify(record);
  await store.writePending(group, 'mqtt', [['1', patch]], []);
  await store.commitPublished(group, 'mqtt', [{ iccid: '1', patch, merged: patch }]);
  const odd = '{"dailyData":null,"x":1,"5":"five"}'; // a removed key, and keys the code table does not know
  await store.writePending(group, 'mqtt', [['1', odd]], []);
  await store.commitPublished(group, 'mqtt', [{ iccid: '1', patch: odd, merged: patch }]);

  expect(await store.auditTrail(group, '1')).toEqual([
    { at: expect.any(Number), target: 'mqtt', published: { dailyData: null, x: 1, 5: 'five' } },
    { at: expect.any(Number), target: 'mqtt', published: record, full: true },
  ]);
  const [fullLine] = (await redis.hget(`${base}audit`, '1'))!.split('\n').reverse();
  // The old form was the record itself plus {"at":…,"target":…,"published":…,"full":true}: 62 bytes more.
  expect(fullLine.length).toBeLessThan(0.7 * (patch.length + 62));
});

test('audit lines written before the compact form are still read, kept and aged', async () => {
  const group = uniqueName('audit-legacy');
  const base = `${prefix}:{${group}}:`;
  const recent = Date.now() - 60_000;
  await redis.hset(
    `${base}audit`,
    '1',
    [
      `{"at":${recent},"target":"hook","failed":"HTTP 400"}`,
      `{"at":${recent - 1},"target":"hook","published":{"alias":"a"},"full":true}`,
    ].join('\n')
  );
  await store.writePending(group, 'hook', [['1', '{"alias":"b"}']], []);
  await store.commitPublished(group, 'hook', [{ iccid: '1', patch: '{"alias":"b"}', merged: '{"alias":"b"}' }]);
  expect(await store.auditTrail(group, '1')).toEqual([
    { at: expect.any(Number), target: 'hook', published: { alias: 'b' }, full: true },
    { at: recent, target: 'hook', failed: 'HTTP 400' },
    { at: recent - 1, target: 'hook', published: { alias: 'a' }, full: true },
  ]);
});

test("the audit trail's key codes are persisted: the record's keys, in the record's order, then only appended", () => {
  expect(KEY_CODES.slice(0, RECORD_KEYS.length)).toEqual([...RECORD_KEYS]);
  expect(KEY_CODES.length).toBeLessThanOrEqual(36); // one base-36 character each
});

/** A full record as the mapping makes it, in contract order. */
const FULL_RECORD = {
  iccid: '8934071100000000001',
  alias: 'meter "7"\nfloor 2 ✓',
  imei: '356938035643809',
  commsModModel: 'BG96',
  commsModManufacturer: 'Quectel',
  lifeCycleStatus: 'ACTIVE',
  activationDate: '2025-01-02T03:04:05.000Z',
  country: 'ES',
  operator: 'Movistar',
  apn: 'm2m.movistar.es',
  ip: '10.1.2.3',
  presenceLevel: 'IP_SESSION',
  event: 'PDP_CONTEXT_ACTIVATED',
  timestamp: '2026-11-30T12:00:00.000Z',
  Latitude: 40.4168,
  Longitude: -3.7038,
  dailyVoice: 0,
  dailySMS: 2,
  dailyData: 1234.5,
};

test('what a target holds is stored by position, without key names or the ICC twice, and reads back exactly', async () => {
  const group = uniqueName('packed');
  const base = `${prefix}:{${group}}:`;
  const icc = FULL_RECORD.iccid;
  const json = JSON.stringify(FULL_RECORD);
  const { Latitude: _, Longitude: __, ...noLocation } = FULL_RECORD;
  const sparse = JSON.stringify({ ...noLocation, iccid: '8934071100000000002' });
  await store.writePending(
    group,
    'mqtt',
    [
      [icc, json],
      ['8934071100000000002', sparse],
    ],
    []
  );
  await store.commitPublished(group, 'mqtt', [
    { iccid: icc, patch: json, merged: json },
    { iccid: '8934071100000000002', patch: sparse, merged: sparse },
  ]);
  const stored = (await redis.hget(`${base}pub:mqtt`, icc))!;
  expect(stored.startsWith('[0,"meter')).toBe(true);
  expect(stored.length).toBeLessThan(0.6 * json.length);
  expect(await redis.hget(`${base}pub:mqtt`, '8934071100000000002')).toContain(
    '"2026-11-30T12:00:00.000Z",null,null,0,2,1234.5]'
  );
  // Every read gives the canonical JSON back, byte for byte: the diff compares records as strings.
  expect(await store.publishedRecords(group, 'mqtt', [icc, '8934071100000000002', '3'])).toEqual([json, sparse, null]);
  const [lookup] = await store.lookups(group, ['mqtt'], [icc]);
  expect(lookup.published).toEqual([json]);
  expect((await store.simState(group, icc, [], ['mqtt'])).targets.mqtt.published).toBe(json);
  // The first publish goes to the audit trail as "what the target holds", and reads back as the record.
  expect((await redis.hget(`${base}audit`, icc))!).toMatch(/^\["\w+","H","mqtt",0\]$/);
  expect(await store.auditTrail(group, icc)).toEqual([
    { at: expect.any(Number), target: 'mqtt', published: FULL_RECORD, full: true },
  ]);
});

test('a full publish in the trail stands for what the target holds until it changes, then holds the record itself', async () => {
  const group = uniqueName('held');
  const base = `${prefix}:{${group}}:`;
  const [a, b, c] = ['8934071100000000011', '8934071100000000012', '8934071100000000013'];
  const recordOf = (iccid: string, alias: string) => JSON.stringify({ ...FULL_RECORD, iccid, alias });
  for (const target of ['mqtt', 'hook']) {
    for (const icc of [a, b, c]) {
      const json = recordOf(icc, 'first');
      await store.writePending(group, target, [[icc, json]], []);
      await store.commitPublished(group, target, [{ iccid: icc, patch: json, merged: json }]);
    }
  }
  const full = (icc: string, target: string) => ({
    at: expect.any(Number),
    target,
    published: JSON.parse(recordOf(icc, 'first')),
    full: true,
  });
  // A patch to mqtt: mqtt's entry takes the record it stood for; hook's still stands for what hook holds.
  await store.writePending(group, 'mqtt', [[a, '{"alias":"second"}']], []);
  await store.commitPublished(group, 'mqtt', [
    { iccid: a, patch: '{"alias":"second"}', merged: recordOf(a, 'second') },
  ]);
  const lines = (await redis.hget(`${base}audit`, a))!.split('\n');
  expect(lines.map((line) => JSON.parse(line)[1])).toEqual(['P', 'H', 'R']);
  expect(await store.auditTrail(group, a)).toEqual([
    { at: expect.any(Number), target: 'mqtt', published: { alias: 'second' } },
    full(a, 'hook'),
    full(a, 'mqtt'),
  ]);
  // A resync forgets what the target holds: the entries take their records first, for some SIMs or for all.
  await store.forgetPublished(group, 'hook', [b]);
  expect((await redis.hget(`${base}audit`, b))!.split('\n').map((line) => JSON.parse(line)[1])).toEqual(['R', 'H']);
  expect(await store.auditTrail(group, b)).toEqual([full(b, 'hook'), full(b, 'mqtt')]);
  expect(await store.forgetPublished(group, 'mqtt')).toBe(3);
  expect(await redis.exists(`${base}pub:mqtt`)).toBe(0);
  expect(await store.auditTrail(group, c)).toEqual([full(c, 'hook'), full(c, 'mqtt')]);
  expect((await redis.hget(`${base}audit`, c))!.split('\n').map((line) => JSON.parse(line)[1])).toEqual(['H', 'R']);
  expect(await store.auditTrail(group, a)).toEqual([
    { at: expect.any(Number), target: 'mqtt', published: { alias: 'second' } },
    full(a, 'hook'),
    full(a, 'mqtt'),
  ]);
});

test('records the positional form cannot hold exactly are stored as canonical JSON, the form before, and read back', async () => {
  const group = uniqueName('unpacked');
  const base = `${prefix}:{${group}}:`;
  const odd = [
    '{"iccid":"1","extra":1}', // a key outside the table
    '{"alias":"a","iccid":"1"}', // out of contract order
    '{"iccid":"1","alias":{"nested":true}}', // a nested value
    '{"iccid":"1","alias":null}', // a null value (a record has none: absent keys are left out)
    '{}',
  ];
  for (const [i, json] of odd.entries()) {
    await store.writePending(group, 'hook', [[String(i), json]], []);
    await store.commitPublished(group, 'hook', [{ iccid: String(i), patch: json, merged: json }]);
  }
  const ids = odd.map((_, i) => String(i));
  expect(await store.publishedRecords(group, 'hook', ids)).toEqual(odd);
  expect(await redis.hmget(`${base}pub:hook`, ...ids)).toEqual([...odd.slice(0, 4), '[]']);
});

test('values are stored as the canonical JSON wrote them: escapes, numbers and strings that look like JSON', async () => {
  const group = uniqueName('tokens');
  const records = [
    '{"iccid":"1","alias":"\\u00e9 \\"q\\" , ] } [ { \\\\","imei":"0","dailyData":1e+21}',
    '{"iccid":"2","alias":"","Latitude":-0.5,"Longitude":12,"dailyVoice":0}',
    '{"alias":"[0]","iccid":"3"}', // another key order: stored as it is
    '{"iccid":"x4","alias":"a"}', // an ICC other than the field's
  ];
  for (const [i, json] of records.entries()) {
    const iccid = String(i + 1);
    await store.writePending(group, 'hook', [[iccid, json]], []);
    await store.commitPublished(group, 'hook', [{ iccid, patch: json, merged: json }]);
  }
  expect(await store.publishedRecords(group, 'hook', ['1', '2', '3', '4'])).toEqual(records);
  expect(await redis.hget(`${prefix}:{${group}}:pub:hook`, '4')).toBe('["x4","a"]');
  expect(await redis.hget(`${prefix}:{${group}}:pub:hook`, '2')).toBe(
    '[0,"",null,null,null,null,null,null,null,null,null,null,null,null,-0.5,12,0]'
  );
});

test('a deployment with records of the old form keeps working: read as they are, rewritten by the next publish', async () => {
  const group = uniqueName('old-pub');
  const base = `${prefix}:{${group}}:`;
  const json = JSON.stringify(FULL_RECORD);
  const icc = FULL_RECORD.iccid;
  await redis.hset(`${base}pub:mqtt`, icc, json); // as every worker before the positional form wrote it
  expect(await store.publishedRecords(group, 'mqtt', [icc])).toEqual([json]);
  expect((await store.lookups(group, ['mqtt'], [icc]))[0].published).toEqual([json]);
  const changed = JSON.stringify({ ...FULL_RECORD, alias: 'renamed' });
  await store.writePending(group, 'mqtt', [[icc, '{"alias":"renamed"}']], []);
  await store.commitPublished(group, 'mqtt', [{ iccid: icc, patch: '{"alias":"renamed"}', merged: changed }]);
  expect((await redis.hget(`${base}pub:mqtt`, icc))!.startsWith('[0,"renamed"')).toBe(true);
  expect(await store.publishedRecords(group, 'mqtt', [icc])).toEqual([changed]);
  // A patch publish stays a patch in the trail, with short keys.
  expect(await store.auditTrail(group, icc)).toEqual([
    { at: expect.any(Number), target: 'mqtt', published: { alias: 'renamed' } },
  ]);
});

test("a cycle's snapshot is dropped once diffed; memory per key family names each family once", async () => {
  const group = uniqueName('families');
  await store.stagePage(group, 3, {
    records: [['1', '{"iccid":"1"}']],
    connectivity: [['1', '{"h":"x"}']],
    invalid: [['2', 'bad-icc']],
  });
  await store.writePending(group, 'hook', [['1', '{"iccid":"1"}']], []);
  await store.commitPublished(group, 'hook', [{ iccid: '1', patch: '{"iccid":"1"}', merged: '{"iccid":"1"}' }]);
  const families = await store.memoryByFamily(group);
  expect(Object.keys(families).sort()).toEqual(['audit', 'changed', 'conn', 'invalid', 'pub:hook', 'snap']);
  for (const bytes of Object.values(families)) expect(bytes).toBeGreaterThan(0);
  await store.dropSnapshot(group, 3);
  expect(await store.snapshotCount(group, 3)).toBe(0);
  expect(Object.keys(await store.memoryByFamily(group)).sort()).toEqual(['audit', 'conn', 'invalid', 'pub:hook']);
});

test("a snapshot's records are read without its KEPT SIMs once the fetch recorded its staging indexed", async () => {
  const group = uniqueName('indexed');
  await store.stagePage(group, 4, {
    records: [['1', '{"iccid":"1"}']],
    kept: ['2', '3'],
    connectivity: ['1', '2', '3'].map((i) => [i, '{"h":"x"}']),
    invalid: [],
  });
  // A fetch from before the index records nothing: the diff must scan the snapshot.
  expect(await store.stagingIndexed(group, 4)).toBeUndefined();
  await store.recordStagingIndexed(group, 4, true);
  expect(await store.stagingIndexed(group, 4)).toEqual({ everyStagedKnown: true });
  expect(await redis.ttl(`${prefix}:{${group}}:indexed:4`)).toBeGreaterThan(0); // never left behind
  const read: Entry[] = [];
  for await (const batch of store.scanStagedRecords(group, 4, 1)) read.push(...batch);
  expect(read).toEqual([['1', '{"iccid":"1"}']]);
  await store.dropSnapshot(group, 4);
  expect(await store.stagingIndexed(group, 4)).toBeUndefined();
  for await (const batch of store.scanStagedRecords(group, 4)) expect(batch).toEqual([]);
  await store.dropGroup(group);
});

test("a page of kept SIMs is staged as one argument, in chunks past Lua's unpack limit; an ICC that cannot be packed is refused whole", async () => {
  const group = uniqueName('kept');
  const kept = Array.from({ length: 4500 }, (_, i) => `89340700${String(i).padStart(11, '0')}`);
  await store.stagePage(group, 2, { records: [], kept, connectivity: [], invalid: [] });
  expect(await store.snapshotCount(group, 2)).toBe(4500);
  expect(await redis.hget(`${prefix}:{${group}}:snap:2`, kept[4499])).toBe(KEPT);
  expect(await redis.ttl(`${prefix}:{${group}}:snap:2`)).toBeGreaterThan(0);
  for (const bad of ['89,34', '']) {
    await expect(
      store.stagePage(group, 3, { records: [], kept: ['8934', bad], connectivity: [], invalid: [] })
    ).rejects.toThrow(`the state store cannot take the ICC ${JSON.stringify(bad)}`);
  }
  expect(await store.snapshotCount(group, 3)).toBe(0);
  await store.dropGroup(group);
});

test('leavers are counted, not listed, only when every staged SIM has conn; else each known SIM is checked', async () => {
  const group = uniqueName('counted');
  // Known: 1..4. Cycle 5 stages 1 (record), 2 (KEPT), 3 as invalid and 9, a record without conn. 4 left.
  await store.stagePage(group, 5, {
    records: [['1', '{"iccid":"1"}']],
    kept: ['2'],
    connectivity: ['1', '2', '3', '4'].map((i) => [i, '{"h":"x"}']),
    invalid: [['3', 'bad']],
  });
  await store.recordStagingIndexed(group, 5, true);
  expect(await store.leavers(group, 5)).toEqual(['4']);
  await store.stagePage(group, 5, { records: [['9', '{"iccid":"9"}']], connectivity: [], invalid: [] });
  // Counting would take 9 for 4 (4 known, 3 staged + 1 invalid): the fetch said a staged SIM has no conn.
  await store.recordStagingIndexed(group, 5, false);
  expect(await store.leavers(group, 5)).toEqual(['4']);
  // Once 4 is staged, nobody left, and the count says so without a scan.
  await store.stagePage(group, 5, { records: [], kept: ['4'], connectivity: [['9', '{"h":"x"}']], invalid: [] });
  await store.recordStagingIndexed(group, 5, true);
  const scans = jest.spyOn(redis as unknown as { ccLeaversPage: () => Promise<string[]> }, 'ccLeaversPage');
  expect(await store.leavers(group, 5)).toEqual([]);
  expect(scans).not.toHaveBeenCalled();
  scans.mockRestore();
  await store.dropStaging(group, 5);
  expect(await store.stagingIndexed(group, 5)).toBeUndefined();
  await store.dropGroup(group);
});

test('settled SIMs are marked in conn, not in a hash of their own; a resync of all SIMs clears every mark', async () => {
  const group = uniqueName('settled');
  const base = `${prefix}:{${group}}:`;
  await store.stagePage(group, 1, {
    records: ['1', '2', '3'].map((i) => [i, `{"iccid":"${i}"}`]),
    connectivity: ['1', '2', '3'].map((i) => [i, `{"h":"${i}"}`]),
    invalid: [],
  });
  await store.recordSettled(group, ['1', '2', '4'], ['3']); // 4 has no conn: it stays unsettled
  expect(await store.settledSims(group, ['1', '2', '3', '4'])).toEqual([true, true, false, false]);
  expect(await redis.exists(`${base}settled`)).toBe(0);
  expect(await redis.hget(`${base}conn`, '1')).toBe('{"h":"1"}\x1e0');
  // Readers of conn see what fetch wrote, without the mark.
  expect((await store.memberStates(group, ['1', '3'])).connectivity).toEqual(['{"h":"1"}', '{"h":"3"}']);
  // A SIM staged again with a record is no longer settled; so is one whose conn the fetch rewrites.
  await store.stagePage(group, 2, {
    records: [['2', '{"iccid":"2"}']],
    connectivity: [['1', '{"h":"1b"}']],
    invalid: [],
    kept: ['1'],
    unsettled: ['2'],
  });
  expect(await store.settledSims(group, ['1', '2'])).toEqual([false, false]);
  await store.recordSettled(group, ['1', '2', '3'], []);
  await store.recordSettled(group, ['3'], []); // marking twice keeps one mark
  expect(await redis.hget(`${base}conn`, '3')).toBe('{"h":"3"}\x1e0');
  await store.forgetPublished(group, 'hook', ['1']);
  expect(await store.settledSims(group, ['1', '2', '3'])).toEqual([false, true, true]);
  await store.forgetPublished(group, 'hook');
  expect(await store.settledSims(group, ['1', '2', '3'])).toEqual([false, false, false]);
  await store.recordSettled(group, ['2'], []);
  expect(await store.settledSims(group, ['1', '2', '3'])).toEqual([false, true, false]);
  await store.forget(group, ['hook'], ['2']);
  expect((await store.memberStates(group, ['2'])).connectivity).toEqual([null]);
});

test('settled SIMs recorded in the old form (a settled hash) are still read, and the next diff moves them to conn', async () => {
  const group = uniqueName('settled-old');
  const base = `${prefix}:{${group}}:`;
  await store.stagePage(group, 1, {
    records: [],
    connectivity: ['1', '2', '3'].map((i) => [i, `{"h":"${i}","i":"sub:${i}|imsi:"}`]),
    invalid: [],
    identities: ['1', '2', '3'].map((i) => [`sub:${i}|imsi:`, i]),
  });
  await redis.hset(`${base}settled`, '1', '1', '2', '1'); // as workers before the marks wrote it
  expect(await store.settledSims(group, ['1', '2', '3'])).toEqual([true, true, false]);
  // A fetch that stages 2 with a record unsettles it in either form.
  await store.stagePage(group, 2, { records: [['2', '{}']], connectivity: [], invalid: [], unsettled: ['2'] });
  expect(await store.settledSims(group, ['1', '2', '3'])).toEqual([true, false, false]);
  await store.recordSettledFor(group, ['hook']);
  expect(await redis.exists(`${base}settled`)).toBe(0);
  expect(await store.settledSims(group, ['1', '2', '3'])).toEqual([true, false, false]);
  expect(await store.settledFor(group)).toEqual(['hook']);
  // Leavers' identities are still found through their conn entry, marked or not.
  await store.forget(group, ['hook'], ['1', '3']);
  expect(await store.lastKnownIccs(group, ['sub:1|imsi:', 'sub:2|imsi:', 'sub:3|imsi:'])).toEqual([null, '2', null]);
});

test("when a SIM's counters last went out is kept on what its target holds; the old form's counters hash is still read", async () => {
  const group = uniqueName('counters');
  const base = `${prefix}:{${group}}:`;
  // Released before the target holds the SIM: kept aside until the commit, which moves it onto pub.
  await store.writePending(group, 'hook', [['1', '{"iccid":"1","dailyData":5}']], [], { iccids: ['1'], at: 1_000 });
  expect((await store.lookups(group, ['hook'], ['1']))[0].countersSentAt).toEqual([1_000]);
  const merged = '{"iccid":"1","dailyData":5}';
  await store.commitPublished(group, 'hook', [{ iccid: '1', patch: merged, merged }]);
  expect(await redis.exists(`${base}counters:hook`)).toBe(0);
  expect(await redis.hget(`${base}pub:hook`, '1')).toBe(
    '[0,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,5]\x1e1000'
  );
  // A later release rewrites the time on pub; a commit keeps it; the record reads back without it.
  await store.writePending(group, 'hook', [['1', '{"dailyData":6}']], [], { iccids: ['1'], at: 2_000 });
  const next = '{"iccid":"1","dailyData":6}';
  await store.commitPublished(group, 'hook', [{ iccid: '1', patch: '{"dailyData":6}', merged: next }]);
  const [lookup] = await store.lookups(group, ['hook'], ['1']);
  expect(lookup).toMatchObject({ published: [next], countersSentAt: [2_000] });
  expect(await store.publishedRecords(group, 'hook', ['1'])).toEqual([next]);
  expect((await store.simState(group, '1', [], ['hook'])).targets.hook.published).toBe(next);
  expect(await store.auditTrail(group, '1')).toHaveLength(2);

  // State of workers before: the record as canonical JSON, the time in counters:<target>.
  await redis.hset(`${base}pub:hook`, '2', '{"iccid":"2","dailyData":1}');
  await redis.hset(`${base}counters:hook`, '2', '3000');
  expect((await store.lookups(group, ['hook'], ['2']))[0]).toMatchObject({
    published: ['{"iccid":"2","dailyData":1}'],
    countersSentAt: [3_000],
  });
  await store.writePending(group, 'hook', [['2', '{"alias":"x"}']], []);
  const renamed = '{"iccid":"2","alias":"x","dailyData":1}';
  await store.commitPublished(group, 'hook', [{ iccid: '2', patch: '{"alias":"x"}', merged: renamed }]);
  expect(await redis.exists(`${base}counters:hook`)).toBe(0);
  expect((await store.lookups(group, ['hook'], ['2']))[0]).toMatchObject({
    published: [renamed],
    countersSentAt: [3_000],
  });
});
