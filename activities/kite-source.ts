import type { SimRecord } from '../kite/record';

/** One page of the Kite inventory and where the next one starts. */
export interface KitePage<Sim> {
  startIndex: number;
  nextIndex: number;
  sims: Sim[];
}

export type MapResult = { ok: true; record: SimRecord } | { ok: false; reason: string };

/**
 * What the fetch activity needs from Kite. The worker adapts the Kite client to it; tests may pass the
 * simulator-backed client directly.
 */
export interface KiteSource<Sim = unknown, Presence = unknown> {
  /** Pages of the whole inventory, starting at `fromIndex` (a resumed fetch starts where it stopped). */
  pages(fromIndex: number, signal?: AbortSignal): AsyncIterable<KitePage<Sim>>;
  /** The SIM's presence detail; undefined when Kite has none. */
  presence(icc: string, signal?: AbortSignal): Promise<Presence | undefined>;
  /** The SIM's ICC when it is a usable identifier. */
  icc(sim: Sim): string | undefined;
  inGroup(sim: Sim, group: string): boolean;
  /** A short string that changes when the SIM's connectivity may have changed (presence must be re-read). */
  hints(sim: Sim): string;
  map(sim: Sim, presence: Presence | undefined): MapResult;
}
