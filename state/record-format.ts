/**
 * The stored form of a published record (persisted data: `pub:<target>` in state/store.ts). The store's callers
 * speak canonical record JSON (record/patch.ts); what a target holds is stored as a JSON array of the record's
 * values by position, the position of a key being its index in `KEY_CODES` (a persisted, append-only table
 * the audit trail shares): `[0,"alias","imei",…]`, `null` where a key is absent, trailing absent keys left out, and `0`
 * in the first position for an `iccid` equal to the hash field it is stored under (the SIM's ICC). For a 19-key
 * record of 451 B that is about 230 B: no key names, no ICC twice (BENCHMARKS.md, Redis memory per SIM).
 *
 * A record this form cannot hold exactly (a key outside the table, keys out of contract order, a nested value) is
 * stored as its canonical JSON, the form every record had before: a stored value starting with `{` is read as is,
 * so deployments with records of the old form keep working, and each record takes the new form with its next
 * publish.
 */

/**
 * Persisted: a key's position in a stored record, and its code in the audit trail (its index in base 36). Append
 * only; never reorder or remove (stored records and trails would read back with other keys). The first 19 are the
 * published record's keys (record/record.ts), in contract order.
 */
export const KEY_CODES: readonly string[] = [
  'iccid',
  'alias',
  'imei',
  'commsModModel',
  'commsModManufacturer',
  'lifeCycleStatus',
  'activationDate',
  'country',
  'operator',
  'apn',
  'ip',
  'presenceLevel',
  'event',
  'timestamp',
  'Latitude',
  'Longitude',
  'dailyVoice',
  'dailySMS',
  'dailyData',
];

const POSITION_OF = new Map(KEY_CODES.map((key, i) => [key, i]));

/** The stored form of `json`, a record's canonical JSON held for the SIM `iccid`. */
export function packRecord(iccid: string, json: string): string {
  let record: unknown;
  try {
    record = JSON.parse(json);
  } catch {
    return json;
  }
  if (!record || typeof record !== 'object' || Array.isArray(record)) return json;
  const slots: string[] = [];
  for (const [key, value] of Object.entries(record as Record<string, unknown>)) {
    const position = POSITION_OF.get(key);
    if (position === undefined || position < slots.length) return json;
    if (value === null || typeof value === 'object') return json;
    while (slots.length < position) slots.push('null');
    slots.push(position === 0 && value === iccid ? '0' : JSON.stringify(value));
  }
  const packed = `[${slots.join(',')}]`;
  // Only a form that reads back as exactly the same string: the diff compares records as strings.
  return unpackRecord(iccid, packed) === json ? packed : json;
}

/** The canonical JSON of a record stored for the SIM `iccid` in either form. */
export function unpackRecord(iccid: string, stored: string): string {
  if (stored.charCodeAt(0) !== 0x5b /* [ */) return stored;
  const slots = JSON.parse(stored) as unknown[];
  let out = '';
  for (let i = 0; i < slots.length; i++) {
    const value = slots[i];
    if (value === null) continue;
    const json = i === 0 && value === 0 ? JSON.stringify(iccid) : JSON.stringify(value);
    out += `${out ? ',' : '{'}${JSON.stringify(KEY_CODES[i])}:${json}`;
  }
  return out ? `${out}}` : '{}';
}

/** `unpackRecord` for a value that may be absent. */
export function unpackRecordOrNull(iccid: string, stored: string | null): string | null {
  return stored === null ? null : unpackRecord(iccid, stored);
}
