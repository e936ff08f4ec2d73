/**
 * Which changes of a SIM go out now and which wait: identity and state keys go out in the cycle that sees them;
 * daily counters change whenever a SIM is in use, so they go out at most every `countersMinIntervalMs`, at once
 * when a counter crosses a threshold, and always at the daily reset (a counter going down); the location goes out
 * when it is at least `locationMinDistanceM` from the one the target holds. A held change rides along with any
 * publish of the SIM, and is never lost: the diff recomputes it from what the target holds every cycle, so its
 * latest value goes out with the next allowed publish (a location drifting away a little at a time goes out once
 * the drift adds up to the distance). Pure; the time of each SIM's last counter release is kept by the caller.
 */
import type { RecordKey, SimPatch, SimRecord } from './record';

/** The daily consumption counters: the keys the policy may hold back. */
export const COUNTER_KEYS = ['dailyData', 'dailySMS', 'dailyVoice'] as const satisfies readonly RecordKey[];
export type CounterKey = (typeof COUNTER_KEYS)[number];

/** The location keys: the policy holds their small moves back. */
export const LOCATION_KEYS = ['Latitude', 'Longitude'] as const satisfies readonly RecordKey[];

/** A group's publish policy. Absent fields take their defaults. */
export interface PublishPolicy {
  /**
   * Least time between two publishes of a SIM's daily counters alone, in ms; 0 sends every change. A change of
   * any other key sends the counters with it.
   * @default 900000 (15 minutes)
   */
  countersMinIntervalMs?: number;
  /**
   * Values (in record units: `dailyData` kB, `dailySMS` count, `dailyVoice` seconds) whose crossing upwards sends
   * the counters at once, e.g. `{ dailyData: [102400] }` for 100 MB.
   * @default {} (none)
   */
  counterThresholds?: Partial<Record<CounterKey, number[]>>;
  /**
   * Least distance, in metres, between the location a target holds and the SIM's current one for the location
   * (`Latitude`/`Longitude`) to go out on its own; 0 sends every move. A location that appears or disappears goes
   * out at once, and a held move rides along with any other change of the SIM. Kite's location is the network's
   * (cell-based) estimate, whose jitter is hundreds of metres: the default keeps that jitter out of the cloud
   * while a move to another cell area goes out.
   * @default 500
   */
  locationMinDistanceM?: number;
}

export const DEFAULT_COUNTERS_MIN_INTERVAL_MS = 15 * 60_000;
export const DEFAULT_LOCATION_MIN_DISTANCE_M = 500;
/** The largest `locationMinDistanceM` accepted: 1,000 km. */
export const MAX_LOCATION_MIN_DISTANCE_M = 1_000_000;

/** What to send for one SIM under the policy. */
export interface PolicyDecision {
  /** The patch to send now; undefined when everything is held. */
  send?: SimPatch;
  /** True when the counters go out now: the caller records `now` as their last release. */
  countersReleased: boolean;
}

/**
 * Applies the policy to a SIM's `patch` (from `before`, what the target holds). `countersSentAt` is when its
 * counters last went out (undefined: never, or unknown), `now` the current time. A patch goes out whole or not at
 * all: when any of its keys is due, the held ones ride along.
 */
export function applyPublishPolicy(
  before: SimRecord | undefined,
  patch: SimPatch,
  policy: PublishPolicy | undefined,
  countersSentAt: number | undefined,
  now: number
): PolicyDecision {
  const counters = COUNTER_KEYS.filter((key) => key in patch);
  const location = LOCATION_KEYS.some((key) => key in patch);
  const others = Object.keys(patch).length - counters.length - LOCATION_KEYS.filter((key) => key in patch).length;
  const sendAll = { send: patch, countersReleased: counters.length > 0 };
  if (!before || others > 0) return sendAll;
  if (location && locationDue(before, patch, policy)) return sendAll;
  if (counters.length) {
    const interval = policy?.countersMinIntervalMs ?? DEFAULT_COUNTERS_MIN_INTERVAL_MS;
    const due =
      countersSentAt === undefined ||
      now - countersSentAt >= interval ||
      counters.some((key) => wentDown(before[key], patch[key]) || crossed(before[key], patch[key], policy, key));
    if (due) return sendAll;
  }
  return { send: undefined, countersReleased: false };
}

/**
 * Whether the location in `patch` goes out: it appeared or disappeared (a change of state, not a move), or it is
 * at least the policy's distance from the one the target holds.
 */
function locationDue(before: SimRecord, patch: SimPatch, policy: PublishPolicy | undefined): boolean {
  const at = (key: (typeof LOCATION_KEYS)[number]) => (key in patch ? patch[key] : before[key]);
  const lat = at('Latitude');
  const lon = at('Longitude');
  if (typeof lat !== 'number' || typeof lon !== 'number') return true;
  if (before.Latitude === undefined || before.Longitude === undefined) return true;
  const min = policy?.locationMinDistanceM ?? DEFAULT_LOCATION_MIN_DISTANCE_M;
  return distanceM(before.Latitude, before.Longitude, lat, lon) >= min;
}

/** Great-circle distance in metres between two points given in degrees (haversine, the Earth's mean radius). */
export function distanceM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6_371_008.8 * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** The daily reset: a counter lower than before, or gone. */
function wentDown(before: number | undefined, after: number | null | undefined): boolean {
  return before !== undefined && (after === null || after === undefined || after < before);
}

function crossed(
  before: number | undefined,
  after: number | null | undefined,
  policy: PublishPolicy | undefined,
  key: CounterKey
): boolean {
  if (typeof after !== 'number') return false;
  const from = before ?? 0;
  return (policy?.counterThresholds?.[key] ?? []).some((threshold) => from < threshold && after >= threshold);
}

/** Why `policy` is invalid, or undefined. Shared by the workflow's validator and the CLI. */
export function publishPolicyError(policy: PublishPolicy): string | undefined {
  const interval = policy.countersMinIntervalMs;
  if (interval !== undefined && (!Number.isInteger(interval) || interval < 0 || interval > 86_400_000)) {
    return `countersMinIntervalMs must be an integer from 0 to 86400000 (a day), got ${interval}`;
  }
  const distance = policy.locationMinDistanceM;
  if (
    distance !== undefined &&
    (typeof distance !== 'number' ||
      !Number.isFinite(distance) ||
      distance < 0 ||
      distance > MAX_LOCATION_MIN_DISTANCE_M)
  ) {
    return (
      `locationMinDistanceM must be a distance in metres from 0 (every move) to ${MAX_LOCATION_MIN_DISTANCE_M}, ` +
      `got ${JSON.stringify(distance)}`
    );
  }
  for (const [key, values] of Object.entries(policy.counterThresholds ?? {})) {
    if (!(COUNTER_KEYS as readonly string[]).includes(key)) {
      return `counterThresholds.${key} is not a counter (counters: ${COUNTER_KEYS.join(', ')})`;
    }
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'number' || !Number.isFinite(v) || v <= 0)) {
      return `counterThresholds.${key} must be a list of positive numbers`;
    }
  }
  return undefined;
}
