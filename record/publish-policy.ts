/**
 * Which changes of a SIM go out now and which wait: identity and state keys go out in the cycle that sees them;
 * daily counters change whenever a SIM is in use, so they go out at most every `countersMinIntervalMs`, at once
 * when a counter crosses a threshold, and always at the daily reset (a counter going down). A held counter
 * change is never lost: the diff recomputes it from what the target holds every cycle, so its latest value goes
 * out with the next allowed publish. Pure; the time of each SIM's last counter release is kept by the caller.
 */
import type { RecordKey, SimPatch, SimRecord } from './record';

/** The daily consumption counters: the keys the policy may hold back. */
export const COUNTER_KEYS = ['dailyData', 'dailySMS', 'dailyVoice'] as const satisfies readonly RecordKey[];
export type CounterKey = (typeof COUNTER_KEYS)[number];

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
}

export const DEFAULT_COUNTERS_MIN_INTERVAL_MS = 15 * 60_000;

/** What to send for one SIM under the policy. */
export interface PolicyDecision {
  /** The patch to send now; undefined when everything is held. */
  send?: SimPatch;
  /** True when the counters go out now: the caller records `now` as their last release. */
  countersReleased: boolean;
}

/**
 * Applies the policy to a SIM's `patch` (from `before`, what the target holds). `countersSentAt` is when its
 * counters last went out (undefined: never, or unknown), `now` the current time.
 */
export function applyPublishPolicy(
  before: SimRecord | undefined,
  patch: SimPatch,
  policy: PublishPolicy | undefined,
  countersSentAt: number | undefined,
  now: number
): PolicyDecision {
  const counters = COUNTER_KEYS.filter((key) => key in patch);
  if (!counters.length) return { send: patch, countersReleased: false };
  const interval = policy?.countersMinIntervalMs ?? DEFAULT_COUNTERS_MIN_INTERVAL_MS;
  const release =
    !before ||
    Object.keys(patch).length > counters.length || // another key goes out anyway: counters ride along
    countersSentAt === undefined ||
    now - countersSentAt >= interval ||
    counters.some((key) => wentDown(before[key], patch[key]) || crossed(before[key], patch[key], policy, key));
  if (release) return { send: patch, countersReleased: true };
  return { send: undefined, countersReleased: false };
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
