import { readFileSync } from 'node:fs';
import path from 'node:path';
import { entriesOfSims, splitListAnswer } from '../../kite/entries';
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
});
