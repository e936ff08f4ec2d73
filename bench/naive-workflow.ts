/**
 * Baseline (b): the straightforward design, one activity per SIM. One activity fetches the group (pages,
 * presence, mapping, staged in Redis) and returns its ICCs; then one activity per SIM diffs and publishes it.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { NaiveActivities } from './naive-activities';

const { listGroup } = proxyActivities<NaiveActivities>({ startToCloseTimeout: '30 minutes' });
const { syncSim } = proxyActivities<NaiveActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5 },
});

export async function naiveGroupSyncWorkflow(input: {
  group: string;
  cycle: number;
  target: string;
}): Promise<{ sims: number; published: number }> {
  const iccids = await listGroup(input);
  const results = await Promise.all(iccids.map((iccid) => syncSim({ ...input, iccid })));
  return { sims: iccids.length, published: results.filter(Boolean).length };
}
