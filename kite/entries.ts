/**
 * The SIMs of one inventory page, parsed only when asked. A steady-state cycle finds most SIMs as Kite sent them
 * last time: their entry's bytes hash the same. Parsing and hashing every entry cost most of such a cycle's CPU
 * (BENCHMARKS.md), so a list answer is split into its entries' byte ranges in one pass, each entry hashed over its
 * raw bytes, and its `supervisionGroup` and `icc` read without parsing where they are plain strings. An entry is
 * parsed when its SIM is needed: a member of the group whose entry changed.
 */
import { digestTexts, entryDigest } from './entry-hash';
import { KiteApiError } from './errors';
import { simHash } from './mapping';
import type { KiteSim } from './types';

/** What an entry tells without being parsed. */
export interface EntryPeek {
  /** Its `supervisionGroup`; undefined when the entry has none. */
  group?: string;
  /** Its `icc` as sent (not yet checked to be usable, see simIcc); undefined when the entry has none. */
  icc?: string;
}

/** The SIMs of one list page. */
export interface KiteEntries {
  readonly length: number;
  /** The i-th SIM, parsed on first use. Fails with BAD_RESPONSE when its bytes are not JSON. */
  sim(i: number): KiteSim;
  /**
   * A compact hash of the i-th entry (11 characters of its XXH64, entry-hash.ts): over its bytes as Kite sent them,
   * or over its JSON text for a page parsed whole. Equal hashes mean an equal entry (about 1 chance in 2^64
   * otherwise).
   */
  hash(i: number): string;
  /**
   * The i-th entry's `supervisionGroup` and `icc` when its bytes tell them without parsing: each is a plain string
   * (no escape) at the entry's top level, or absent. Undefined when only parsing can tell.
   */
  peek(i: number): EntryPeek | undefined;
  /** The i-th entry's JSON text: as Kite sent it, or the parsed SIM's JSON.stringify. */
  text(i: number): string;
  /** Every SIM, parsed. */
  all(): KiteSim[];
}

/** A page's entries: the client's split ones, or its parsed SIMs (a test's inventory) as entries. */
export function pageEntries(page: { sims: KiteSim[]; entries?: KiteEntries }): KiteEntries {
  return page.entries ?? entriesOfSims(page.sims);
}

/** A page parsed whole (a test's inventory, or an answer the splitter does not take): nothing peeks. */
export function entriesOfSims(sims: KiteSim[]): KiteEntries {
  const hashes: (string | undefined)[] = [];
  return {
    length: sims.length,
    sim: (i) => sims[i],
    hash: (i) => (hashes[i] ??= simHash(sims[i])),
    peek: () => undefined,
    text: (i) => JSON.stringify(sims[i]) ?? 'null',
    all: () => sims,
  };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

const KEY_ICC = Buffer.from('"icc"');
const KEY_GROUP = Buffer.from('"supervisionGroup"');
const KEY_LIST = Buffer.from('"subscriptionData"');

/** Where an entry's `icc` or `supervisionGroup` value is: its offset in the entry, or one of these. */
const ABSENT = -1;
/** The value is there but is not a plain string: only parsing tells what it means. */
const OPAQUE = -2;

/** Containers nested deeper than this are left to JSON.parse. */
const MAX_DEPTH = 256;

/** Ints per entry in a PageShape's layout: length, icc offset and length, group offset and length. */
const LAYOUT = 5;

/**
 * What splitting a page learnt about its entries: where each ends and where its `icc` and `supervisionGroup`
 * values are, and its digest. Given as the next split's hint for the same page, an entry whose bytes hash as the
 * hint's entry at the same index is taken as that entry without being scanned: a steady-state page costs a hash
 * per entry instead of a walk over its bytes. About 28 bytes per entry.
 */
export interface PageShape {
  readonly count: number;
  /** Per entry: its length, then its icc's and its group's offset (or ABSENT, OPAQUE) and length. */
  readonly layout: Int32Array;
  /** Per entry: its digest (entry-hash.ts). */
  readonly digests: BigUint64Array;
}

/** A split page: its entries, and its shape for the next split of the same page. */
export interface SplitPage extends KiteEntries {
  readonly shape: PageShape;
}

/**
 * Splits a list answer `{"subscriptionData":[ … ]}` into its entries without parsing them. Undefined for any
 * other shape (another key beside the list, the list as one object, an exception body, broken JSON): the caller
 * parses the answer whole and reports what is wrong with it. `hint`: the same page's shape last time.
 *
 * What is checked here is the structure: strings closed, brackets matched in kind, commas between the list's
 * entries and nothing after the answer. An entry's own grammar is checked when it is parsed. An entry that is
 * never parsed is either another group's or a byte-for-byte copy of one that parsed before (its hash is equal).
 * An entry taken from the hint is a byte-for-byte copy of one this split found before (its digest is equal).
 */
export function splitListAnswer(body: Buffer, where: string, hint?: PageShape): SplitPage | undefined {
  const scan = new Scanner(body);
  let i = scan.ws(0);
  if (body[i] !== LBRACE) return undefined;
  i = scan.ws(i + 1);
  const found = new FoundEntries(hint ? hint.count + 1 : INITIAL_CAPACITY);
  if (body[i] === RBRACE) {
    return scan.ws(i + 1) === body.length ? rawEntries(body, found, where) : undefined;
  }
  if (!scan.is(i, KEY_LIST)) return undefined;
  i = scan.ws(i + KEY_LIST.length);
  if (body[i] !== COLON) return undefined;
  i = scan.ws(i + 1);
  if (body[i] !== LBRACKET) return undefined;
  i = scan.ws(i + 1);
  if (body[i] !== RBRACKET) {
    for (let k = 0; ; k++) {
      const start = i;
      let end = -1;
      let digest: bigint | undefined;
      if (hint && k < hint.count) {
        const at = k * LAYOUT;
        const e = start + hint.layout[at];
        const next = body[e];
        if (next === COMMA || next === RBRACKET || isWs(next)) {
          digest = entryDigest(body.subarray(start, e));
          if (digest === hint.digests[k]) {
            end = e;
            found.copy(start, digest, hint.layout, at);
          }
        }
      }
      if (end < 0) {
        const isObject = body[i] === LBRACE;
        end = isObject ? scan.entry(i) : scan.value(i);
        if (end < 0) return undefined;
        digest = entryDigest(body.subarray(start, end));
        if (isObject) {
          const iccAt = scan.iccAt >= 0 ? scan.iccAt - start : scan.iccAt;
          const groupAt = scan.groupAt >= 0 ? scan.groupAt - start : scan.groupAt;
          found.add(start, digest, end - start, iccAt, scan.iccLength, groupAt, scan.groupLength);
        } else found.add(start, digest, end - start, OPAQUE, 0, OPAQUE, 0);
      }
      i = scan.ws(end);
      if (body[i] === COMMA) i = scan.ws(i + 1);
      else if (body[i] === RBRACKET) break;
      else return undefined;
    }
  }
  i = scan.ws(i + 1);
  if (body[i] !== RBRACE || scan.ws(i + 1) !== body.length) return undefined;
  return rawEntries(body, found, where);
}

/** Entries a page is first sized for when there is no hint (Kite's pages hold up to 1,000). */
const INITIAL_CAPACITY = 1024;

/**
 * What a split found, written straight into typed arrays that double when full: a page's 1,000 entries once made
 * arrays of numbers and of bigints, grown step by step and copied at the end, about a third of a steady cycle's
 * allocation in the split.
 */
class FoundEntries {
  count = 0;
  starts: Int32Array;
  layout: Int32Array;
  digests: BigUint64Array;

  constructor(capacity: number) {
    this.starts = new Int32Array(capacity);
    this.layout = new Int32Array(capacity * LAYOUT);
    this.digests = new BigUint64Array(capacity);
  }

  add(
    start: number,
    digest: bigint,
    length: number,
    iccAt: number,
    iccLength: number,
    groupAt: number,
    groupLength: number
  ): void {
    // prettier-ignore
    const k = this.next(start, digest) * LAYOUT;
    const l = this.layout;
    l[k] = length;
    l[k + 1] = iccAt;
    l[k + 2] = iccLength;
    l[k + 3] = groupAt;
    l[k + 4] = groupLength;
  }

  /** An entry laid out as the hint's entry at `at`. */
  copy(start: number, digest: bigint, layout: Int32Array, at: number): void {
    const k = this.next(start, digest) * LAYOUT;
    for (let f = 0; f < LAYOUT; f++) this.layout[k + f] = layout[at + f];
  }

  /** The shape of what was found, in arrays of its exact size. */
  shape(): PageShape {
    return {
      count: this.count,
      layout: this.layout.slice(0, this.count * LAYOUT),
      digests: this.digests.slice(0, this.count),
    };
  }

  private next(start: number, digest: bigint): number {
    const k = this.count++;
    if (k === this.starts.length) {
      this.starts = grown(this.starts, new Int32Array(2 * k));
      this.layout = grown(this.layout, new Int32Array(2 * k * LAYOUT));
      this.digests = grown(this.digests, new BigUint64Array(2 * k));
    }
    this.starts[k] = start;
    this.digests[k] = digest;
    return k;
  }
}

function grown<T extends Int32Array | BigUint64Array>(from: T, to: T): T {
  (to as Int32Array).set(from as Int32Array);
  return to;
}

function rawEntries(body: Buffer, found: FoundEntries, where: string): SplitPage {
  const { count, starts } = found;
  const shape = found.shape();
  const end = (i: number) => starts[i] + shape.layout[i * LAYOUT];
  const hash = digestTexts(shape.digests);
  const sims: (KiteSim | undefined)[] = [];
  // Each entry's peek once read (the client checks repeats, then the fetch finds the group's members); null: opaque.
  const peeks: (EntryPeek | null | undefined)[] = [];
  const sim = (i: number): KiteSim => {
    const parsed = sims[i];
    if (parsed !== undefined) return parsed;
    try {
      return (sims[i] = JSON.parse(body.toString('utf8', starts[i], end(i))) as KiteSim);
    } catch {
      const text = `SIM ${i} of the page is malformed JSON (${end(i) - starts[i]} bytes)`;
      throw new KiteApiError({ code: 'BAD_RESPONSE', status: 200, where, text });
    }
  };
  /** The value at `at` (an offset in entry i's layout): its text, undefined when absent, OPAQUE otherwise. */
  const value = (i: number, at: number): string | undefined | typeof OPAQUE => {
    const offset = shape.layout[i * LAYOUT + at];
    if (offset === ABSENT) return undefined;
    if (offset === OPAQUE) return OPAQUE;
    const from = starts[i] + offset;
    return body.toString('utf8', from, from + shape.layout[i * LAYOUT + at + 1]);
  };
  return {
    length: count,
    shape,
    sim,
    hash,
    peek: (i) => {
      const known = peeks[i];
      if (known !== undefined) return known ?? undefined;
      const group = value(i, 3);
      const icc = group === OPAQUE ? OPAQUE : value(i, 1);
      return (peeks[i] = group === OPAQUE || icc === OPAQUE ? null : { group, icc }) ?? undefined;
    },
    text: (i) => body.toString('utf8', starts[i], end(i)),
    all: () => Array.from({ length: count }, (_, i) => sim(i)),
  };
}

/** JSON whitespace: space, line feed, carriage return, tab. */
function isWs(c: number | undefined): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** A forward scanner over JSON bytes; every method returns -1 where the bytes are not what JSON allows. */
class Scanner {
  /**
   * Set by `entry`: where the entry's top-level `icc` and `supervisionGroup` string values are (the last of
   * duplicates, as JSON.parse), after the opening quote; ABSENT or OPAQUE otherwise.
   */
  iccAt = ABSENT;
  iccLength = 0;
  groupAt = ABSENT;
  groupLength = 0;
  private escaped = false;
  private readonly stack = new Uint8Array(MAX_DEPTH);

  constructor(private readonly b: Buffer) {}

  /** The first index at or after `i` that is not JSON whitespace. */
  ws(i: number): number {
    const b = this.b;
    while (i < b.length && isWs(b[i])) i++;
    return i;
  }

  /** Whether `bytes` are at `i` (a loop: a native compare per key costs more than the key). */
  is(i: number, bytes: Buffer): boolean {
    const b = this.b;
    for (let k = 0; k < bytes.length; k++) if (b[i + k] !== bytes[k]) return false;
    return true;
  }

  /** Past the string opening at `i`; `escaped` tells whether it held a backslash. */
  string(i: number): number {
    const b = this.b;
    const n = b.length;
    let escaped = false;
    for (let j = i + 1; j < n; j++) {
      const c = b[j];
      if (c === QUOTE) {
        this.escaped = escaped;
        return j + 1;
      }
      if (c === BACKSLASH) {
        escaped = true;
        j++;
      }
    }
    return -1;
  }

  /** Past the value starting at `i` (a string, an object or array with everything in it, or a literal). */
  value(i: number): number {
    const b = this.b;
    if (i < 0 || i >= b.length) return -1;
    const c = b[i];
    if (c === QUOTE) return this.string(i);
    if (c === LBRACE || c === LBRACKET) return this.container(i);
    let j = i;
    while (j < b.length) {
      const d = b[j];
      if (d === COMMA || d === RBRACE || d === RBRACKET || isWs(d)) break;
      if (d === QUOTE || d === LBRACE || d === LBRACKET || d === COLON) return -1;
      j++;
    }
    return j > i ? j : -1;
  }

  /** Past the object or array opening at `i`, its brackets matched in kind. */
  private container(i: number): number {
    const b = this.b;
    const stack = this.stack;
    let depth = 0;
    for (let j = i; j < b.length; j++) {
      const c = b[j];
      if (c === QUOTE) {
        j = this.string(j) - 1;
        if (j < 0) return -1;
      } else if (c === LBRACE || c === LBRACKET) {
        if (depth === MAX_DEPTH) return -1;
        stack[depth++] = c;
      } else if (c === RBRACE || c === RBRACKET) {
        if (depth === 0 || stack[--depth] !== (c === RBRACE ? LBRACE : LBRACKET)) return -1;
        if (depth === 0) return j + 1;
      }
    }
    return -1;
  }

  /** Past the object opening at `i`, noting its top-level `supervisionGroup` and `icc` (see `group`, `icc`). */
  entry(i: number): number {
    const b = this.b;
    this.iccAt = this.groupAt = ABSENT;
    this.iccLength = this.groupLength = 0;
    let j = this.ws(i + 1);
    if (b[j] === RBRACE) return j + 1;
    for (;;) {
      if (b[j] !== QUOTE) return -1;
      const keyStart = j;
      j = this.string(j);
      if (j < 0) return -1;
      // A key written with escapes may spell `icc` or `supervisionGroup` once parsed: only parsing tells.
      if (this.escaped) this.groupAt = this.iccAt = OPAQUE;
      const keyLength = j - keyStart;
      j = this.ws(j);
      if (b[j] !== COLON) return -1;
      const valueStart = this.ws(j + 1);
      j = this.value(valueStart);
      if (j < 0) return -1;
      const which =
        keyLength === KEY_ICC.length && this.is(keyStart, KEY_ICC)
          ? 'icc'
          : keyLength === KEY_GROUP.length && this.is(keyStart, KEY_GROUP)
            ? 'group'
            : undefined;
      if (which) {
        const plain = b[valueStart] === QUOTE && !this.escaped;
        if (which === 'icc' && this.iccAt !== OPAQUE) {
          this.iccAt = plain ? valueStart + 1 : OPAQUE;
          this.iccLength = plain ? j - 1 - (valueStart + 1) : 0;
        } else if (which === 'group' && this.groupAt !== OPAQUE) {
          this.groupAt = plain ? valueStart + 1 : OPAQUE;
          this.groupLength = plain ? j - 1 - (valueStart + 1) : 0;
        }
      }
      j = this.ws(j);
      if (b[j] === RBRACE) return j + 1;
      if (b[j] !== COMMA) return -1;
      j = this.ws(j + 1);
    }
  }
}
