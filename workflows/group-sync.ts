/**
 * One durable workflow per monitoring group: every interval, fetch → diff → publish, with Temporal's retries.
 * SIM data never passes through here (it is staged in Redis); the history holds only keys and counts.
 */
import {
  ActivityCancellationType,
  allHandlersFinished,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  log,
  metricMeter,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SyncActivities } from '../activities';
import {
  configPatchError,
  configureUpdate,
  disableSignal,
  enableSignal,
  innermostMessage,
  statusQuery,
  syncNowSignal,
  type CycleSummary,
  type GroupConfig,
  type GroupStatus,
  type GroupWorkflowInput,
} from './definitions';
import { NON_RETRYABLE_FAILURES } from '../shared/failures';
import { KITE_GROUP, KITE_SYNC_STATE } from './search-attributes';

export const DEFAULT_MAX_CYCLES_PER_RUN = 100;

const activities = proxyActivities<SyncActivities>({
  // On `disable`, wait for a cancelled activity to stop: a new cycle never overlaps an old publish.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  // Heartbeats, not this, detect a dead worker: its activity is retried elsewhere within ~15 s.
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '15 seconds',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 20,
    nonRetryableErrorTypes: [...NON_RETRYABLE_FAILURES],
  },
});

export async function groupSyncWorkflow(input: GroupWorkflowInput): Promise<void> {
  const config: GroupConfig = { ...input.config };
  const status: GroupStatus = {
    config,
    phase: 'idle',
    cyclesCompleted: input.cyclesCompleted ?? 0,
    lastCycle: input.lastCycle,
    failingSims: { ...input.failingSims },
  };
  // The first run syncs at once; later runs keep the interval measured from the last cycle.
  let syncRequested = input.syncRequested ?? input.lastCycle === undefined;
  let configVersion = 0;
  let cycleScope: CancellationScope | undefined;

  const publishState = () => {
    upsertSearchAttributes([
      { key: KITE_GROUP, value: config.group },
      { key: KITE_SYNC_STATE, value: config.enabled ? 'ON' : 'OFF' },
    ]);
    upsertMemo({ config: { ...config } });
  };

  setHandler(enableSignal, () => {
    if (config.enabled) return;
    config.enabled = true;
    syncRequested = true;
    publishState();
  });
  setHandler(disableSignal, () => {
    if (!config.enabled) return;
    config.enabled = false;
    cycleScope?.cancel();
    publishState();
  });
  setHandler(syncNowSignal, () => {
    syncRequested = true;
  });
  setHandler(
    configureUpdate,
    (patch) => {
      Object.assign(config, patch);
      configVersion++;
      publishState();
      return { ...config };
    },
    {
      validator: (patch) => {
        const problem = configPatchError(patch);
        if (problem) throw new Error(problem);
      },
    }
  );
  setHandler(statusQuery, () => ({ ...status, config: { ...config } }));

  publishState();
  let cyclesThisRun = 0;
  for (;;) {
    if (
      workflowInfo().continueAsNewSuggested ||
      cyclesThisRun >= (config.maxCyclesPerRun ?? DEFAULT_MAX_CYCLES_PER_RUN)
    ) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof groupSyncWorkflow>({
        config,
        cyclesCompleted: status.cyclesCompleted,
        lastCycle: status.lastCycle,
        failingSims: status.failingSims,
        syncRequested,
      });
    }
    if (!config.enabled) {
      status.nextSyncAt = undefined;
      await condition(() => config.enabled); // no timer while OFF
      continue;
    }
    if (!syncRequested) {
      const due = (status.lastCycle?.finishedAt ?? Date.now()) + config.intervalMs;
      status.nextSyncAt = due;
      const seen = configVersion;
      const woken =
        due > Date.now() &&
        (await condition(() => syncRequested || !config.enabled || configVersion !== seen, due - Date.now()));
      // Disabled or reconfigured: re-evaluate. `disable` wins over a `syncNow` that arrived in the same task.
      if (!config.enabled || (woken && !syncRequested)) continue;
    }
    syncRequested = false;
    status.nextSyncAt = undefined;
    cycleScope = new CancellationScope();
    status.lastCycle = await cycleScope.run(() => runCycle(config, status));
    cycleScope = undefined;
    status.cyclesCompleted++;
    cyclesThisRun++;
  }
}

/** One fetch → diff → publish cycle. Never throws: a failure is reported in the summary and retried next cycle. */
async function runCycle(config: GroupConfig, status: GroupStatus): Promise<CycleSummary> {
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
  try {
    status.phase = 'fetch';
    const fetched = await activities.fetchSnapshot.executeWithOptions(
      { summary: `fetch Kite inventory for group ${group} (cycle ${cycle})` },
      [{ group, cycle }]
    );
    Object.assign(summary, { seen: fetched.seen, inGroup: fetched.inGroup, invalid: fetched.invalid });
    summary.invalidReasons = fetched.invalidReasons;
    summary.presenceErrors = fetched.presenceErrors;

    status.phase = 'diff';
    const diffed = await activities.diffSnapshot.executeWithOptions(
      { summary: `diff group ${group} against ${targets.join(', ')} (cycle ${cycle})` },
      [{ group, cycle, targets }]
    );
    summary.left = diffed.left;

    status.phase = 'publish';
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
        const { published, failed, throttled, failing } = result.value;
        summary.targets[target] = { changed, published, failed, throttled, pending: changed - published - failed };
        status.failingSims[target] = failing;
      } else {
        summary.targets[target] = { changed, published: 0, failed: 0, throttled: 0, pending: changed };
        summary.targets[target].error = innermostMessage(result.reason);
      }
    });
    const failedTargets = targets.filter((_, i) => results[i].status === 'rejected');
    if (failedTargets.length) throw new Error(`publishing to ${failedTargets.join(', ')} failed`);
    summary.outcome = 'completed';
    status.lastError = undefined;
  } catch (err) {
    const cancelled = isCancellation(err) || CancellationScope.current().consideredCancelled;
    summary.outcome = cancelled ? 'cancelled' : 'failed';
    summary.error = cancelled ? 'group disabled during the cycle' : innermostMessage(err);
    if (summary.outcome === 'failed') status.lastError = summary.error;
    log.warn('sync cycle did not complete', { group, cycle, outcome: summary.outcome, error: summary.error });
  } finally {
    status.phase = 'idle';
  }
  summary.finishedAt = Date.now();
  // The workflow's meter reaches the worker's Prometheus endpoint and stays silent during replay.
  metricMeter
    .createHistogram('kite_cc_cycle_duration', 'int', 'ms', 'Duration of a sync cycle')
    .record(summary.finishedAt - summary.startedAt, { group });
  return summary;
}
