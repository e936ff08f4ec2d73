/**
 * Public API of the Kite source: the REST client, the SIM → record mapping and the simulator.
 * The fetch activity should import from here only.
 */
export { RECORD_KEYS, type RecordKey, type SimRecord, type SimPatch } from './record';
export type { GroupFilter, KiteSim, KitePresence, KiteConnStatus, KiteConsumption, KiteLocation } from './types';
export { LIFE_CYCLE_STATES, type LifeCycleState } from './types';
export { KiteApiError } from './errors';
export { mapSim, connectivityHints, isInGroup, MAX_STRING_LENGTH, type MapResult } from './mapping';
