/**
 * One durable workflow per monitoring group: every interval, fetch → diff → publish, with Temporal's retries.
 * SIM data never passes through here (it is staged in Redis); the history holds only keys and counts.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  log,
  metricMeter,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SyncActivities } from '../activities';
import { FailureType, NON_RETRYABLE_FAILURES } from '../shared/failures';
import {
  acceptDropUpdate,
  configPatchError,
  configureUpdate,
  dropApprovalError,
  disableSignal,
  enableSignal,
  groupNameError,
  innermostMessage,
  previewUpdate,
  resyncUpdate,
  statusQuery,
  syncNowSignal,
  type ConfigPatch,
  type CycleSummary,
  type DropApproval,
  type DropHold,
  type GroupConfig,
  type GroupStatus,
  type InventoryDrop,
  type GroupPreview,
  type GroupWorkflowInput,
  type PreviewRequest,
  type ResyncRequest,
} from './definitions';
import { dropHoldText, groupDetails } from './details';
import { groupVisibility } from './search-attributes';

export const DEFAULT_MAX_CYCLES_PER_RUN = 100;

const activities = proxyActivities<SyncActivities>({
  // On `disable`, wait for a cancelled activity to stop: a new cycle never overlaps an old publish.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  // Heartbeats, not this, detect a dead worker: the activities beat every second while they work (slow Kite
  // requests and target calls included), so a silence of 10 s means the worker is gone.
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '10 seconds',
  // Bounded recovery: a crashed activity resumes within heartbeat timeout + 5 s (about 15 s), however many
  // crashes came before; Temporal's default backoff would add up to a minute per crash from the 7th on.
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '5 seconds',
    maximumAttempts: 20,
    nonRetryableErrorTypes: [...NON_RETRYABLE_FAILURES],
  },
});

/** The staging cycle number of previews: cycles count from 1 and drop their predecessor's staging, never this. */
export const PREVIEW_CYCLE = -1;

/** Patch id: a cycle whose activity ran out of attempts is followed by the next cycle at once. */
const RETRY_AFTER_EXHAUSTED_ATTEMPTS = 'retry-cycle-after-exhausted-attempts';

export async function groupSyncWorkflow(input: GroupWorkflowInput): Promise<void> {
  const problem = groupNameError(input.config.group);
  if (problem) throw ApplicationFailure.nonRetryable(problem, FailureType.InvalidGroupName);
  const sync = new GroupSync(input);
  sync.setHandlers();
  return sync.run();
}

/** A group's state and message handlers; `run` is the loop: wait until due, run a cycle, continue-as-new. */
class GroupSync {
  private readonly config: GroupConfig;
  private readonly status: GroupStatus;
  /** The first run syncs at once; later runs keep the interval measured from the last cycle. */
  private syncRequested: boolean;
  /** When an operator asked for the next cycle (workflow time): its fetch reads Kite as of then or later. */
  private freshAfter: number | undefined;
  /** Bumped by `configure`, so a wait for the next cycle starts again with the new interval. */
  private configVersion = 0;
  private cycleScope: CancellationScope | undefined;
  private cyclesThisRun = 0;

  constructor(input: GroupWorkflowInput) {
    this.config = { ...input.config };
    this.status = {
      config: this.config,
      phase: 'idle',
      cyclesCompleted: input.cyclesCompleted ?? 0,
      lastCycle: input.lastCycle,
      failingSims: { ...input.failingSims },
      dropHold: input.dropHold,
    };
    this.syncRequested = input.syncRequested ?? input.lastCycle === undefined;
  }

  setHandlers(): void {
    setHandler(enableSignal, () => this.setEnabled(true));
    setHandler(disableSignal, () => this.setEnabled(false));
    setHandler(syncNowSignal, () => this.requestSync());
    setHandler(configureUpdate, (patch) => this.configure(patch), {
      validator: (patch) => {
        const problem = configPatchError(patch);
        if (problem) throw new Error(problem);
      },
    });
    setHandler(statusQuery, () => ({ ...this.status, config: { ...this.config } }));
    setHandler(acceptDropUpdate, (approval) => this.acceptDrop(approval), {
      validator: (approval) => {
        const problem = dropApprovalError(this.config.group, this.status.dropHold, approval);
        if (problem) throw new Error(problem);
      },
    });
    setHandler(previewUpdate, (request) => this.preview(request));
    setHandler(resyncUpdate, (request) => this.resync(request), {
      validator: (request) => {
        const unknown = (request.targets ?? []).filter((t: string) => !this.config.targets.includes(t));
        if (unknown.length) {
          throw new Error(
            `group ${this.config.group} has no target ${unknown.join(', ')} (its targets: ${this.config.targets.join(', ')})`
          );
        }
        if (
          request.sims &&
          (!Array.isArray(request.sims) || request.sims.some((icc: string) => !/^\d{6,22}$/.test(icc)))
        ) {
          throw new Error('sims must be ICCIDs of 6 to 22 digits');
        }
      },
    });
  }

  async run(): Promise<void> {
    this.publishState();
    for (;;) {
      if (this.runIsLongEnough()) {
        await condition(allHandlersFinished);
        return continueAsNew<typeof groupSyncWorkflow>(this.carriedOver());
      }
      if (!this.config.enabled) {
        this.status.nextSyncAt = undefined;
        showDetails(this.status);
        await condition(() => this.config.enabled); // no timer while OFF
        continue;
      }
      if (!this.syncRequested && !(await this.waitUntilDue())) continue;
      await this.cycle();
    }
  }

  private setEnabled(enabled: boolean): void {
    if (this.config.enabled === enabled) return;
    this.config.enabled = enabled;
    if (enabled) this.requestSync();
    else this.cycleScope?.cancel();
    this.publishState();
  }

  /** Waits until no cycle runs (a publish in flight would record what it sends), then queues the SIMs. */
  private async resync(request: ResyncRequest): Promise<Record<string, number>> {
    await condition(() => this.status.phase === 'idle');
    const targets = request.targets?.length ? request.targets : [...this.config.targets];
    const queued = await activities.resyncSims.executeWithOptions(
      {
        summary: `resync ${request.sims ? `${request.sims.length} SIMs` : 'every SIM'} of ${this.config.group} to ${targets.join(', ')}`,
      },
      [{ group: this.config.group, targets, sims: request.sims }]
    );
    if (request.now) this.requestSync();
    return queued;
  }

  /** An operator asked for a cycle now (syncNow, enable, resync --now, accept-drop). */
  private requestSync(): void {
    this.syncRequested = true;
    this.freshAfter ??= Date.now();
  }

  /** The next cycle (at once while ON) forgets up to the approved count of missing SIMs. */
  private acceptDrop({ missing }: DropApproval): DropHold {
    const hold = (this.status.dropHold = { ...this.status.dropHold!, approved: missing });
    this.requestSync();
    showDetails(this.status);
    return hold;
  }

  private previewing = false;

  /**
   * Fetch and the diff's rule, nothing written: the fetch stages under the cycle number PREVIEW_CYCLE, apart from
   * every cycle's staging, so a preview may run beside a cycle; previews run one at a time.
   */
  private async preview(request: PreviewRequest): Promise<GroupPreview> {
    await condition(() => !this.previewing);
    this.previewing = true;
    try {
      const { group, publishPolicy: policy, maxLeaveFraction } = this.config;
      const targets = [...this.config.targets];
      const ref = { group, cycle: PREVIEW_CYCLE };
      const { presenceFetched: _, ...fetched } = await activities.fetchSnapshot.executeWithOptions(
        { summary: `preview: fetch Kite inventory for group ${group}` },
        [ref]
      );
      const approvedDrop = this.status.dropHold?.approved;
      const previewed = await activities.previewChanges.executeWithOptions(
        { summary: `preview: diff group ${group} against ${targets.join(', ')} (nothing written)` },
        [{ ...ref, targets, policy, maxLeaveFraction, approvedDrop, sampleSize: request?.sample }]
      );
      return { group, enabled: this.config.enabled, ...fetched, ...previewed };
    } finally {
      this.previewing = false;
    }
  }

  private configure(patch: ConfigPatch): GroupConfig {
    const { publishPolicy, events, ...rest } = patch;
    Object.assign(this.config, rest);
    if (publishPolicy) this.config.publishPolicy = { ...this.config.publishPolicy, ...publishPolicy };
    if (events) this.config.events = { ...this.config.events, ...events };
    this.configVersion++;
    this.publishState();
    return { ...this.config };
  }

  /** The search attributes and memo show the configuration: ON/OFF in the list, the rest in the memo. */
  private publishState(): void {
    const { searchAttributes, memo } = groupVisibility(this.config);
    upsertSearchAttributes(searchAttributes);
    upsertMemo(memo);
    showDetails(this.status);
  }

  private runIsLongEnough(): boolean {
    const maxCycles = this.config.maxCyclesPerRun ?? DEFAULT_MAX_CYCLES_PER_RUN;
    return workflowInfo().continueAsNewSuggested || this.cyclesThisRun >= maxCycles;
  }

  private carriedOver(): GroupWorkflowInput {
    const { cyclesCompleted, lastCycle, failingSims, dropHold } = this.status;
    return {
      config: this.config,
      cyclesCompleted,
      lastCycle,
      failingSims,
      syncRequested: this.syncRequested,
      dropHold,
    };
  }

  /**
   * Sleeps until the interval since the last cycle has passed. False when woken early without a `syncNow`
   * (disabled or reconfigured): the caller re-evaluates. `disable` wins over a `syncNow` in the same task.
   */
  private async waitUntilDue(): Promise<boolean> {
    const due = (this.status.lastCycle?.finishedAt ?? Date.now()) + this.config.intervalMs;
    this.status.nextSyncAt = due;
    showDetails(this.status);
    const seen = this.configVersion;
    const woken =
      due > Date.now() &&
      (await condition(
        () => this.syncRequested || !this.config.enabled || this.configVersion !== seen,
        due - Date.now()
      ));
    return this.config.enabled && !(woken && !this.syncRequested);
  }

  /** Cycles in a row that ended with an activity out of attempts; the first one is followed by a cycle at once. */
  private exhaustedInARow = 0;

  private async cycle(): Promise<void> {
    this.syncRequested = false;
    const freshAfter = this.freshAfter;
    this.freshAfter = undefined;
    this.status.nextSyncAt = undefined;
    this.cycleScope = new CancellationScope();
    const summary = await this.cycleScope.run(() => runCycle(this.config, this.status, freshAfter));
    this.status.lastCycle = summary;
    this.cycleScope = undefined;
    this.status.cyclesCompleted++;
    this.cyclesThisRun++;
    // Its SIMs should not wait a whole interval for a crash loop that has passed; a fault that lasts (a second
    // exhausted cycle in a row) waits for the interval as usual.
    this.exhaustedInARow = summary.attemptsExhausted ? this.exhaustedInARow + 1 : 0;
    if (this.exhaustedInARow === 1 && patched(RETRY_AFTER_EXHAUSTED_ATTEMPTS)) this.syncRequested = true;
    showDetails(this.status);
  }
}

/** The group's live status on the workflow's page in the Web UI (no history event: replay is unaffected). */
function showDetails(status: GroupStatus): void {
  setCurrentDetails(groupDetails(status));
}

/** True when an activity failed because Temporal ran out of attempts (not for a non-retryable failure). */
function ranOutOfAttempts(err: unknown): boolean {
  return err instanceof ActivityFailure && err.retryState === 'MAXIMUM_ATTEMPTS_REACHED';
}

/** One fetch → diff → publish cycle. Never throws: a failure is reported in the summary and retried next cycle. */
async function runCycle(config: GroupConfig, status: GroupStatus, freshAfter?: number): Promise<CycleSummary> {
  const { group } = config;
  const targets = [...config.targets];
  const cycle = status.cyclesCompleted + 1;
  const summary: CycleSummary = {
    cycle,
    startedAt: Date.now(),
    finishedAt: 0,
    seen: 0,
    inGroup: 0,
    invalid: 0,
    invalidReasons: {},
    left: 0,
    targets: {},
  };
  let publishRejections: unknown[] = [];
  try {
    status.phase = 'fetch';
    showDetails(status);
    const fetched = await activities.fetchSnapshot.executeWithOptions(
      { summary: `fetch Kite inventory for group ${group} (cycle ${cycle})` },
      [
        {
          group,
          cycle,
          ...(freshAfter !== undefined && { freshAfter }),
          intervalMs: config.intervalMs,
          ...(config.presenceMaxAgeMs !== undefined && { presenceMaxAgeMs: config.presenceMaxAgeMs }),
        },
      ]
    );
    Object.assign(summary, { seen: fetched.seen, inGroup: fetched.inGroup, invalid: fetched.invalid });
    summary.invalidReasons = fetched.invalidReasons;
    summary.presenceErrors = fetched.presenceErrors;
    if (fetched.presence) summary.presence = fetched.presence;

    status.phase = 'diff';
    showDetails(status);
    const limits = { maxLeaveFraction: config.maxLeaveFraction, approvedDrop: status.dropHold?.approved };
    const diffed = await activities.diffSnapshot.executeWithOptions(
      { summary: `diff group ${group} against ${targets.join(', ')} (cycle ${cycle})` },
      [{ group, cycle, targets, policy: config.publishPolicy, events: config.events, ...limits }]
    );
    summary.left = diffed.left;
    if (diffed.events !== undefined) summary.events = diffed.events;
    status.dropHold = diffed.drop && holdFor(diffed.drop, cycle, status.dropHold, limits.approvedDrop);
    if (status.dropHold) throw new DropHeld(dropHoldText(group, status.dropHold));

    status.phase = 'publish';
    showDetails(status);
    const results = await Promise.allSettled(
      targets.map((target) =>
        activities.publishChanges.executeWithOptions(
          { summary: `publish ${diffed.targets[target].changed} changed SIMs of ${group} to ${target}` },
          [{ group, cycle, target }]
        )
      )
    );
    targets.forEach((target, i) => {
      const changed = diffed.targets[target].changed;
      const result = results[i];
      if (result.status === 'fulfilled') {
        const { published, failed, throttled, failing, eventsSent, pausedUntil, pauseReason } = result.value;
        // Pending as Redis holds it (older workers did not say: then what this attempt's counts leave).
        const pending = result.value.pending ?? Math.max(0, changed - published - failed);
        summary.targets[target] = { changed, held: diffed.targets[target].held, published, failed, throttled, pending };
        if (eventsSent) summary.targets[target].eventsSent = eventsSent;
        if (pausedUntil) Object.assign(summary.targets[target], { pausedUntil, pauseReason });
        status.failingSims[target] = failing;
      } else {
        const held = diffed.targets[target].held;
        summary.targets[target] = { changed, held, published: 0, failed: 0, throttled: 0, pending: changed };
        summary.targets[target].error = innermostMessage(result.reason);
      }
    });
    const failedTargets = targets.filter((_, i) => results[i].status === 'rejected');
    publishRejections = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failedTargets.length) {
      const reasons = failedTargets.map((t) => `${t}: ${summary.targets[t].error}`).join('; ');
      throw new Error(`publishing to ${failedTargets.join(', ')} failed (${reasons})`);
    }
    summary.outcome = 'completed';
    status.lastError = undefined;
  } catch (err) {
    if (err instanceof DropHeld) {
      summary.outcome = 'held';
      summary.error = err.message;
      status.lastError = undefined;
      return finish(summary, group);
    }
    const cancelled = isCancellation(err) || CancellationScope.current().consideredCancelled;
    summary.outcome = cancelled ? 'cancelled' : 'failed';
    summary.error = cancelled ? 'group disabled during the cycle' : innermostMessage(err);
    const exhausted = [err, ...publishRejections].some(ranOutOfAttempts);
    if (exhausted && !cancelled) {
      summary.attemptsExhausted = true;
      summary.error = `attempts exhausted, next cycle starts at once: ${summary.error}`;
    }
    if (summary.outcome === 'failed') status.lastError = summary.error;
    log.warn('sync cycle did not complete', { group, cycle, outcome: summary.outcome, error: summary.error });
  } finally {
    status.phase = 'idle';
  }
  return finish(summary, group);
}

function finish(summary: CycleSummary, group: string): CycleSummary {
  summary.finishedAt = Date.now();
  // The workflow's meter reaches the worker's Prometheus endpoint and stays silent during replay.
  metricMeter
    .createHistogram('kite_cc_cycle_duration', 'int', 'ms', 'Duration of a sync cycle')
    .record(summary.finishedAt - summary.startedAt, { group });
  return summary;
}

/** A cycle's diff found too many SIMs missing: nothing is published until they return or the drop is approved. */
class DropHeld extends Error {}

/**
 * The hold after a diff found `drop` (the diff had `passed`, an approval that did not cover it). It keeps its start
 * time; an approval given while this cycle ran, after its diff started, still counts if it covers the drop, and
 * the cycle it asked for runs next.
 */
function holdFor(drop: InventoryDrop, cycle: number, before: DropHold | undefined, passed: number | undefined) {
  const lateApproval = before?.approved === passed ? undefined : before?.approved;
  return {
    ...drop,
    cycle,
    since: before?.since ?? Date.now(),
    approved: lateApproval !== undefined && drop.missing <= lateApproval ? lateApproval : undefined,
  };
}
