/**
 * Which SIMs of an inventory page belong to the group, and under which ICC each is filed. Pure: the fetch activity
 * looks up the last known ICCs in Redis between the two steps.
 */
import {
  connectivityHints,
  isInGroup,
  isUsableIcc,
  simIcc,
  simIdentity,
  type GroupFilter,
  type KiteEntries,
  type KiteSim,
} from '../kite';
import type { Entry } from '../state/store';

/**
 * A SIM of the group with a usable ICC. Its Kite entry is parsed only when its SIM, hints or identity are asked
 * for: a settled SIM whose entry hashes as last time needs none of them.
 */
export class GroupSim {
  private hintsOf?: string;

  constructor(
    private readonly entries: KiteEntries,
    private readonly index: number,
    readonly icc: string
  ) {}

  /** The SIM as Kite sent it. */
  get sim(): KiteSim {
    return this.entries.sim(this.index);
  }

  /** The hash of its Kite entry (KiteEntries.hash). */
  get hash(): string {
    return this.entries.hash(this.index);
  }

  /** Its connectivity hints (connectivityHints). */
  get hints(): string {
    return (this.hintsOf ??= connectivityHints(this.sim));
  }

  /** What identifies it besides its ICC (simIdentity); recorded so that it is recognised if its ICC goes bad. */
  get identity(): string | undefined {
    return simIdentity(this.sim);
  }
}

/** A SIM of the group whose ICC Kite sent unusable (a number, empty, F-padded, …). */
export interface UnusableSim {
  /** Its position in Kite's listing. */
  index: number;
  identity?: string;
}

/** The reason an unusable ICC is counted under; mapSim gives the same one. */
export const UNUSABLE_ICC = 'bad-icc';

/**
 * Splits a page's SIMs of the group into those with a usable ICC and those without. With the `supervisionGroup`
 * filter an entry whose group and ICC can be read without parsing it (KiteEntries.peek) is not parsed here.
 */
export function groupSimsOf(
  entries: KiteEntries,
  startIndex: number,
  group: string,
  filter: GroupFilter
): { members: GroupSim[]; unusable: UnusableSim[] } {
  const members: GroupSim[] = [];
  const unusable: UnusableSim[] = [];
  const byGroup = filter.type === 'supervisionGroup';
  for (let i = 0; i < entries.length; i++) {
    const peek = byGroup ? entries.peek(i) : undefined;
    if (peek && peek.group !== group) continue;
    if (peek?.icc !== undefined && isUsableIcc(peek.icc)) {
      members.push(new GroupSim(entries, i, peek.icc));
      continue;
    }
    const sim = entries.sim(i);
    if (!isInGroup(sim, group, filter)) continue;
    const icc = simIcc(sim);
    if (icc === undefined) unusable.push({ index: startIndex + i, identity: simIdentity(sim) });
    else members.push(new GroupSim(entries, i, icc));
  }
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
