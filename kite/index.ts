/**
 * Public API of the Kite source: the REST client and the SIM → record mapping.
 * The fetch activity should import from here only.
 *
 * Typical use (fetch activity):
 *   const kite = new KiteClient({ baseUrl, cert, key, groupFilter });
 *   for await (const page of kite.pages(cursor)) {            // heartbeat page.nextIndex
 *     for (const sim of page.sims.filter((s) => isInGroup(s, group, groupFilter))) {
 *       const hints = connectivityHints(sim);                  // compare with the stored hints
 *       const presence = changed ? await kite.getPresence(sim.icc!) : storedPresence;
 *       const result = mapSim(sim, presence);                  // { ok, record } or { ok: false, reason }
 *     }
 *   }
 *   kite.close();
 */
export type { GroupFilter, KiteSim, KitePresence, KiteConnStatus, KiteConsumption, KiteLocation } from './types';
export { LIFE_CYCLE_STATES, type LifeCycleState } from './types';
export { KiteApiError } from './errors';
export {
  mapSim,
  connectivityHints,
  isInGroup,
  simIcc,
  isUsableIcc,
  simIdentity,
  simHash,
  MAX_STRING_LENGTH,
  MAX_DAILY,
  type MapResult,
} from './mapping';
export { kiteAccountPeer } from './account';
export { entriesOfSims, pageEntries, splitListAnswer, type KiteEntries, type EntryPeek } from './entries';
export {
  KiteClient,
  tlsFromFiles,
  pageCap,
  DEFAULT_BASE_URL,
  DEFAULT_MAX_RESPONSE_BYTES,
  WAITING_BEAT_MS,
  DEFAULT_RATE_LIMIT_RETRIES,
  type KiteClientOptions,
  type KitePage,
  type CallOptions,
} from './client';
