import {
  encodeConnectivity,
  peekConnectivity,
  StoredConnectivity,
  type Connectivity,
} from '../../activities/stored-connectivity';

const presence = { level: 'IP reachability', timeStamp: '2026-11-28T23:04:15Z', ip: '10.0.0.1', apn: 'm2m' };

describe('stored connectivity', () => {
  it('reads back every field it wrote, peeked or parsed', () => {
    const cases: Connectivity[] = [
      { r: 'RXO3gWvMLEk', t: 'tpdgb6', h: '25om1vdoxgr', i: 'sub:1|imsi:2', p: presence },
      { r: 'RXO3gWvMLEk', t: 'tpdgb6', h: '25om1vdoxgr', e: 'presence-error:TIMEOUT', p: presence },
      { h: '25om1vdoxgr', p: presence },
      { e: 'presence-error:NOT_FOUND' },
      {},
    ];
    const stored = new StoredConnectivity([...cases.map(encodeConnectivity), null]);
    cases.forEach((c, i) => {
      expect(stored.full(i)).toEqual(c);
      expect([stored.entryHash(i), stored.readTime(i), stored.hints(i), stored.failed(i)]).toEqual([
        c.r,
        c.t,
        c.h,
        c.e !== undefined,
      ]);
    });
    expect([stored.entryHash(cases.length), stored.full(cases.length), stored.failed(cases.length)]).toEqual([
      undefined,
      undefined,
      false,
    ]);
  });

  it('peeks only at a value whose prefix it wrote, and never at one holding a failure', () => {
    const good = encodeConnectivity({ r: 'abc', t: 'tpdgb6', h: 'xyz', p: presence });
    expect(peekConnectivity(good)).toEqual({ r: 'abc', t: 'tpdgb6', h: 'xyz' });
    // Written by a worker from before the fixed order, with the hash last: parsed whole.
    const older = JSON.stringify({ h: 'xyz', p: presence, t: 'tpdgb6', i: 'sub:1|imsi:2', r: 'abc' });
    expect(peekConnectivity(older)).toBeUndefined();
    expect(new StoredConnectivity([older]).entryHash(0)).toBe('abc');
    const failing = encodeConnectivity({ r: 'abc', t: 'tpdgb6', h: 'xyz', e: 'presence-error:TIMEOUT' });
    expect(peekConnectivity(failing)).toBeUndefined();
    expect(new StoredConnectivity([failing]).failed(0)).toBe(true);
    // An escape in a peeked field: the first quote may not close it, so the value is parsed.
    const escaped = encodeConnectivity({ r: 'a"b', t: 'tpdgb6', h: 'xyz' });
    expect(peekConnectivity(escaped)).toBeUndefined();
    expect(new StoredConnectivity([escaped]).entryHash(0)).toBe('a"b');
    // A presence that spells the peeked keys inside it changes nothing.
    const tricky = encodeConnectivity({ r: 'abc', t: 't1', h: 'h1', p: { ...presence, cause: '{"r":"zzz","e":1}' } });
    expect(peekConnectivity(tricky)).toEqual({ r: 'abc', t: 't1', h: 'h1' });
  });
});
