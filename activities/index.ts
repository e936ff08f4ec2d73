/**
 * The sync activities, built from their dependencies so the worker hands them Redis, Kite and the targets and
 * tests can hand them the simulator and local peers.
 */
import { createDiffActivity, type DiffDeps } from './diff';
import { createFetchActivity, type FetchDeps } from './fetch';
import { createPreviewActivity } from './preview';
import { createPublishActivity, type PublishDeps } from './publish';
import { createResyncActivity } from './resync';

export type ActivityDeps = FetchDeps & DiffDeps & PublishDeps;

export function createActivities(deps: ActivityDeps) {
  return {
    fetchSnapshot: createFetchActivity(deps),
    diffSnapshot: createDiffActivity(deps),
    publishChanges: createPublishActivity(deps),
    resyncSims: createResyncActivity(deps),
    previewChanges: createPreviewActivity(deps),
  };
}

export type SyncActivities = ReturnType<typeof createActivities>;
export type * from './types';
