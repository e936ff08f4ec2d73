/**
 * The published record: its 19 keys and types, and the pure functions on it (canonical JSON, diff, apply).
 * The connector's own contract with every target; no I/O.
 */
export { RECORD_KEYS, type RecordKey, type SimPatch, type SimRecord } from './record';
export { applyPatch, canonicalJson, diffRecords, withUncertainKeys } from './patch';
export {
  applyPublishPolicy,
  COUNTER_KEYS,
  DEFAULT_COUNTERS_MIN_INTERVAL_MS,
  DEFAULT_LOCATION_MIN_DISTANCE_M,
  distanceM,
  LOCATION_KEYS,
  MAX_LOCATION_MIN_DISTANCE_M,
  publishPolicyError,
  type CounterKey,
  type PolicyDecision,
  type PublishPolicy,
} from './publish-policy';
export {
  detectEvents,
  EVENT_DEFAULTS,
  EVENT_TYPES,
  eventPolicyError,
  type DetectedEvent,
  type EventBaseline,
  type EventPolicy,
  type EventType,
  type SimEvent,
} from './events';
