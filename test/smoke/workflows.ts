import { proxyActivities } from '@temporalio/workflow';
import type { createSmokeActivities } from './activities';

const { recordVisit } = proxyActivities<ReturnType<typeof createSmokeActivities>>({ startToCloseTimeout: '10s' });

/** Writes `value` under `key` through an activity and returns what Redis then holds. */
export async function smokeWorkflow(key: string, value: string): Promise<string> {
  return recordVisit(key, value);
}
