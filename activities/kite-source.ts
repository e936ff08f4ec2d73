import { ApplicationFailure } from '@temporalio/activity';
import type { KiteClient } from '../kite/client';
import { KiteApiError } from '../kite/errors';
import { connectivityHints, isInGroup, mapSim } from '../kite/mapping';
import type { SimRecord } from '../kite/record';
import type { GroupFilter, KitePresence, KiteSim } from '../kite/types';

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
  /**
   * Pages of the inventory that may hold the group's SIMs (all of it, or a Kite search configured for the group),
   * starting at `fromIndex`: a resumed fetch starts where it stopped.
   */
  pages(group: string, fromIndex: number, signal?: AbortSignal): AsyncIterable<KitePage<Sim>>;
  /** The SIM's presence detail; undefined when Kite has none. */
  presence(icc: string, signal?: AbortSignal): Promise<Presence | undefined>;
  /** The SIM's ICC when it is a usable identifier. */
  icc(sim: Sim): string | undefined;
  inGroup(sim: Sim, group: string): boolean;
  /** A short string that changes when the SIM's connectivity may have changed (presence must be re-read). */
  hints(sim: Sim): string;
  map(sim: Sim, presence: Presence | undefined): MapResult;
}

/** The Kite client's own retries are exhausted: map its error to how Temporal should treat it. */
export function kiteFailure(err: unknown): unknown {
  if (!(err instanceof KiteApiError) || err.retryable) return err;
  const type = err.code === 'TLS' || err.status === 401 || err.status === 403 ? 'KiteAuthError' : 'KiteApiError';
  return ApplicationFailure.nonRetryable(err.message, type, { code: err.code, status: err.status });
}

/**
 * Kite clients behind the fetch activity's seam. Groups whose membership is a Kite search get a client of their
 * own (the search parameters go with every list request); the others share one and filter by `supervisionGroup`.
 */
export function kiteSourceFromClients(
  clientFor: (filter: GroupFilter) => KiteClient,
  groupFilters: Record<string, GroupFilter> = {}
): KiteSource<KiteSim, KitePresence> & { close(): void } {
  const clients = new Map<string, KiteClient>();
  const filterOf = (group: string): GroupFilter => groupFilters[group] ?? { type: 'supervisionGroup' };
  const client = (group: string) => {
    const filter = filterOf(group);
    const key = filter.type === 'search' ? group : '';
    if (!clients.has(key)) clients.set(key, clientFor(filter));
    return clients.get(key)!;
  };
  return {
    async *pages(group, fromIndex, signal) {
      try {
        for await (const page of client(group).pages(fromIndex, { signal })) yield page;
      } catch (err) {
        throw kiteFailure(err);
      }
    },
    presence: (icc, signal) =>
      client('')
        .getPresence(icc, { signal })
        .catch((err) => Promise.reject(kiteFailure(err))),
    icc: (sim) => (typeof sim.icc === 'string' && sim.icc.length > 0 && sim.icc.length <= 32 ? sim.icc : undefined),
    inGroup: (sim, group) => isInGroup(sim, group, filterOf(group)),
    hints: connectivityHints,
    map: mapSim,
    close: () => clients.forEach((c) => c.close()),
  };
}
