/**
 * From a Kite SIM (plus its presence detail) to the 19-key published record (record/record.ts). A SIM that cannot
 * be mapped is rejected with a short stable reason code so that the fetch activity can count reasons; it never
 * throws.
 *
 * Rules worth knowing:
 * - An absent value, `null` or an empty string is left out of the record (never published as null here).
 * - Dates are ISO-8601 (`Z`, an offset, or none = UTC) and become epoch milliseconds.
 * - `dailyData` is Kite's bytes / 1024 rounded to a whole kB (Math.round, half up): the seed example shows
 *   integers, and whole kB spare the targets an update for every few bytes of keep-alive traffic.
 * - `apn` and `ip` come from the presence detail when it has them (only during a session), else from the SIM.
 * - Consumption values and coordinates may be numbers or numeric strings; anything else is rejected.
 * - Daily counters must be plausible: whole numbers from 0 to MAX_DAILY (`not-integer:` or `implausible:` otherwise).
 *   A rejected SIM keeps what its targets hold: nothing of it is published until Kite sends sane values again.
 */
import { isIP } from 'node:net';
import type { RecordKey, SimRecord } from '../record';
import { digestText, entryDigest } from './entry-hash';
import type { GroupFilter, KitePresence, KiteSim } from './types';

export type MapResult = { ok: true; record: SimRecord } | { ok: false; reason: string };

/** Longest string value accepted in a record; twin and shadow documents are capped at 8-32 KB in total. */
export const MAX_STRING_LENGTH = 256;

/**
 * Largest plausible daily counter: voice seconds (two lines busy all day), SMS, data bytes (100 TB, far above
 * what any cellular link carries in a day). Beyond these a value is a Kite fault, not consumption.
 */
export const MAX_DAILY = { voice: 2 * 86_400, sms: 1_000_000, data: 1e14 } as const;

const ICC = /^\d{18,22}$/;
const IMEI = /^\d{14,16}$/;
const NUMERIC = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** Thrown inside the mapper only; turned into `{ ok: false, reason }` at the boundary. */
class Reject {
  constructor(readonly reason: string) {}
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const absent = (v: unknown) => v === undefined || v === null || v === '';

function str(v: unknown, field: string): string | undefined {
  if (absent(v)) return undefined;
  if (typeof v !== 'string') throw new Reject(`bad-type:${field}`);
  if (v.length > MAX_STRING_LENGTH) throw new Reject(`too-long:${field}`);
  return v;
}

function num(v: unknown, field: string): number | undefined {
  if (absent(v)) return undefined;
  const n = typeof v === 'number' ? v : typeof v === 'string' && NUMERIC.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new Reject(`bad-number:${field}`);
  return n;
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const digit = (s: string, at: number) => s.charCodeAt(at) - 48;
const two = (s: string, at: number) => digit(s, at) * 10 + digit(s, at + 1);

/** ISO-8601 → epoch ms. Date.parse alone would accept many non-ISO shapes and roll 30 February over to March. */
export function parseKiteDate(v: unknown, field: string): number | undefined {
  if (absent(v)) return undefined;
  const m = typeof v === 'string' ? ISO_DATE.exec(v) : null;
  if (!m) throw new Reject(`bad-date:${field}`);
  const year = Number(m[1]);
  const [month, day, hour, minute, second] = [two(v as string, 5), two(v as string, 8), two(v as string, 11), two(v as string, 14), m[6] ? Number(m[6]) : 0]; // prettier-ignore
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const maxDay = month === 2 && !leap ? 28 : DAYS_IN_MONTH[month - 1];
  if (year < 1990 || year > 2200 || !maxDay || day < 1 || day > maxDay || hour > 23 || minute > 59 || second > 59) {
    throw new Reject(`bad-date:${field}`);
  }
  const ms = Date.UTC(year, month - 1, day, hour, minute, second, m[7] ? Math.round(Number(m[7]) * 1000) : 0);
  const zone = m[8];
  if (!zone || zone === 'Z') return ms;
  const offset = (two(zone, 1) * 60 + two(zone, zone.length - 2)) * 60_000;
  return zone[0] === '-' ? ms + offset : ms - offset;
}

function coordinates(sim: Obj): { lat?: number; lon?: number } {
  const loc = sim.automaticLocation;
  if (absent(loc)) return {};
  if (!isObj(loc)) throw new Reject('bad-coords');
  const c = loc.coordinates;
  if (absent(c)) return {};
  if (!isObj(c)) throw new Reject('bad-coords');
  let lat: number | undefined;
  let lon: number | undefined;
  try {
    lat = num(c.latitude, 'latitude');
    lon = num(c.longitude, 'longitude');
  } catch {
    throw new Reject('bad-coords');
  }
  if ((lat === undefined) !== (lon === undefined)) throw new Reject('bad-coords');
  if (lat !== undefined && (Math.abs(lat) > 90 || Math.abs(lon as number) > 180)) throw new Reject('bad-coords');
  return { lat, lon };
}

function consumption(sim: Obj, kind: 'voice' | 'sms' | 'data'): number | undefined {
  const daily = sim.consumptionDaily;
  if (absent(daily)) return undefined;
  if (!isObj(daily)) throw new Reject('bad-type:consumptionDaily');
  const item = daily[kind];
  if (absent(item)) return undefined;
  if (!isObj(item)) throw new Reject(`bad-type:consumptionDaily.${kind}`);
  const field = `consumptionDaily.${kind}`;
  const n = num(item.value, field);
  if (n === undefined) return undefined;
  if (n < 0) throw new Reject(`bad-number:${field}`);
  if (n > MAX_DAILY[kind]) throw new Reject(`implausible:${field}`);
  if (!Number.isInteger(n)) throw new Reject(`not-integer:${field}`);
  return n;
}

function checked(v: string | undefined, ok: boolean, reason: string): string | undefined {
  if (v !== undefined && !ok) throw new Reject(reason);
  return v;
}

function build(sim: Obj, presence: Obj): SimRecord {
  if (absent(sim.icc)) throw new Reject('no-icc');
  if (typeof sim.icc !== 'string' || !ICC.test(sim.icc)) throw new Reject('bad-icc');
  const imei = str(sim.imei, 'imei');
  const ip = str(presence.ip, 'presence.ip') ?? str(sim.ip, 'ip');
  const { lat, lon } = coordinates(sim);
  const data = consumption(sim, 'data');
  // Keys are added in contract order; `undefined` values are skipped by put().
  const r = {} as Record<string, unknown>;
  put(r, 'iccid', sim.icc);
  put(r, 'alias', str(sim.alias, 'alias'));
  put(r, 'imei', checked(imei, IMEI.test(imei ?? ''), 'bad-imei'));
  put(r, 'commsModModel', str(sim.commModuleModel, 'commModuleModel'));
  put(r, 'commsModManufacturer', str(sim.commModuleManufacturer, 'commModuleManufacturer'));
  put(r, 'lifeCycleStatus', str(sim.lifeCycleStatus, 'lifeCycleStatus'));
  put(r, 'activationDate', parseKiteDate(sim.activationDate, 'activationDate'));
  put(r, 'country', str(sim.country, 'country'));
  put(r, 'operator', str(sim.operator, 'operator'));
  put(r, 'apn', str(presence.apn, 'presence.apn') ?? str(sim.apn, 'apn'));
  put(r, 'ip', checked(ip, isIP(ip ?? '') !== 0, 'bad-ip'));
  put(r, 'presenceLevel', str(presence.level, 'presence.level'));
  put(r, 'event', str(presence.cause, 'presence.cause'));
  put(r, 'timestamp', parseKiteDate(presence.timeStamp, 'timeStamp'));
  put(r, 'Latitude', lat);
  put(r, 'Longitude', lon);
  put(r, 'dailyVoice', consumption(sim, 'voice'));
  put(r, 'dailySMS', consumption(sim, 'sms'));
  put(r, 'dailyData', data === undefined ? undefined : Math.round(data / 1024));
  return r as unknown as SimRecord;
}

function put(record: Record<string, unknown>, key: RecordKey, value: unknown): void {
  if (value !== undefined) record[key] = value;
}

/**
 * Maps one Kite SIM and, when known, its presence detail to the published record (keys in contract order).
 * @returns `{ ok: true, record }`, or `{ ok: false, reason }` with a stable code: `not-object`, `no-icc`, `bad-icc`,
 *   `bad-imei`, `bad-ip`, `bad-coords`, `bad-type:<field>`, `too-long:<field>`, `bad-number:<field>`,
 *   `implausible:<field>` / `not-integer:<field>` (daily counters), `bad-date:<field>` (`activationDate` or `timeStamp`).
 */
export function mapSim(sim: KiteSim | unknown, presence?: KitePresence): MapResult {
  if (!isObj(sim)) return { ok: false, reason: 'not-object' };
  if (presence !== undefined && presence !== null && !isObj(presence))
    return { ok: false, reason: 'bad-type:presence' };
  try {
    return { ok: true, record: build(sim, (presence ?? {}) as Obj) };
  } catch (err) {
    if (err instanceof Reject) return { ok: false, reason: err.reason };
    throw err;
  }
}

/**
 * The SIM's ICC when it is usable as its identifier: 18 to 22 digits, as the record requires. A number (its digits
 * may be rounded), an empty string or an F-padded ICC is not.
 */
export function simIcc(sim: KiteSim): string | undefined {
  return isObj(sim) && typeof sim.icc === 'string' && ICC.test(sim.icc) ? sim.icc : undefined;
}

/** Whether an ICC as Kite sent it is usable as the SIM's identifier (see simIcc). */
export function isUsableIcc(icc: string): boolean {
  return ICC.test(icc);
}

/**
 * What identifies the SIM besides its ICC: Kite's `subscriptionId` and the `imsi` together (`sub:<id>|imsi:<imsi>`,
 * either part may be empty), undefined when it has neither. Lets the connector recognise a SIM whose ICC Kite
 * sends unusable.
 */
export function simIdentity(sim: KiteSim): string | undefined {
  if (!isObj(sim)) return undefined;
  const id = (v: unknown) =>
    (typeof v === 'string' && v.length > 0 && v.length <= 64) || (typeof v === 'number' && Number.isSafeInteger(v))
      ? String(v)
      : '';
  const [sub, imsi] = [id(sim.subscriptionId), id(sim.imsi)];
  return sub || imsi ? `sub:${sub}|imsi:${imsi}` : undefined;
}

/**
 * A short stable hash of what tells that the SIM's presence may have changed: `gprsStatus`, `ipStatus`, `ip` and
 * `apn`. The fetch activity stores it per SIM and re-fetches presence only when it differs (or for new SIMs).
 */
export function connectivityHints(sim: KiteSim): string {
  const s = (isObj(sim) ? sim : {}) as Obj;
  const conn = (v: unknown) => (isObj(v) ? `${v.status}|${v.lastConnStart}|${v.lastConnStop}` : '-');
  const canonical = `${conn(s.gprsStatus)}|${conn(s.ipStatus)}|${s.ip}|${s.apn}`;
  return hash53(canonical).toString(36);
}

/**
 * A compact hash of a SIM's whole Kite entry (11 characters: its XXH64 over its JSON text, entry-hash.ts): the fetch
 * activity skips a SIM whose entry hashes as last time (and whose targets hold its record). A collision (about 1
 * in 2^64 per change) would delay that SIM's change until its next one. Pages from the Kite client are hashed over
 * the entry's bytes as sent instead (entries.ts), without parsing nor stringifying; for Kite's compact JSON both
 * give the same hash. Where they differ (whitespace, escapes), each settled SIM is mapped and diffed once more,
 * then skipped again.
 */
export function simHash(sim: KiteSim): string {
  return digestText(entryDigest(JSON.stringify(sim) ?? ''));
}

/** cyrb53: a fast 53-bit string hash; a collision (odds about 1 in 2^53 per change) would delay one presence refresh. */
function hash53(text: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Search parameters that can be re-checked on the SIM itself; the rest are trusted to Kite's search. */
const SEARCH_FIELD: Record<string, string> = {
  icc: 'icc',
  imsi: 'imsi',
  msisdn: 'msisdn',
  imei: 'imei',
  alias: 'alias',
  lifeCycleState: 'lifeCycleStatus',
  operator: 'operator',
  country: 'country',
  customField_1: 'customField1',
  customField_2: 'customField2',
  customField_3: 'customField3',
  customField_4: 'customField4',
};

/**
 * True when the SIM belongs to the monitoring group: by its `supervisionGroup` field, or, for a search filter,
 * when every parameter that names a SIM field matches (others, such as `presence`, were applied by Kite).
 */
export function isInGroup(sim: KiteSim, group: string, filter: GroupFilter = { type: 'supervisionGroup' }): boolean {
  if (!isObj(sim)) return false;
  if (filter.type === 'supervisionGroup') return sim.supervisionGroup === group;
  return Object.entries(filter.params).every(([param, value]) => {
    const field = SEARCH_FIELD[param];
    return field === undefined || String(sim[field] ?? '') === value;
  });
}
