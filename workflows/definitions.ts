/**
 * The group workflow's public contract: its input, messages and status. Imported by the workflow, the worker
 * and the client, so it depends on @temporalio/workflow and types only.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { EVENT_TYPES, eventPolicyError, type EventPolicy } from '../record/events';
import { publishPolicyError, type PublishPolicy } from '../record/publish-policy';

export type { EventPolicy, EventType } from '../record/events';
export { EVENT_TYPES };
export type { PublishPolicy } from '../record/publish-policy';

export const WORKFLOW_TYPE = 'groupSyncWorkflow';

/** `cloud-connector:<group>`: one workflow per monitoring group. */
export function workflowIdForGroup(group: string): string {
  return `cloud-connector:${group}`;
}

/** A group's configuration. Holds names only: secrets stay in the worker's configuration. */
export interface GroupConfig {
  /** The Kite monitoring (supervision) group. */
  group: string;
  /** Cloud Monitoring ON. @default true */
  enabled: boolean;
  /** Time between the end of one cycle and the start of the next, in ms. @default 300000 (5 minutes) */
  intervalMs: number;
  /** Names of targets configured on the worker (e.g. `azure`, `aws`, `mqtt`). At least one. */
  targets: string[];
  /** Start a new run after this many cycles, even if the server has not suggested it. @default 100 */
  maxCyclesPerRun?: number;
  /**
   * Which changes go out at once and which wait (daily counters at most every 15 minutes by default).
   * @default {} (every field's default, see PublishPolicy)
   */
  publishPolicy?: PublishPolicy;
  /**
   * Connectivity events (imeiChanged, presenceLost, …, see record/events.ts) sent to every target as events:
   * which types, and the usage-spike rule.
   * @default {} (off)
   */
  events?: EventPolicy;
}

/**
 * What `configure` may change. Absent fields stay as they are; `publishPolicy` and `events` fields merge into the
 * current ones.
 */
export type ConfigPatch = Partial<
  Pick<GroupConfig, 'intervalMs' | 'targets' | 'maxCyclesPerRun' | 'publishPolicy' | 'events'>
>;

/** Counts of one target's publish step. */
export interface TargetCounts {
  pending: number;
  published: number;
  failed: number;
  throttled: number;
}

/** A compact summary of one sync cycle: counts and times, never SIM data. */
export interface CycleSummary {
  cycle: number;
  startedAt: number;
  finishedAt: number;
  /** SIMs read from Kite, all groups. */
  seen: number;
  /** SIMs of this group with a valid record. */
  inGroup: number;
  /** SIMs of this group that could not be mapped, by reason. */
  invalid: number;
  invalidReasons: Record<string, number>;
  /**
   * SIMs whose presence read failed, by `presence-error:<code>`: published with their last known presence (or
   * without presence keys) and read again next cycle. Absent in summaries of older runs.
   */
  presenceErrors?: Record<string, number>;
  /** SIMs that left the group since the last cycle. */
  left: number;
  /**
   * Per target: SIMs with a change, SIMs whose only changes (daily counters) the publish policy held for a later
   * cycle, and how publishing went.
   */
  targets: Record<string, TargetCounts & { changed: number; held?: number; eventsSent?: number; error?: string }>;
  /** Connectivity events detected this cycle (absent while the group's events are off). */
  events?: number;
  /** `completed` when every step and target succeeded; `cancelled` when the group was disabled mid-cycle. */
  outcome?: 'completed' | 'failed' | 'cancelled';
  /** Why the cycle failed, after Temporal's retries. */
  error?: string;
  /** An activity ran out of attempts (e.g. a worker crashing again and again): the next cycle starts at once. */
  attemptsExhausted?: boolean;
}

export type CyclePhase = 'idle' | 'fetch' | 'diff' | 'publish';

export interface GroupStatus {
  config: GroupConfig;
  phase: CyclePhase;
  /** Cycles completed over the workflow's whole life, across continue-as-new. */
  cyclesCompleted: number;
  lastCycle?: CycleSummary;
  /** Epoch ms when the next cycle is due; absent while disabled. */
  nextSyncAt?: number;
  /** SIMs whose last publish failed permanently, per target. */
  failingSims: Record<string, number>;
  /** The last cycle's error, if it failed after retries. */
  lastError?: string;
}

/** Carried across continue-as-new. */
export interface GroupWorkflowInput {
  config: GroupConfig;
  cyclesCompleted?: number;
  lastCycle?: CycleSummary;
  failingSims?: Record<string, number>;
  /** A `syncNow` received while the previous run was ending. */
  syncRequested?: boolean;
}

/** Turn Cloud Monitoring ON: cycles run every interval. */
export const enableSignal = defineSignal('enable');
/** Turn Cloud Monitoring OFF: no activity runs and no timer spins until `enable`. */
export const disableSignal = defineSignal('disable');
/** Start a cycle now (when enabled) instead of waiting for the interval. */
export const syncNowSignal = defineSignal('syncNow');
/** Change the interval or targets; rejected with a reason when invalid. Returns the new configuration. */
export const configureUpdate = defineUpdate<GroupConfig, [ConfigPatch]>('configure');
export const statusQuery = defineQuery<GroupStatus>('status');

/** What `resync` republishes in full. */
export interface ResyncRequest {
  /** Targets to republish to. @default every target of the group */
  targets?: string[];
  /** ICCIDs to republish. @default every SIM of the group */
  sims?: string[];
  /** Run a cycle at once instead of at the next interval. @default false */
  now?: boolean;
}

/**
 * Republish full records (e.g. after a twin was deleted in the cloud): once no cycle runs, forgets what the
 * targets hold for the SIMs, so the next cycle (at once with `now`) publishes them in full. Returns, per target,
 * how many SIMs it queued.
 */
export const resyncUpdate = defineUpdate<Record<string, number>, [ResyncRequest]>('resync');

/** Heartbeat details of the fetch/diff/publish activities: also what `kite-cc sync --wait` shows. */
export interface ActivityProgress {
  phase: Exclude<CyclePhase, 'idle'>;
  target?: string;
  /** Items done so far in this phase (SIMs fetched, diffed or published). */
  done: number;
  failed?: number;
  /** Resume cursor; opaque. */
  cursor?: number;
}

/**
 * The innermost message of an error chain: an ActivityFailure only says which activity failed, and an update's
 * failure wraps its validator's reason. Shared by the workflow and the CLI; pure, so safe in workflow code.
 */
export function innermostMessage(err: unknown): string {
  let current = err as { message?: string; cause?: unknown } | undefined;
  while (current?.cause && (current.cause as { message?: string }).message) current = current.cause as typeof current;
  return current?.message || String(err);
}

export const MIN_INTERVAL_MS = 1_000;
export const MAX_INTERVAL_MS = 7 * 24 * 3_600_000;

/** Returns a reason when `patch` is invalid, or undefined. Shared by the workflow's validator and the CLI. */
export function configPatchError(patch: ConfigPatch): string | undefined {
  if (patch.intervalMs !== undefined) {
    if (
      !Number.isInteger(patch.intervalMs) ||
      patch.intervalMs < MIN_INTERVAL_MS ||
      patch.intervalMs > MAX_INTERVAL_MS
    ) {
      return `intervalMs must be an integer from ${MIN_INTERVAL_MS} to ${MAX_INTERVAL_MS}, got ${patch.intervalMs}`;
    }
  }
  if (patch.targets !== undefined) {
    if (!Array.isArray(patch.targets) || patch.targets.length === 0) return 'targets must name at least one target';
    const bad = patch.targets.find((t) => typeof t !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,62}$/i.test(t));
    if (bad !== undefined) return `target name ${JSON.stringify(bad)} is invalid: use letters, digits, - and _`;
    if (new Set(patch.targets).size !== patch.targets.length) return 'targets must not repeat a name';
  }
  if (patch.maxCyclesPerRun !== undefined && (!Number.isInteger(patch.maxCyclesPerRun) || patch.maxCyclesPerRun < 1)) {
    return `maxCyclesPerRun must be a positive integer, got ${patch.maxCyclesPerRun}`;
  }
  if (patch.publishPolicy !== undefined) {
    if (typeof patch.publishPolicy !== 'object' || patch.publishPolicy === null)
      return 'publishPolicy must be an object';
    const problem = publishPolicyError(patch.publishPolicy);
    if (problem) return `publishPolicy.${problem}`;
  }
  if (patch.events !== undefined) {
    if (typeof patch.events !== 'object' || patch.events === null) return 'events must be an object';
    const problem = eventPolicyError(patch.events);
    if (problem) return `events.${problem}`;
  }
  return undefined;
}

export { groupNameError } from '../shared/group-name';
