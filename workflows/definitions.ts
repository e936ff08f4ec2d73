/**
 * The group workflow's public contract: its input, messages and status. Imported by the workflow, the worker
 * and the client, so it depends on @temporalio/workflow and types only.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { EVENT_TYPES, eventPolicyError, type EventPolicy } from '../record/events';
import { MAX_LOCATION_MIN_DISTANCE_M, publishPolicyError, type PublishPolicy } from '../record/publish-policy';
import type { FetchResult, InventoryDrop, PresenceFreshness, PreviewResult } from '../activities/types';

export type { PresenceFreshness } from '../activities/types';

export type { EventPolicy, EventType } from '../record/events';
export { EVENT_TYPES };
export type { PublishPolicy } from '../record/publish-policy';
export { MAX_LOCATION_MIN_DISTANCE_M };

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
   * Which changes go out at once and which wait (by default, daily counters at most every 15 minutes and the
   * location once it moved 500 m).
   * @default {} (every field's default, see PublishPolicy)
   */
  publishPolicy?: PublishPolicy;
  /**
   * Connectivity events (imeiChanged, presenceLost, …, see record/events.ts) sent to every target as events:
   * which types, and the usage-spike rule.
   * @default {} (off)
   */
  events?: EventPolicy;
  /**
   * A cycle in which more than this fraction of the group's known SIMs vanished from Kite holds until the drop is
   * approved (`acceptDrop`); 0 holds on any drop, 1 never holds.
   * @default the worker's KITE_MAX_LEAVE_FRACTION (0.5)
   */
  maxLeaveFraction?: number;
  /**
   * Every SIM's presence is re-read at least this often, in ms, besides whenever its connectivity hints change:
   * a rolling refresh spread over the cycles, within what Kite's budget leaves after the list pages. A SIM is read
   * early enough that its presence reaches the targets within this age even when a worker dies in the cycle.
   * @default 3600000 (1 hour)
   */
  presenceMaxAgeMs?: number;
}

/**
 * What `configure` may change. Absent fields stay as they are; `publishPolicy` and `events` fields merge into the
 * current ones.
 */
export type ConfigPatch = Partial<
  Pick<
    GroupConfig,
    'intervalMs' | 'targets' | 'maxCyclesPerRun' | 'publishPolicy' | 'events' | 'maxLeaveFraction' | 'presenceMaxAgeMs'
  >
>;

/** Counts of one target's publish step. */
export interface TargetCounts {
  pending: number;
  published: number;
  failed: number;
  throttled: number;
}

/** A target paused as a whole when the cycle published (e.g. its daily message quota spent until 00:00 UTC). */
export interface TargetPause {
  /** Epoch ms when the pause ends; the target's changes stay pending until a cycle after it. */
  pausedUntil?: number;
  /** Why, as the target said. */
  pauseReason?: string;
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
  /**
   * How fresh the group's presence is after the cycle's fetch: the oldest presence age, SIMs past the max age, and
   * whether Kite's budget keeps up with the refresh. Absent in summaries of older runs.
   */
  presence?: PresenceFreshness;
  /** SIMs that left the group since the last cycle. */
  left: number;
  /**
   * Per target: SIMs with a change, SIMs whose only changes (daily counters, a small move) the publish policy held
   * for a later cycle, and how publishing went.
   */
  targets: Record<
    string,
    TargetCounts & { changed: number; held?: number; eventsSent?: number; error?: string } & TargetPause
  >;
  /** Connectivity events detected this cycle (absent while the group's events are off). */
  events?: number;
  /**
   * `completed` when every step and target succeeded; `cancelled` when the group was disabled mid-cycle; `held`
   * when too many SIMs vanished from Kite and nothing was published (see GroupStatus.dropHold).
   */
  outcome?: 'completed' | 'failed' | 'cancelled' | 'held';
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
  /** Set while the group holds because too many SIMs vanished from Kite, until they return or the drop is approved. */
  dropHold?: DropHold;
}

export type { InventoryDrop } from '../activities/types';

/** A group holding for approval of an inventory drop. */
export interface DropHold extends InventoryDrop {
  /** The cycle that found the drop last. */
  cycle: number;
  /** When the group started holding, epoch ms. */
  since: number;
  /** The count the operator approved (`acceptDrop`): the next cycle forgets up to this many missing SIMs. */
  approved?: number;
}

/** Carried across continue-as-new. */
export interface GroupWorkflowInput {
  config: GroupConfig;
  cyclesCompleted?: number;
  lastCycle?: CycleSummary;
  failingSims?: Record<string, number>;
  /** A `syncNow` received while the previous run was ending. */
  syncRequested?: boolean;
  dropHold?: DropHold;
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

/** `acceptDrop`: the count of missing SIMs the operator approves (the count of the group's current hold). */
export interface DropApproval {
  missing: number;
}

/**
 * Approve the inventory drop the group holds on: the next cycle (at once while ON) forgets up to `missing` SIMs
 * that vanished from Kite. Refused when the group holds no drop, or holds one of another count. Returns the hold.
 */
export const acceptDropUpdate = defineUpdate<DropHold, [DropApproval]>('acceptDrop');

/** Why approving `approval` is refused, or undefined. Pure: the workflow's validator and the CLI share it. */
export function dropApprovalError(
  group: string,
  hold: DropHold | undefined,
  approval: DropApproval
): string | undefined {
  if (!Number.isInteger(approval?.missing) || approval.missing < 1)
    return 'missing must be a positive whole count of SIMs';
  if (!hold) return `group ${group} holds no inventory drop: there is nothing to approve`;
  if (approval.missing !== hold.missing) {
    return (
      `group ${group} holds a drop of ${hold.missing} of ${hold.known} SIMs missing, not ${approval.missing}: ` +
      `check \`kite-cc status ${group}\` and approve the count it shows`
    );
  }
  return undefined;
}

/** `preview`: how many SIMs' patches to show per target. */
export interface PreviewRequest {
  /** @default 3, at most 10 */
  sample?: number;
}

/**
 * What a cycle run now would do, found by the cycle's own fetch and diff rule without sending or recording
 * anything: Kite's counts, SIMs that would leave, a drop that would hold the cycle, and per target the SIMs that
 * would be published with a sample of their patches.
 */
export interface GroupPreview extends PreviewResult, Omit<FetchResult, 'presenceFetched'> {
  group: string;
  /** Cloud Monitoring ON: a cycle publishes this at the next interval (OFF: nothing until `enable`). */
  enabled: boolean;
}

/** Dry run of a cycle: fetch and diff, nothing sent or recorded as published. Safe while a cycle runs. */
export const previewUpdate = defineUpdate<GroupPreview, [PreviewRequest]>('preview');

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
/** The shortest presence max age: below it, every SIM's presence would be read nearly every cycle anyway. */
export const MIN_PRESENCE_MAX_AGE_MS = 10_000;
export const MAX_PRESENCE_MAX_AGE_MS = 7 * 24 * 3_600_000;

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
  if (
    patch.presenceMaxAgeMs !== undefined &&
    (!Number.isInteger(patch.presenceMaxAgeMs) ||
      patch.presenceMaxAgeMs < MIN_PRESENCE_MAX_AGE_MS ||
      patch.presenceMaxAgeMs > MAX_PRESENCE_MAX_AGE_MS)
  ) {
    return (
      `presenceMaxAgeMs must be an integer from ${MIN_PRESENCE_MAX_AGE_MS} to ${MAX_PRESENCE_MAX_AGE_MS} ` +
      `(10 s to 7 days), got ${patch.presenceMaxAgeMs}`
    );
  }
  if (patch.maxCyclesPerRun !== undefined && (!Number.isInteger(patch.maxCyclesPerRun) || patch.maxCyclesPerRun < 1)) {
    return `maxCyclesPerRun must be a positive integer, got ${patch.maxCyclesPerRun}`;
  }
  if (
    patch.maxLeaveFraction !== undefined &&
    (typeof patch.maxLeaveFraction !== 'number' || !(patch.maxLeaveFraction >= 0 && patch.maxLeaveFraction <= 1))
  ) {
    return `maxLeaveFraction must be a number from 0 to 1, got ${patch.maxLeaveFraction}`;
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
