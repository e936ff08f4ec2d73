/**
 * A small workflow with the group workflow's contract (workflows/definitions.ts), for exercising the CLI when
 * the real workflow is not there. It runs two fake activities that heartbeat `ActivityProgress`.
 */
import {
  condition,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  ApplicationFailure,
} from '@temporalio/workflow';
import {
  configPatchError,
  configureUpdate,
  disableSignal,
  enableSignal,
  statusQuery,
  syncNowSignal,
  type CycleSummary,
  type CyclePhase,
  type GroupWorkflowInput,
} from '../../workflows/definitions';
import { KITE_SYNC_STATE } from '../../workflows/search-attributes';
import type { createStandInActivities } from './stand-in-activities';

const acts = proxyActivities<ReturnType<typeof createStandInActivities>>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '5s',
  retry: { maximumAttempts: 3, initialInterval: '200ms' },
});

export async function standIn(input: GroupWorkflowInput): Promise<void> {
  const config = { ...input.config };
  let phase: CyclePhase = 'idle';
  let cyclesCompleted = input.cyclesCompleted ?? 0;
  let lastCycle: CycleSummary | undefined = input.lastCycle;
  let syncRequested = input.syncRequested ?? false;
  let nextSyncAt: number | undefined;

  const setEnabled = (enabled: boolean) => {
    config.enabled = enabled;
    upsertSearchAttributes([{ key: KITE_SYNC_STATE, value: enabled ? 'ON' : 'OFF' }]);
  };
  setHandler(enableSignal, () => setEnabled(true));
  setHandler(disableSignal, () => setEnabled(false));
  setHandler(syncNowSignal, () => void (syncRequested = true));
  setHandler(
    configureUpdate,
    (patch) => {
      Object.assign(config, patch);
      upsertMemo({ config });
      return { ...config };
    },
    {
      validator: (patch) => {
        const reason = configPatchError(patch);
        if (reason) throw ApplicationFailure.nonRetryable(reason, 'InvalidConfig');
      },
    }
  );
  setHandler(statusQuery, () => ({
    config: { ...config },
    phase,
    cyclesCompleted,
    lastCycle,
    nextSyncAt: config.enabled ? nextSyncAt : undefined,
    failingSims: {},
  }));

  for (;;) {
    nextSyncAt = Date.now() + config.intervalMs;
    const due = await condition(() => config.enabled && syncRequested, config.intervalMs);
    if (!due && !config.enabled) continue;
    syncRequested = false;
    const startedAt = Date.now();
    phase = 'fetch';
    const fetched = await acts.standInFetch(config.group);
    phase = 'publish';
    const targets: CycleSummary['targets'] = {};
    for (const target of config.targets) {
      const published = await acts.standInPublish(target, fetched);
      targets[target] = { changed: fetched, pending: 0, published, failed: 0, throttled: 0 };
    }
    phase = 'idle';
    cyclesCompleted += 1;
    const finishedAt = Date.now();
    lastCycle = {
      cycle: cyclesCompleted,
      startedAt,
      finishedAt,
      seen: fetched,
      inGroup: fetched,
      invalid: 0,
      invalidReasons: {},
      left: 0,
      targets,
    };
  }
}

export { standIn as groupSyncWorkflow };
