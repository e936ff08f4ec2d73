/** Fake fetch and publish steps that take a little time and heartbeat `ActivityProgress` like the real ones. */
import { heartbeat, sleep } from '@temporalio/activity';
import type { ActivityProgress } from '../../workflows/definitions';

export interface StandInOptions {
  /** SIMs each cycle pretends to fetch. @default 5 */
  sims?: number;
  /** Pause per SIM, so that `sync --wait` sees progress. @default 150 */
  stepMs?: number;
}

export const createStandInActivities = ({ sims = 5, stepMs = 150 }: StandInOptions = {}) => ({
  async standInFetch(_group: string): Promise<number> {
    for (let done = 1; done <= sims; done++) {
      await sleep(stepMs);
      heartbeat({ phase: 'fetch', done } satisfies ActivityProgress);
    }
    return sims;
  },
  async standInPublish(target: string, count: number): Promise<number> {
    for (let done = 1; done <= count; done++) {
      await sleep(stepMs);
      heartbeat({ phase: 'publish', target, done, failed: 0 } satisfies ActivityProgress);
    }
    return count;
  },
});
