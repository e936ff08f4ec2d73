import { Context } from '@temporalio/activity';
import type { Logger } from '../shared/log';
import { KEPT, type StateStore } from '../state/store';
import { decideSim, findLeavers, type DiffDeps } from './diff';
import type { PreviewInput, PreviewResult } from './types';

export interface PreviewDeps extends Pick<DiffDeps, 'maxLeaveFraction' | 'batchSize'> {
  store: StateStore;
  logger: Logger;
}

/** Most SIMs whose patch one preview returns per target: the sample enters the workflow's history. */
export const MAX_PREVIEW_SAMPLE = 10;

/**
 * `kite-cc preview`: the diff of a snapshot the fetch activity staged for the preview (under its own cycle
 * number, apart from any cycle's staging), with the diff's own rule per SIM (`decideSim`) and drop check, but
 * writing nothing: no pending patch, no counter release time, nothing forgotten. Returns per target how many SIMs
 * a cycle run now would publish and a bounded sample of their patches, then drops the preview's staging.
 */
export function createPreviewActivity(deps: PreviewDeps) {
  return async function previewChanges(input: PreviewInput): Promise<PreviewResult> {
    const { group, cycle, targets, policy } = input;
    const { store } = deps;
    const sampleSize = Math.max(0, Math.min(MAX_PREVIEW_SAMPLE, input.sampleSize ?? 3));
    const result: PreviewResult = { left: 0, targets: {} };
    for (const t of targets) result.targets[t] = { publish: 0, full: 0, held: 0, stillFailing: 0, sample: [] };
    const { leavers, drop } = await findLeavers(deps, group, cycle, input);
    result.left = leavers.length;
    if (drop) result.drop = drop;
    const now = Date.now();
    let done = 0;
    for await (const staged of store.scanSnapshot(group, cycle, deps.batchSize ?? 1000)) {
      // Settled SIMs whose Kite entry did not change (KEPT) would send nothing.
      const entries = staged.filter(([, json]) => json !== KEPT);
      const lookups = await store.lookups(
        group,
        targets,
        entries.map(([iccid]) => iccid)
      );
      targets.forEach((target, t) => {
        const counts = result.targets[target];
        entries.forEach(([iccid, json], i) => {
          const decision = decideSim(json, lookups[t], i, policy, now);
          if (!decision.send) {
            if (decision.why === 'held') counts.held++;
            if (decision.why === 'stillFailing') counts.stillFailing++;
            return;
          }
          counts.publish++;
          if (decision.full) counts.full++;
          if (counts.sample.length < sampleSize) {
            counts.sample.push({
              iccid,
              full: decision.full,
              patch: JSON.parse(decision.patch) as Record<string, unknown>,
            });
          }
        });
      });
      done += entries.length;
      Context.current().heartbeat({ phase: 'diff', done });
    }
    await store.dropStaging(group, cycle);
    deps.logger.info('previewed group changes', { group, left: result.left, drop: result.drop });
    return result;
  };
}
