/**
 * Which SIMs of an inventory page belong to the group, and under which ICC each is filed. Pure: the fetch activity
 * looks up the last known ICCs in Redis between the two steps.
 */
import { connectivityHints, isInGroup, simIcc, simIdentity, type GroupFilter, type KiteSim } from '../kite';
import type { Entry } from '../state/store';

/** A SIM of the group with a usable ICC. */
export interface GroupSim {
  sim: KiteSim;
  icc: string;
  /** Its connectivity hints (connectivityHints). */
  hints: string;
  /** What identifies it besides its ICC (simIdentity); recorded so that it is recognised if its ICC goes bad. */
  identity?: string;
}

/** A SIM of the group whose ICC Kite sent unusable (a number, empty, F-padded, …). */
export interface UnusableSim {
  /** Its position in Kite's listing. */
  index: number;
  identity?: string;
}

/** The reason an unusable ICC is counted under; mapSim gives the same one. */
export const UNUSABLE_ICC = 'bad-icc';

/** Splits a page's SIMs of the group into those with a usable ICC and those without. */
export function groupSimsOf(
  sims: KiteSim[],
  startIndex: number,
  group: string,
  filter: GroupFilter
): { members: GroupSim[]; unusable: UnusableSim[] } {
  const members: GroupSim[] = [];
  const unusable: UnusableSim[] = [];
  sims.forEach((sim, i) => {
    if (!isInGroup(sim, group, filter)) return;
    const icc = simIcc(sim);
    const identity = simIdentity(sim);
    if (icc === undefined) unusable.push({ index: startIndex + i, identity });
    else members.push({ sim, icc, hints: connectivityHints(sim), identity });
  });
  return { members, unusable };
}

/**
 * The invalid entries of SIMs with an unusable ICC. Each is filed under its last known ICC (`lastKnown[i]`, found
 * by its identity), so it is not taken for a SIM that left the group, its targets keep what they hold, and the
 * operator and the diff see which SIM went bad. A SIM never seen with a usable ICC is filed under `#<index>`.
 */
export function unusableEntries(unusable: UnusableSim[], lastKnown: (string | null)[]): Entry[] {
  return unusable.map((u, i) => [lastKnown[i] ?? `#${u.index}`, UNUSABLE_ICC]);
}
