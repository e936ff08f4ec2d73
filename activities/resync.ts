import type { Logger } from '../shared/log';
import type { StateStore } from '../state/store';
import type { ResyncInput } from './types';

export interface ResyncDeps {
  store: StateStore;
  logger: Logger;
}

/**
 * Forgets what each target holds for the SIMs (and their failures), so that the next diff queues their whole
 * record: a twin deleted in the cloud is rebuilt. Returns, per target, how many SIMs it queued. Idempotent.
 */
export function createResyncActivity(deps: ResyncDeps) {
  return async function resyncSims({ group, targets, sims }: ResyncInput): Promise<Record<string, number>> {
    const queued: Record<string, number> = {};
    for (const target of targets) queued[target] = await deps.store.forgetPublished(group, target, sims);
    deps.logger.info('queued SIMs for a full republish', { group, queued, sims: sims?.length ?? 'all' });
    return queued;
  };
}
