import { Context } from '@temporalio/activity';
import { createHash } from 'node:crypto';
import type { DetectedEvent, EventBaseline, EventPolicy, PublishPolicy, SimEvent, SimRecord } from '../record';
import type { Logger } from '../shared/log';
import {
  applyPublishPolicy,
  canonicalJson,
  detectEvents,
  diffRecords,
  withUncertainKeys,
  type SimPatch,
} from '../record';
import { KEPT, type Entry, type StateStore, type TargetLookup } from '../state/store';
import type { ConfiguredTarget } from './publish';
import type { DiffInput, DiffResult, InventoryDrop } from './types';

export interface DiffDeps {
  store: StateStore;
  logger: Logger;
  /**
   * Hold a cycle in which more than this fraction of the group's known SIMs disappeared, whatever the group's size,
   * until the operator approves the drop (`kite-cc accept-drop`), rather than forgetting them and republishing them
   * in full later: a truncated inventory looks the same. A group's own `maxLeaveFraction` takes precedence.
   * @default 0.5 (KITE_MAX_LEAVE_FRACTION)
   */
  maxLeaveFraction?: number;
  /** SIMs compared per Redis round trip. @default 1000 */
  batchSize?: number;
  onDiff?: (group: string, target: string, changed: number) => void;
  /**
   * The clock the publish policy reads (when a SIM's counters last went out, and whether their interval is over),
   * epoch ms. The policy-day benchmark hands it the simulator's clock. @default Date.now
   */
  now?: () => number;
  /** The worker's targets: those with `leftGroupNotice` are told when a SIM leaves the group. @default none */
  targets?: ReadonlyMap<string, Pick<ConfiguredTarget, 'leftGroupNotice'>>;
}

/**
 * Compares the staged snapshot with what each target last acknowledged and writes the pending patches: the
 * whole record for a SIM new to the target, changed keys (null for removed ones) otherwise, nothing when equal.
 * A SIM whose last patch was handed to the target but never acknowledged is uncertain: every key of that patch
 * is sent again with its current value, even when the snapshot equals what was acknowledged (the target may
 * hold the unacknowledged values). SIMs that left the group are forgotten; when too many left at once, nothing
 * is written and the result's `drop` holds the cycle until the operator approves it. Idempotent: pending is
 * always recomputed from published + snapshot + uncertain.
 */
export function createDiffActivity(deps: DiffDeps) {
  return async function diffSnapshot({
    group,
    cycle,
    targets,
    policy,
    events,
    ...limits
  }: DiffInput): Promise<DiffResult> {
    const { store } = deps;
    const result: DiffResult = { left: 0, targets: {} };
    for (const target of targets) result.targets[target] = { changed: 0, stillFailing: 0, held: 0 };
    // Checked before anything is written: a held cycle leaves pending and the counters' times as they were.
    const { leavers, drop } = await findLeavers(deps, group, cycle, limits);
    if (drop) {
      deps.logger.warn('inventory drop held for approval', { group, cycle, ...drop });
      return { ...result, drop };
    }
    const pendingNonEmpty = await Promise.all(targets.map((t) => store.hasPending(group, t)));
    const eventsOn = !!events?.types?.length;
    if (!eventsOn) await store.dropEventBaselines(group);
    const joining = eventsOn && (await store.eventsBaselined(group));
    // Settled SIMs the fetch passed by (KEPT) need no diff, unless a target is new since the settled marks were
    // recorded: then their record is what a target that had them settled holds.
    const settledFor = (await store.settledFor(group)) ?? [];
    const anchor = settledFor[0];
    // So does a first diff with events on: every SIM gets its event baseline.
    const newTargets = targets.some((t) => !settledFor.includes(t)) || (eventsOn && !joining);
    let done = 0;
    const now = (deps.now ?? Date.now)();
    // When the fetch indexed its records, the KEPT SIMs are not read at all unless they need a diff.
    const batchSize = deps.batchSize ?? 1000;
    const onlyRecords = !newTargets && (await store.stagingIndexed(group, cycle)) !== undefined;
    const batches = onlyRecords
      ? store.scanStagedRecords(group, cycle, batchSize)
      : store.scanSnapshot(group, cycle, batchSize);
    for await (const staged of batches) {
      const entries = staged.filter(([, json]) => json !== KEPT);
      const kept = staged.filter(([, json]) => json === KEPT).map(([iccid]) => iccid);
      const unsettled = new Set<string>();
      if (kept.length && newTargets) {
        const records = anchor ? await store.publishedRecords(group, anchor, kept) : kept.map(() => null);
        kept.forEach((iccid, i) => (records[i] === null ? unsettled.add(iccid) : entries.push([iccid, records[i]!])));
      }
      const lookups = await store.lookups(
        group,
        targets,
        entries.map(([iccid]) => iccid)
      );
      await Promise.all(
        targets.map((target, t) =>
          diffTarget(store, { group, target, policy, now }, entries, lookups[t], pendingNonEmpty[t], result, unsettled)
        )
      );
      const settled = entries.filter(([iccid]) => !unsettled.has(iccid)).map(([iccid]) => iccid);
      await store.recordSettled(group, settled, [...unsettled]);
      if (eventsOn)
        result.events = (result.events ?? 0) + (await queueEvents(store, group, targets, entries, events!, joining));
      done += staged.length;
      Context.current().heartbeat({ phase: 'diff', done });
    }
    await store.recordSettledFor(group, targets);
    const told = targets.filter((t) => deps.targets?.get(t)?.leftGroupNotice);
    const left = await forgetLeavers(store, group, { targets, told }, leavers, eventsOn ? events : undefined);
    result.left = left.count;
    if (eventsOn) result.events = (result.events ?? 0) + left.events;
    if (eventsOn && !joining) await store.markEventsBaselined(group);
    for (const target of targets) deps.onDiff?.(group, target, result.targets[target].changed);
    deps.logger.info('diffed group snapshot', { group, cycle, ...result });
    return result;
  };
}

/** What the diff does with one SIM for one target. */
export type SimDecision =
  | { send: false; why: 'equal' | 'held' | 'stillFailing'; countersReleased?: false }
  | { send: true; patch: string; full: boolean; countersReleased: boolean };

/**
 * The diff's rule for the SIM at `i` of a lookup: its patch (canonical JSON), or why nothing goes out. Pure; the
 * diff and the preview share it, so a preview counts exactly what a cycle would publish.
 */
export function decideSim(
  json: string,
  lookup: TargetLookup,
  i: number,
  policy: PublishPolicy | undefined,
  now: number
): SimDecision {
  const { published, failures, uncertain, countersSentAt } = lookup;
  const unsure = uncertain[i];
  if (published[i] === json && !unsure) return { send: false, why: 'equal' };
  const before = published[i] ? (JSON.parse(published[i]!) as SimRecord) : undefined;
  const next = JSON.parse(json) as SimRecord;
  let patch = diffRecords(before, next);
  let countersReleased = false;
  if (unsure) {
    patch = withUncertainKeys(patch, JSON.parse(unsure) as SimPatch, next); // resent whole: never held
  } else if (patch) {
    const decision = applyPublishPolicy(before, patch, policy, countersSentAt[i], now);
    countersReleased = decision.countersReleased;
    patch = decision.send;
    if (!patch) return { send: false, why: 'held' };
  }
  if (!patch) return { send: false, why: 'equal' };
  const patchJson = canonicalJson(patch);
  if (failures[i]?.patch === patchJson) return { send: false, why: 'stillFailing' };
  return { send: true, patch: patchJson, full: !before, countersReleased };
}

async function diffTarget(
  store: StateStore,
  { group, target, policy, now }: { group: string; target: string; policy?: PublishPolicy; now: number },
  entries: Entry[],
  lookup: TargetLookup,
  clearStale: boolean,
  result: DiffResult,
  /** Gets the SIMs this target does not hold exactly as staged (a patch to send, held or failing). */
  unsettled: Set<string>
): Promise<void> {
  const sets: Entry[] = [];
  const deletes: string[] = [];
  const countersReleased: string[] = [];
  const counts = result.targets[target];
  entries.forEach(([iccid, json], i) => {
    if (lookup.published[i] !== json || lookup.uncertain[i]) unsettled.add(iccid);
    const decision = decideSim(json, lookup, i, policy, now);
    if (decision.send) {
      if (decision.countersReleased) countersReleased.push(iccid);
      sets.push([iccid, decision.patch]);
      return;
    }
    if (decision.why === 'held') counts.held = (counts.held ?? 0) + 1;
    if (decision.why === 'stillFailing') counts.stillFailing++;
    if (clearStale) deletes.push(iccid);
  });
  counts.changed += sets.length;
  await store.writePending(group, target, sets, deletes, { iccids: countersReleased, at: now });
}

/**
 * Detects the batch's connectivity events against each SIM's baseline, and queues them for every target with
 * the new baselines in one atomic step: a diff retried after it sees no change twice. Returns how many events.
 */
async function queueEvents(
  store: StateStore,
  group: string,
  targets: string[],
  entries: Entry[],
  policy: EventPolicy,
  joining: boolean
): Promise<number> {
  const baselines = await store.eventBaselines(
    group,
    entries.map(([iccid]) => iccid)
  );
  const at = Date.now();
  const sims: { iccid: string; baseline: string | null; events: string[] }[] = [];
  let count = 0;
  entries.forEach(([iccid, json], i) => {
    const before = baselines[i] ? (JSON.parse(baselines[i]!) as EventBaseline) : undefined;
    const record = JSON.parse(json) as SimRecord;
    const detected = detectEvents(before, record, policy, { group, joined: joining });
    const baseline = JSON.stringify(detected.baseline);
    if (baseline === baselines[i] && !detected.events.length) return;
    const events = detected.events.map((e) => JSON.stringify(simEvent(group, record, e, at)));
    count += events.length;
    sims.push({ iccid, baseline, events });
  });
  await store.queueEvents(group, targets, sims);
  return count;
}

/** A detected event with its SIM, time and id: the id is a digest of what it says, the same on every delivery. */
export function simEvent(
  group: string,
  sim: Pick<SimRecord, 'iccid' | 'alias' | 'imei'>,
  event: DetectedEvent,
  at: number
): SimEvent {
  const id = createHash('sha256')
    .update([group, sim.iccid, event.type, JSON.stringify(event.before), JSON.stringify(event.after), at].join('\0'))
    .digest('hex')
    .slice(0, 32);
  const out: SimEvent = { id, type: event.type, group, iccid: sim.iccid, before: event.before, after: event.after, at };
  if (sim.alias !== undefined) out.alias = sim.alias;
  if (sim.imei !== undefined) out.imei = sim.imei;
  return out;
}

/**
 * Forgets the leavers for every target, queueing their `leftGroup` events in the same atomic step: for every
 * target when the group has them on (leavers with an event baseline), and for each target that is `told` (its
 * `leftGroupNotice`) and holds the SIM otherwise. A diff retried after that step finds no leavers left, so each is
 * said once.
 */
async function forgetLeavers(
  store: StateStore,
  group: string,
  { targets, told }: { targets: string[]; told: string[] },
  leavers: string[],
  events?: EventPolicy
): Promise<{ count: number; events: number }> {
  const everyTarget = !!events?.types?.includes('leftGroup');
  let queued = 0;
  for (let i = 0; i < leavers.length; i += 1000) {
    const batch = leavers.slice(i, i + 1000);
    const notices = everyTarget || told.length ? await leftGroupEvents(store, group, targets, told, batch, events) : [];
    queued += notices.filter((notice) => notice.targets === targets).length; // the group's own events
    await store.forget(group, targets, batch, notices);
  }
  return { count: leavers.length, events: queued };
}

/**
 * The `leftGroup` event of each leaver and the targets it goes to, named by what the first target holding the SIM
 * last had: every target, for a leaver with an event baseline while the group has the event on; else the `told`
 * targets that hold it.
 */
async function leftGroupEvents(
  store: StateStore,
  group: string,
  targets: string[],
  told: string[],
  iccids: string[],
  events?: EventPolicy
): Promise<{ iccid: string; targets: string[]; event: string }[]> {
  const everyTarget = !!events?.types?.includes('leftGroup');
  const [baselines, ...held] = await Promise.all([
    everyTarget ? store.eventBaselines(group, iccids) : iccids.map(() => null),
    ...targets.map((t) => store.publishedRecords(group, t, iccids)),
  ]);
  const at = Date.now();
  return iccids.flatMap((iccid, i) => {
    const to =
      everyTarget && baselines[i] !== null ? targets : told.filter((t) => held[targets.indexOf(t)][i] !== null);
    if (!to.length) return [];
    const json = held.map((records) => records[i]).find((r) => r !== null);
    const record: Pick<SimRecord, 'iccid' | 'alias' | 'imei'> = json ? (JSON.parse(json) as SimRecord) : { iccid };
    const event = simEvent(group, record, { type: 'leftGroup', before: group, after: null }, at);
    return [{ iccid, targets: to, event: JSON.stringify(event) }];
  });
}

/**
 * SIMs known from earlier cycles that are neither in the snapshot nor among the group's invalid SIMs, and the drop
 * that holds the cycle: more of them than `maxLeaveFraction` of the known SIMs, whatever the group's size, unless
 * the operator approved at least that many (`approvedDrop`). A truncated inventory looks the same as real
 * leavers, and forgetting them would republish them in full later.
 */
export async function findLeavers(
  deps: Pick<DiffDeps, 'store' | 'maxLeaveFraction' | 'batchSize'>,
  group: string,
  cycle: number,
  limits: Pick<DiffInput, 'maxLeaveFraction' | 'approvedDrop'>
): Promise<{ leavers: string[]; known: number; drop?: InventoryDrop }> {
  const { store } = deps;
  const known = await store.knownCount(group);
  const leavers = await store.leavers(group, cycle, deps.batchSize ?? 1000);
  const maxLeaveFraction = limits.maxLeaveFraction ?? deps.maxLeaveFraction ?? 0.5;
  const approved = limits.approvedDrop !== undefined && leavers.length <= limits.approvedDrop;
  if (leavers.length === 0 || leavers.length <= known * maxLeaveFraction || approved) return { leavers, known };
  const listed = await store.snapshotCount(group, cycle);
  return { leavers, known, drop: { missing: leavers.length, known, listed, maxLeaveFraction } };
}
