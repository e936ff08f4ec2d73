import { ApplicationFailure } from '@temporalio/activity';
import { FailureType } from '../shared/failures';
import {
  KiteApiError,
  type CallOptions,
  type GroupFilter,
  type KiteClient,
  type KitePage,
  type KitePresence,
} from '../kite';

/**
 * The I/O the fetch activity needs from Kite: inventory pages and presence reads. Membership, identity and
 * mapping are pure functions of kite/ that fetch calls itself. The worker adapts the Kite client to this seam;
 * tests may pass an in-memory inventory.
 */
export interface KiteSource {
  /**
   * Pages of the inventory that may hold the group's SIMs (all of it, or a Kite search configured for the group),
   * starting at `fromIndex`: a resumed fetch starts where it stopped. Fails with Temporal's view of Kite's error
   * (see kiteFailure); `call.onWaiting` is called while a request is slow, `call.maxSims` caps the listing (it
   * fails with TOO_MANY_PAGES beyond it).
   */
  pages(group: string, fromIndex: number, call?: ListingCall): AsyncIterable<KitePage>;
  /**
   * The SIM's presence detail; undefined when Kite has none. Fails with Kite's own error (a KiteApiError), so
   * that the caller can tell one SIM's fault from an account-wide one (isAccountWide).
   */
  presence(icc: string, call?: CallOptions): Promise<KitePresence | undefined>;
  /** How the group's membership is decided: `supervisionGroup`, or a Kite search configured for the group. */
  filterOf(group: string): GroupFilter;
  /** SIMs per page of the group's listing (the list requests a listing costs). @default 1000 */
  listPageSize?(group: string): number;
  /**
   * The Kite account the group's listing reads (the account's rate-budget peer, `kiteAccountPeer`), when the
   * group shares that account's inventory sweeps with its other groups; undefined for a group with a Kite search
   * of its own, which lists only its SIMs. Absent: every group lists the inventory itself.
   */
  sweepAccount?(group: string): string | undefined;
}

export interface ListingCall extends Pick<CallOptions, 'signal' | 'onWaiting'> {
  /** Fail rather than list more SIMs than this (a ceiling from the known inventory). @default none */
  maxSims?: number;
}

/**
 * True for a Kite failure that no other request would escape either: the certificate refused (TLS, 401, 403) or
 * Kite unreachable (no connection at all). A single SIM's error answer, even a 5xx, a timeout or a 429 left after
 * the client's Retry-After waits, is not; nor is a kept-alive connection closing under one request (DISCONNECTED).
 */
export function isAccountWide(err: unknown): boolean {
  if (!(err instanceof KiteApiError)) return true;
  return err.code === 'TLS' || err.code === 'NETWORK' || err.status === 401 || err.status === 403;
}

/**
 * A Kite failure as Temporal should treat it (the client re-sends nothing but 429s, so Temporal's activity retry
 * is the retry layer): retryable as it is, or a non-retryable ApplicationFailure (KiteAuthError for TLS, 401, 403).
 */
export function kiteFailure(err: unknown): unknown {
  if (!(err instanceof KiteApiError) || err.retryable) return err;
  const auth = err.code === 'TLS' || err.status === 401 || err.status === 403;
  const type = auth ? FailureType.KiteAuth : FailureType.KiteApi;
  return ApplicationFailure.nonRetryable(err.message, type, { code: err.code, status: err.status });
}

/**
 * Kite clients behind the fetch activity's seam. Groups whose membership is a Kite search get a client of their
 * own (the search parameters go with every list request); the others share one and filter by `supervisionGroup`,
 * and, given the `account`, share its inventory sweeps (one listing per interval for all of them).
 */
export function kiteSourceFromClients(
  clientFor: (filter: GroupFilter) => KiteClient,
  groupFilters: Record<string, GroupFilter> = {},
  /** The Kite account (`kiteAccountPeer`): groups filtered by `supervisionGroup` share its sweeps. @default none */
  account?: string
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
    async *pages(group, fromIndex, call) {
      try {
        const kite = client(group);
        const maxPages = call?.maxSims === undefined ? undefined : Math.ceil(call.maxSims / kite.pageSize) + 1;
        for await (const page of kite.pages(fromIndex, { ...call, maxPages })) yield page;
      } catch (err) {
        throw kiteFailure(err);
      }
    },
    presence: (icc, call) => client('').getPresence(icc, call),
    filterOf,
    listPageSize: (group) => client(group).pageSize,
    sweepAccount: (group) => (account && filterOf(group).type === 'supervisionGroup' ? account : undefined),
    close: () => clients.forEach((c) => c.close()),
  };
}
