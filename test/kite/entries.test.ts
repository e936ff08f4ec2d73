import { readFileSync } from 'node:fs';
import path from 'node:path';
import { entriesOfSims, splitListAnswer, type KiteEntries } from '../../kite/entries';
import type { KiteSim } from '../../kite';

const seed = (
  JSON.parse(readFileSync(path.join(__dirname, '../fixtures/kite/seed-sim.json'), 'utf8')) as { sim: KiteSim }
).sim;
const where = 'GET sim?startIndex=0';
const split = (text: string) => splitListAnswer(Buffer.from(text), where);

describe('splitListAnswer', () => {
  it('finds every entry of a list answer, each parsing as JSON.parse parses the whole answer', () => {
    const sims: unknown[] = [
      seed,
      {
        ...seed,
        icc: '8934070000000000002',
        alias: 'quote " and \\ and ü and \u2028',
        nested: { icc: 'x', a: [1, { b: '}' }] },
      },
      { icc: '8934070000000000003', supervisionGroup: 'other' },
      {},
      [1, 2],
      'text',
      42,
      null,
    ];
    for (const text of [
      JSON.stringify({ subscriptionData: sims }),
      JSON.stringify({ subscriptionData: sims }, null, 2),
    ]) {
      const entries = split(text)!;
      expect(entries).toBeDefined();
      expect(entries.length).toBe(sims.length);
      expect(entries.all()).toEqual((JSON.parse(text) as { subscriptionData: unknown[] }).subscriptionData);
    }
  });

  it("peeks a plain group and ICC at the entry's top level only, and leaves anything else to parsing", () => {
    const text = JSON.stringify({
      subscriptionData: [
        { icc: '8934070000000000001', supervisionGroup: 'fleet', nested: { icc: 'inner', supervisionGroup: 'x' } },
        { supervisionGroup: 'fleet' },
        { icc: '89340700000000000\\03', supervisionGroup: 'fleet' }, // an escape: parsing tells
        { icc: 8934070000000000004, supervisionGroup: 'fleet' }, // a number
        { icc: '8934070000000000005', supervisionGroup: null },
        { supervisionGroup: 'a', icc: '8934070000000000006', supervisionGroup2: 'b' },
        [1],
      ],
    });
    const entries = split(text)!;
    expect([...Array(entries.length).keys()].map((i) => entries.peek(i))).toEqual([
      { group: 'fleet', icc: '8934070000000000001' },
      { group: 'fleet', icc: undefined },
      undefined,
      undefined,
      undefined,
      { group: 'a', icc: '8934070000000000006' },
      undefined,
    ]);
  });

  it('takes the last of duplicate keys, as JSON.parse does, and does not trust a key written with escapes', () => {
    const dup = split('{"subscriptionData":[{"supervisionGroup":"a","icc":"1","supervisionGroup":"b"}]}')!;
    expect(dup.peek(0)).toEqual({ group: 'b', icc: '1' });
    expect(dup.sim(0).supervisionGroup).toBe('b');
    const escapedKey = split('{"subscriptionData":[{"supervisionGroup":"a","supervision\\u0047roup":"b"}]}')!;
    expect(escapedKey.peek(0)).toBeUndefined();
    expect(escapedKey.sim(0).supervisionGroup).toBe('b');
  });

  it('hashes each entry over its bytes: equal entries hash equal, a changed byte changes the hash', () => {
    const a = { ...seed, alias: 'one' };
    const b = { ...seed, alias: 'two' };
    const entries = split(JSON.stringify({ subscriptionData: [a, b, a] }))!;
    expect(entries.hash(0)).toBe(entries.hash(2));
    expect(entries.hash(0)).not.toBe(entries.hash(1));
    expect(entries.hash(0)).toMatch(/^[\w-]{11}$/);
    // For Kite's compact JSON the raw hash is the one a parsed page gives: no remap when a page falls back.
    expect(entriesOfSims([a]).hash(0)).toBe(entries.hash(0));
  });

  it('splits an empty list and an empty answer', () => {
    expect(split('{"subscriptionData":[]}')!.length).toBe(0);
    expect(split(' { } ')!.length).toBe(0);
  });

  it('leaves every other shape to the whole-answer parse, which names what is wrong', () => {
    for (const text of [
      '',
      '[]',
      '{"subscriptionData":{"icc":"1"}}', // an XML bridge's unwrapped single SIM
      '{"ClientException":{"exceptionId":"SVC.1006"}}',
      '{"subscriptionData":[],"more":1}',
      '{"subscriptionData":[{"icc":"1"}',
      '{"subscriptionData":[{"icc":"1"}]',
      '{"subscriptionData":[{"icc":"1"} {"icc":"2"}]}',
      '{"subscriptionData":[{"icc":"1"]}]}',
      '{"subscriptionData":[{"icc":"1}]}',
      '{"subscriptionData":[{"icc":"1"}]}x',
      '{"subscriptionData":[{"icc" "1"}]}',
      '<html></html>',
    ]) {
      expect([text, split(text)]).toEqual([text, undefined]);
    }
  });

  it('fails a malformed entry only when it is parsed, with BAD_RESPONSE and where', () => {
    const entries = split('{"subscriptionData":[{"icc":"1","supervisionGroup":"other","x":tru},{"icc":"2"}]}')!;
    expect(entries.peek(0)).toEqual({ group: 'other', icc: '1' });
    expect(entries.sim(1)).toEqual({ icc: '2' });
    let error: unknown;
    try {
      entries.sim(0);
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({
      code: 'BAD_RESPONSE',
      message: expect.stringContaining(`${where}: SIM 0 of the page`),
    });
  });

  it("splits a page with the same page's last shape as it splits it without, whatever changed in between", () => {
    const page = (sims: unknown[]) => Buffer.from(JSON.stringify({ subscriptionData: sims }));
    const base = Array.from({ length: 12 }, (_, n) => ({
      ...seed,
      icc: `89340700000000000${String(n).padStart(2, '0')}`,
    }));
    const { shape } = splitListAnswer(page(base), where)!;
    const changed = structuredClone(base) as Record<string, unknown>[];
    changed[1].alias = 'a much longer alias than before'; // shifts every later entry
    changed[3].alias = String(base[3].alias).replace(/./, 'x'); // same length, other bytes
    changed[5] = { ...changed[5], icc: 42 }; // an ICC only parsing tells
    changed.splice(8, 1); // a SIM gone: every later entry is another SIM at its index
    changed.push({ ...seed, icc: '8934070000000000099', supervisionGroup: 'other' });
    const observe = (e: KiteEntries) =>
      Array.from({ length: e.length }, (_, n) => [e.text(n), e.peek(n), e.hash(n), e.sim(n)]);
    expect(observe(splitListAnswer(page(changed), where, shape)!)).toEqual(
      observe(splitListAnswer(page(changed), where)!)
    );
    expect(observe(splitListAnswer(page(base), where, shape)!)).toEqual(observe(splitListAnswer(page(base), where)!));
  });

  it('splits pages longer than it first makes room for, with or without a shorter hint', () => {
    const sims = Array.from({ length: 2_500 }, (_, n) => ({
      ...seed,
      icc: `89340700000000${String(n).padStart(5, '0')}`,
      supervisionGroup: n % 3 ? 'fleet' : 'other',
    }));
    const text = (list: unknown[]) => Buffer.from(JSON.stringify({ subscriptionData: list }));
    // A page parsed whole peeks nothing; a split one tells each entry's group and ICC.
    const observe = (e: KiteEntries) =>
      Array.from({ length: e.length }, (_, n) => [e.text(n), e.peek(n) ?? peekOf(e.sim(n)), e.hash(n), e.sim(n)]);
    const peekOf = (sim: KiteSim) => ({ group: sim.supervisionGroup, icc: sim.icc });
    const parsed = observe(entriesOfSims(sims));
    const whole = splitListAnswer(text(sims), where)!;
    expect(observe(whole)).toEqual(parsed);
    expect([whole.shape.count, whole.shape.layout.length, whole.shape.digests.length]).toEqual([2_500, 12_500, 2_500]);
    const { shape: short } = splitListAnswer(text(sims.slice(0, 10)), where)!;
    expect(observe(splitListAnswer(text(sims), where, short)!)).toEqual(parsed);
  });

  it("takes an entry whose bytes hash as the hint's from the hint without walking it, and walks one that does not", () => {
    const text = JSON.stringify({
      subscriptionData: [
        { icc: '8934070000000000001', supervisionGroup: 'fleet' },
        { icc: '8934070000000000002', supervisionGroup: 'fleet' },
      ],
    });
    const { shape } = splitListAnswer(Buffer.from(text), where)!;
    // A hint that says the group is where the ICC is: an entry taken from the hint reads it there.
    const lying = { ...shape, layout: Int32Array.from(shape.layout) };
    for (const k of [0, 1]) lying.layout.set([lying.layout[k * 5 + 1], lying.layout[k * 5 + 2]], k * 5 + 3);
    const taken = splitListAnswer(Buffer.from(text), where, lying)!;
    expect(taken.peek(0)).toEqual({ group: '8934070000000000001', icc: '8934070000000000001' });
    // The second entry changed (same length): it is walked, and its group is where it is.
    const walked = splitListAnswer(Buffer.from(text.replace('0002', '0003')), where, lying)!;
    expect([walked.peek(0)?.group, walked.peek(1)]).toEqual([
      '8934070000000000001',
      { group: 'fleet', icc: '8934070000000000003' },
    ]);
  });
});
