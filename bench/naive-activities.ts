/** Activities of baseline (b): the group's fetch as one activity, then diff + publish of one SIM per activity. */
import type { SyncActivities } from '../activities';
import type { ConfiguredTarget } from '../activities/publish';
import type { SimPatch, SimRecord } from '../record';
import { applyPatch, canonicalJson, diffRecords } from '../record';
import type { StateStore } from '../state/store';

export function createNaiveActivities(
  store: StateStore,
  fetchSnapshot: SyncActivities['fetchSnapshot'],
  targets: ReadonlyMap<string, ConfiguredTarget>
) {
  return {
    /** The same fetch as ours (pages, presence, mapping, staging); returns the group's ICCs. */
    async listGroup({ group, cycle }: { group: string; cycle: number }): Promise<string[]> {
      await fetchSnapshot({ group, cycle });
      const iccids: string[] = [];
      for await (const entries of store.scanSnapshot(group, cycle)) iccids.push(...entries.map(([k]) => k));
      return [...new Set(iccids)];
    },
    /** Diffs one SIM against what the target holds and publishes the patch. True if something was published. */
    async syncSim(input: { group: string; cycle: number; target: string; iccid: string }): Promise<boolean> {
      const { group, cycle, target, iccid } = input;
      // Both reads go out together on the one connection: one round trip, as before.
      const [[json], [published]] = await Promise.all([
        store.snapshotRecords(group, cycle, [iccid]),
        store.publishedRecords(group, target, [iccid]),
      ]);
      if (!json || json === published) return false;
      const before = published ? (JSON.parse(published) as SimRecord) : undefined;
      const patch = diffRecords(before, JSON.parse(json) as SimRecord) as SimPatch | undefined;
      if (!patch) return false;
      const patchJson = canonicalJson(patch);
      await store.writePending(group, target, [[iccid, patchJson]], []);
      const state = applyPatch(before, patch);
      const outcomes = await targets
        .get(target)!
        .target.publish([{ iccid, deviceId: iccid, patch, full: !before, state }], undefined, { group });
      if (outcomes[0]?.status !== 'ok') throw new Error(`publish of ${iccid} failed: ${outcomes[0]?.status}`);
      const merged = canonicalJson(state);
      await store.commitPublished(group, target, [{ iccid, patch: patchJson, merged }]);
      return true;
    },
  };
}

export type NaiveActivities = ReturnType<typeof createNaiveActivities>;
