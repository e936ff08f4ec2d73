import { ApplicationFailure } from '@temporalio/activity';
import { FailureType } from '../shared/failures';
import { KiteApiError, type GroupFilter, type KiteClient, type KitePage, type KitePresence } from '../kite';

/**
 * The I/O the fetch activity needs from Kite: inventory pages and presence reads. Membership, identity and
 * mapping are pure functions of kite/ that fetch calls itself. The worker adapts the Kite client to this seam;
 * tests may pass an in-memory inventory.
 */
export interface KiteSource {
  /**
   * Pages of the inventory that may hold the group's SIMs (all of it, or a Kite search configured for the group),
   * starting at `fromIndex`: a resumed fetch starts where it stopped.
   */
  pages(group: string, fromIndex: number, signal?: AbortSignal): AsyncIterable<KitePage>;
  /** The SIM's presence detail; undefined when Kite has none. */
  presence(icc: string, signal?: AbortSignal): Promise<KitePresence | undefined>;
  /** How the group's membership is decided: `supervisionGroup`, or a Kite search configured for the group. */
  filterOf(group: string): GroupFilter;
}

/** The Kite client's own retries are exhausted: map its error to how Temporal should treat it. */
export function kiteFailure(err: unknown): unknown {
  if (!(err instanceof KiteApiError) || err.retryable) return err;
  const auth = err.code === 'TLS' || err.status === 401 || err.status === 403;
  const type = auth ? FailureType.KiteAuth : FailureType.KiteApi;
  return ApplicationFailure.nonRetryable(err.message, type, { code: err.code, status: err.status });
}

/**
 * Kite clients behind the fetch activity's seam. Groups whose membership is a Kite search get a client of their
 * own (the search parameters go with every list request); the others share one and filter by `supervisionGroup`.
 */
export function kiteSourceFromClients(
  clientFor: (filter: GroupFilter) => KiteClient,
  groupFilters: Record<string, GroupFilter> = {}
): KiteSource & { close(): void } {
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
    filterOf,
    close: () => clients.forEach((c) => c.close()),
  };
}
