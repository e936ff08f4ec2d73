/**
 * The hash that tells an unchanged Kite entry: XXH64 over its bytes. A steady-state cycle hashes every entry of the
 * inventory, so the hash's speed bounds the cycle (BENCHMARKS.md: XXH64 takes a fifth of SHA-1's time per entry).
 * It is not cryptographic and needs not be: entries come from the customer's own Kite account, and a collision
 * (about 1 chance in 2^64 per change of one SIM) would only delay that SIM's change until its next one.
 */
import { xxh64 } from '@node-rs/xxhash';

/** The 64-bit digest of an entry's bytes (a string is hashed as its UTF-8 bytes). */
export function entryDigest(bytes: Uint8Array | string): bigint {
  return xxh64(bytes);
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const ALPHABET = Array.from(BASE64URL, (c) => c.charCodeAt(0));
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const scratch = new BigUint64Array(1);
const scratchWords = new Uint32Array(scratch.buffer);

/** A digest as stored in `conn`: 11 base64url characters of its 8 bytes, big-endian. */
export function digestText(digest: bigint): string {
  scratch[0] = digest;
  return wordsText(scratchWords, 0);
}

/**
 * The text of the i-th digest of `digests`, as digestText gives it, read from the array's memory: a steady-state
 * cycle asks for one per SIM, and neither a bigint nor a Buffer is made for it.
 */
export function digestTexts(digests: BigUint64Array): (i: number) => string {
  const words = new Uint32Array(digests.buffer, digests.byteOffset, digests.length * 2);
  return (i) => wordsText(words, i);
}

/** The i-th 64-bit value of `words` (two 32-bit words in the platform's order) as 11 base64url characters. */
function wordsText(words: Uint32Array, i: number): string {
  const high = words[LITTLE_ENDIAN ? 2 * i + 1 : 2 * i];
  const low = words[LITTLE_ENDIAN ? 2 * i : 2 * i + 1];
  const a = ALPHABET;
  // Bytes b0…b7, big-endian: b0 b1 b2 | b3 b4 b5 | b6 b7, each group of 3 bytes as 4 characters, the last as 3.
  const b3 = high & 0xff;
  const b4 = low >>> 24;
  const b5 = (low >>> 16) & 0xff;
  const b6 = (low >>> 8) & 0xff;
  const b7 = low & 0xff;
  return String.fromCharCode(
    a[high >>> 26],
    a[(high >>> 20) & 0x3f],
    a[(high >>> 14) & 0x3f],
    a[(high >>> 8) & 0x3f],
    a[b3 >>> 2],
    a[((b3 & 0x03) << 4) | (b4 >>> 4)],
    a[((b4 & 0x0f) << 2) | (b5 >>> 6)],
    a[b5 & 0x3f],
    a[b6 >>> 2],
    a[((b6 & 0x03) << 4) | (b7 >>> 4)],
    a[(b7 & 0x0f) << 2]
  );
}
