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
const KEY_JSON = KEY_CODES.map((key) => JSON.stringify(key));

/**
 * The stored form of `json`, a record's canonical JSON held for the SIM `iccid`. Its value tokens are copied as
 * they are (no parse, no re-encoding), and the form is kept only when it reads back as exactly `json`.
 */
export function packRecord(iccid: string, json: string): string {
  if (json === '{}') return '[]';
  if (json.charCodeAt(0) !== OPEN_OBJECT) return json;
  const slots: string[] = [];
  for (let i = 1; ;) {
    const keyEnd = json.charCodeAt(i) === QUOTE ? scalarEnd(json, i) : -1;
    const position = keyEnd < 0 ? undefined : POSITION_OF.get(json.slice(i + 1, keyEnd - 1));
    if (position === undefined || position < slots.length || json.charCodeAt(keyEnd) !== COLON) return json;
    const valueEnd = scalarEnd(json, keyEnd + 1);
    const token = json.slice(keyEnd + 1, valueEnd);
    if (valueEnd < 0 || token === 'null') return json;
    while (slots.length < position) slots.push('null');
    slots.push(position === 0 && token === JSON.stringify(iccid) ? '0' : token);
    const next = json.charCodeAt(valueEnd);
    if (next === CLOSE_OBJECT && valueEnd === json.length - 1) break;
    if (next !== COMMA) return json;
    i = valueEnd + 1;
  }
  const packed = `[${slots.join(',')}]`;
  // Only a form that reads back as exactly the same string: the diff compares records as strings.
  return unpackRecord(iccid, packed) === json ? packed : json;
}

/** The canonical JSON of a record stored for the SIM `iccid` in either form. */
export function unpackRecord(iccid: string, stored: string): string {
  if (stored.charCodeAt(0) !== OPEN_ARRAY) return stored;
  if (stored === '[]') return '{}';
  let out = '';
  for (let i = 1, position = 0; ; position++) {
    const end = scalarEnd(stored, i);
    if (end < 0 || position >= KEY_JSON.length) throw new Error(`a stored record is unreadable: ${stored}`);
    const token = stored.slice(i, end);
    if (token !== 'null') {
      const value = position === 0 && token === '0' ? JSON.stringify(iccid) : token;
      out += `${out ? ',' : '{'}${KEY_JSON[position]}:${value}`;
    }
    const next = stored.charCodeAt(end);
    if (next === CLOSE_ARRAY) break;
    if (next !== COMMA) throw new Error(`a stored record is unreadable: ${stored}`);
    i = end + 1;
  }
  return out ? `${out}}` : '{}';
}

/** `unpackRecord` for a value that may be absent. */
export function unpackRecordOrNull(iccid: string, stored: string | null): string | null {
  return stored === null ? null : unpackRecord(iccid, stored);
}

const [QUOTE, BACKSLASH, COMMA, COLON] = [0x22, 0x5c, 0x2c, 0x3a];
const [OPEN_OBJECT, CLOSE_OBJECT, OPEN_ARRAY, CLOSE_ARRAY] = [0x7b, 0x7d, 0x5b, 0x5d];

/**
 * Where the JSON scalar (a string, number, true, false or null) starting at `i` ends; -1 for an object, an array
 * or nothing. A string ends at its closing quote, anything else at the next `,`, `}` or `]`.
 */
function scalarEnd(text: string, i: number): number {
  const first = text.charCodeAt(i);
  if (first === QUOTE) {
    for (let j = i + 1; j < text.length; j++) {
      const c = text.charCodeAt(j);
      if (c === BACKSLASH) j++;
      else if (c === QUOTE) return j + 1;
    }
    return -1;
  }
  if (first === OPEN_OBJECT || first === OPEN_ARRAY) return -1;
  let j = i;
  for (; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === COMMA || c === CLOSE_OBJECT || c === CLOSE_ARRAY) break;
  }
  return j > i ? j : -1;
}
