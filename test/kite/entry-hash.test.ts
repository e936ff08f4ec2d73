import { digestText, digestTexts, entryDigest } from '../../kite/entry-hash';

/** The stored text of a digest as it was first written: its 8 bytes big-endian, base64url. */
const asStored = (digest: bigint) => {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(digest);
  return bytes.toString('base64url');
};

describe('digest texts', () => {
  const digests = new BigUint64Array([
    0n,
    1n,
    0xffffffffffffffffn,
    1n << 63n,
    0x0123456789abcdefn,
    ...Array.from({ length: 1_000 }, (_, n) => entryDigest(`entry ${n}`)),
  ]);

  it('are the 8 bytes big-endian in base64url, as conn values hold them', () => {
    expect(digestText(0x0123456789abcdefn)).toBe('ASNFZ4mrze8');
    expect(digestText(0xffffffffffffffffn)).toBe('__________8');
    for (const d of digests) expect(digestText(d)).toBe(asStored(d));
  });

  it('read from a digest array give the same texts, at any offset of its buffer', () => {
    const all = digestTexts(digests);
    const tail = digestTexts(digests.subarray(3));
    digests.forEach((d, i) => {
      expect(all(i)).toBe(asStored(d));
      if (i >= 3) expect(tail(i - 3)).toBe(asStored(d));
    });
  });
});
