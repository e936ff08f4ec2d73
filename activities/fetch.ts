import { Context } from '@temporalio/activity';
import { mapPool } from '../shared/concurrency';
import { throwIfCancelled, whileNotCancelled } from './cancellation';
import type { Logger } from '../shared/log';
import { canonicalJson } from '../record';
import type { Entry, StateStore } from '../state/store';
import { connectivityHints, isInGroup, mapSim, simIcc, type KitePresence, type KiteSim } from '../kite';
import type { KiteSource } from './kite-source';
import type { CycleRef, FetchResult } from './types';

export interface FetchDeps {
  store: StateStore;
  kite: KiteSource;
  logger: Logger;
  /** Presence requests in flight at once; the Kite client's rate budget still applies. @default 8 */
  presenceConcurrency?: number;
  onProgress?: (group: string, fetched: number) => void;
}

interface FetchCheckpoint {
  phase: 'fetch';
  done: number;
  cursor: number;
  counts: FetchResult;
}

interface Connectivity {
  h: string;
  p?: KitePresence;
}

const emptyCounts = (): FetchResult => ({ seen: 0, inGroup: 0, invalid: 0, invalidReasons: {}, presenceFetched: 0 });

/**
 * Pages the Kite inventory, keeps the group's SIMs, reads presence only where connectivity hints changed, maps
 * and validates each SIM, and stages the snapshot in Redis. Resumes from its last heartbeat on retry.
 */
export function createFetchActivity(deps: FetchDeps) {
  return async function fetchSnapshot({ group, cycle }: CycleRef): Promise<FetchResult> {
    const ctx = Context.current();
    const resumed = ctx.info.heartbeatDetails as FetchCheckpoint | undefined;
    const counts = resumed?.counts ?? emptyCounts();
    if (!resumed) {
      await deps.store.dropStaging(group, cycle);
      await deps.store.dropStaging(group, cycle - 1);
    }
    let checkpoint: FetchCheckpoint = {
      phase: 'fetch',
      done: counts.seen,
      cursor: resumed?.cursor ?? 0,
      counts: structuredClone(counts),
    };
    const beat = () => ctx.heartbeat(checkpoint);
    // Presence reads may take minutes for a page at Kite's rate budget: keep heartbeating the last checkpoint, at
    // most once a second. Every heartbeat is serialised and handed to the SDK core; one per presence read cost a
    // 100k-SIM first sync about a fifth of its CPU (BENCHMARKS.md). Each page's new checkpoint is always sent.
    let lastBeat = 0;
    const keepAlive = () => {
      const now = Date.now();
      if (now - lastBeat < 1_000) return;
      lastBeat = now;
      beat();
    };
    await whileNotCancelled(async () => {
      for await (const page of deps.kite.pages(group, checkpoint.cursor, ctx.cancellationSignal)) {
        counts.seen += page.sims.length;
        await stageGroupPage(deps, group, cycle, page.sims, page.startIndex, counts, ctx.cancellationSignal, keepAlive);
        checkpoint = { phase: 'fetch', done: counts.seen, cursor: page.nextIndex, counts: structuredClone(counts) };
        beat();
        deps.onProgress?.(group, page.sims.length);
        throwIfCancelled();
      }
    });
    deps.logger.info('fetched group snapshot', { group, cycle, ...counts });
    return counts;
  };
}

async function stageGroupPage(
  deps: FetchDeps,
  group: string,
  cycle: number,
  sims: KiteSim[],
  startIndex: number,
  counts: FetchResult,
  signal: AbortSignal,
  beat: () => void
): Promise<void> {
  const { kite, store } = deps;
  const invalid: Entry[] = [];
  const members: { sim: KiteSim; icc: string; hints: string }[] = [];
  const filter = kite.filterOf(group);
  sims.forEach((sim, i) => {
    if (!isInGroup(sim, group, filter)) return;
    const icc = simIcc(sim);
    if (icc === undefined) invalid.push([`#${startIndex + i}`, 'bad-icc']);
    else members.push({ sim, icc, hints: connectivityHints(sim) });
  });
  const known = await store.knownConnectivity(
    group,
    members.map((m) => m.icc)
  );
  const previous = known.map((json) => (json ? (JSON.parse(json) as Connectivity) : undefined));
  const stale = members.map((m, i) => previous[i]?.h !== m.hints);
  const fresh = await mapPool(members, deps.presenceConcurrency ?? 8, (m, i) =>
    stale[i] ? kite.presence(m.icc, signal).finally(beat) : Promise.resolve(previous[i]?.p)
  );

  const records: Entry[] = [];
  const connectivity: Entry[] = [];
  members.forEach((m, i) => {
    if (stale[i]) {
      counts.presenceFetched++;
      connectivity.push([m.icc, JSON.stringify({ h: m.hints, p: fresh[i] })]);
    }
    const mapped = mapSim(m.sim, fresh[i]);
    if (mapped.ok) records.push([m.icc, canonicalJson(mapped.record)]);
    else invalid.push([m.icc, mapped.reason]);
  });
  for (const [, reason] of invalid) counts.invalidReasons[reason] = (counts.invalidReasons[reason] ?? 0) + 1;
  counts.invalid += invalid.length;
  counts.inGroup += records.length;
  await store.stagePage(group, cycle, { records, connectivity, invalid });
}
