/** Pure functions on published records: canonical encoding, diff and merge. No I/O. */
import { RECORD_KEYS, type RecordKey, type SimPatch, type SimRecord } from './record';

/**
 * JSON with keys in contract order and absent keys left out, so that two equal records encode to the same
 * string and an unchanged SIM is recognised by one string comparison, without parsing.
 */
export function canonicalJson(record: SimRecord | SimPatch): string {
  const ordered: Record<string, unknown> = {};
  for (const key of RECORD_KEYS) {
    const value = (record as Record<string, unknown>)[key];
    if (value !== undefined) ordered[key] = value;
  }
  return JSON.stringify(ordered);
}

/**
 * The patch that turns `published` into `next`: changed and new keys with their value, `null` for keys that
 * disappeared. Undefined when nothing changed. Without `published`, the whole record (first publish).
 */
export function diffRecords(published: SimRecord | undefined, next: SimRecord): SimPatch | undefined {
  if (!published) return { ...next };
  const patch: Record<string, unknown> = {};
  let changed = false;
  for (const key of RECORD_KEYS) {
    const before = published[key];
    const after = next[key];
    if (before === after) continue;
    patch[key] = after === undefined ? null : after;
    changed = true;
  }
  return changed ? (patch as SimPatch) : undefined;
}

/**
 * `patch` widened by every key of `uncertain`, a patch that was handed to the target and never acknowledged: the
 * target may hold its values or the ones before, so each of its keys is sent again with its current value in
 * `next` (`null` when `next` no longer has it), even where `next` equals what was last acknowledged.
 */
export function withUncertainKeys(patch: SimPatch | undefined, uncertain: SimPatch, next: SimRecord): SimPatch {
  const widened: Record<string, unknown> = { ...patch };
  for (const key of Object.keys(uncertain) as RecordKey[]) widened[key] = next[key] === undefined ? null : next[key];
  return widened as SimPatch;
}

/** What the target holds after it applied `patch` on top of `published`: `null` deletes a key. */
export function applyPatch(published: SimRecord | undefined, patch: SimPatch): SimRecord {
  const merged: Record<string, unknown> = { ...published };
  for (const [key, value] of Object.entries(patch) as [RecordKey, unknown][]) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged as unknown as SimRecord;
}
