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

/** A digest as stored in `conn`: 11 base64url characters of its 8 bytes, big-endian. */
export function digestText(digest: bigint): string {
  const bytes = Buffer.allocUnsafe(8);
  bytes.writeBigUInt64BE(digest);
  return bytes.toString('base64url');
}
