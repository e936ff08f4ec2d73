/**
 * What the fetch keeps of each SIM between cycles (the store's `conn` values), and reading it back cheaply. A
 * steady-state cycle reads every member's value but needs only its entry hash, read time and hints: parsing 100,000
 * values took a tenth of such a cycle (BENCHMARKS.md). So the value is written with those fields first, in a fixed
 * order, and read by peeking at that prefix; a value of any other form (written before, or holding a failure) is
 * parsed whole, as is any value whose other fields are needed.
 */
import type { KitePresence } from '../kite';

/** One SIM's stored connectivity (JSON, see encodeConnectivity). */
export interface Connectivity {
  /** The hash of the SIM's Kite entry (simHash) that last made a good record with a good presence. */
  r?: string;
  /**
   * When `p` was read (encodeReadTime: epoch seconds in base 36); absent in entries from before the presence
   * refresh, which are refreshed gradually (presence-refresh.ts).
   */
  t?: string;
  /** The connectivity hints the presence `p` was read for; absent when never read successfully. */
  h?: string;
  /** Set while the SIM's presence read fails: it does not count towards a presence outage again. */
  e?: string;
  /** What identifies the SIM besides its ICC (simIdentity), recorded in the store's `ids` too. */
  i?: string;
  p?: KitePresence;
}

/** The value stored for `c`: its JSON with `r`, `t`, `h` and `e` first, in that order (what peekConnectivity reads). */
export function encodeConnectivity(c: Connectivity): string {
  return JSON.stringify({ r: c.r, t: c.t, h: c.h, e: c.e, i: c.i, p: c.p });
}

/** The fields a settled SIM's skip needs, of a value without a failure (`e`). */
interface Peeked {
  r: string;
  t: string;
  h: string;
}

const R = '{"r":"';
const T = ',"t":"';
const H = ',"h":"';
const E = ',"e":';

/**
 * `r`, `t` and `h` of a value that starts `{"r":"…","t":"…","h":"…"` and has no `e` after them (as
 * encodeConnectivity writes one without a failure); undefined for any other value. Each string must be free of
 * escapes: the first quote after it then closes it, and what follows is the value's own structure.
 */
export function peekConnectivity(json: string): Peeked | undefined {
  if (!json.startsWith(R)) return undefined;
  const rEnd = json.indexOf('"', R.length);
  if (rEnd < 0 || !json.startsWith(T, rEnd + 1)) return undefined;
  const tEnd = json.indexOf('"', rEnd + 1 + T.length);
  if (tEnd < 0 || !json.startsWith(H, tEnd + 1)) return undefined;
  const hEnd = json.indexOf('"', tEnd + 1 + H.length);
  if (hEnd < 0 || json.startsWith(E, hEnd + 1)) return undefined;
  const r = json.slice(R.length, rEnd);
  const t = json.slice(rEnd + 1 + T.length, tEnd);
  const h = json.slice(tEnd + 1 + H.length, hEnd);
  if (r.includes('\\') || t.includes('\\') || h.includes('\\')) return undefined;
  return { r, t, h };
}

/** A page's members' stored connectivity (null: never stored), each parsed only when more than its prefix is needed. */
export class StoredConnectivity {
  private readonly peeked: (Peeked | undefined)[];
  private readonly parsed: (Connectivity | undefined)[];

  constructor(private readonly values: (string | null)[]) {
    this.peeked = values.map((v) => (v === null ? undefined : peekConnectivity(v)));
    this.parsed = new Array<Connectivity | undefined>(values.length);
  }

  /** The i-th member's value, parsed; undefined when none is stored. */
  full(i: number): Connectivity | undefined {
    const value = this.values[i];
    if (value === null) return undefined;
    return (this.parsed[i] ??= JSON.parse(value) as Connectivity);
  }

  /** The i-th member's entry hash `r`. */
  entryHash(i: number): string | undefined {
    return this.peeked[i]?.r ?? this.full(i)?.r;
  }

  /** The i-th member's read time `t`. */
  readTime(i: number): string | undefined {
    return this.peeked[i]?.t ?? this.full(i)?.t;
  }

  /** The i-th member's hints `h`. */
  hints(i: number): string | undefined {
    return this.peeked[i]?.h ?? this.full(i)?.h;
  }

  /** Whether the i-th member's last presence read failed (`e`). */
  failed(i: number): boolean {
    return this.peeked[i] === undefined && this.full(i)?.e !== undefined;
  }
}
