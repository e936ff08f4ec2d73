/**
 * From a Kite SIM (plus its presence detail) to the 19-key record of DESIGN §2. A SIM that cannot be mapped is
 * rejected with a short stable reason code so that the fetch activity can count reasons; it never throws.
 *
 * Rules worth knowing:
 * - An absent value, `null` or an empty string is left out of the record (never published as null here).
 * - Dates are ISO-8601 (`Z`, an offset, or none = UTC) and become epoch milliseconds.
 * - `dailyData` is Kite's bytes / 1024 rounded to a whole kB (Math.round, half up): the seed example shows
 *   integers, and whole kB spare the targets an update for every few bytes of keep-alive traffic.
 * - `apn` and `ip` come from the presence detail when it has them (only during a session), else from the SIM.
 * - Consumption values and coordinates may be numbers or numeric strings; anything else is rejected.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { RECORD_KEYS, type SimRecord } from './record';
import type { GroupFilter, KitePresence, KiteSim } from './types';

export type MapResult = { ok: true; record: SimRecord } | { ok: false; reason: string };

/** Longest string value accepted in a record; twin and shadow documents are capped at 8-32 KB in total. */
export const MAX_STRING_LENGTH = 256;

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

/** ISO-8601 → epoch ms. Date.parse alone would accept many non-ISO shapes, hence the strict pattern. */
export function parseKiteDate(v: unknown, field: string): number | undefined {
  if (absent(v)) return undefined;
  const m = typeof v === 'string' ? ISO_DATE.exec(v) : null;
  if (!m) throw new Reject(`bad-date:${field}`);
  const [, y, mo, d, h, mi, s = '0', frac = '', zone = 'Z'] = m;
  let ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, +s, Math.round(Number(frac || '0') * 1000));
  const check = new Date(ms);
  if (check.getUTCMonth() !== +mo - 1 || check.getUTCDate() !== +d || +h > 23 || +mi > 59 || +s > 59) {
    throw new Reject(`bad-date:${field}`); // 2019-02-30, 25:00 and friends roll over silently in Date.UTC
  }
  if (zone !== 'Z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    ms -= sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2))) * 60_000;
  }
  if (+y < 1990 || +y > 2200) throw new Reject(`bad-date:${field}`);
  return ms;
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
  const n = num(item.value, `consumptionDaily.${kind}`);
  if (n !== undefined && n < 0) throw new Reject(`bad-number:consumptionDaily.${kind}`);
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
  const values: SimRecord = {
    iccid: sim.icc,
    alias: str(sim.alias, 'alias'),
    imei: checked(imei, IMEI.test(imei ?? ''), 'bad-imei'),
    commsModModel: str(sim.commModuleModel, 'commModuleModel'),
    commsModManufacturer: str(sim.commModuleManufacturer, 'commModuleManufacturer'),
    lifeCycleStatus: str(sim.lifeCycleStatus, 'lifeCycleStatus'),
    activationDate: parseKiteDate(sim.activationDate, 'activationDate'),
    country: str(sim.country, 'country'),
    operator: str(sim.operator, 'operator'),
    apn: str(presence.apn, 'presence.apn') ?? str(sim.apn, 'apn'),
    ip: checked(ip, isIP(ip ?? '') !== 0, 'bad-ip'),
    presenceLevel: str(presence.level, 'presence.level'),
    event: str(presence.cause, 'presence.cause'),
    timestamp: parseKiteDate(presence.timeStamp, 'timeStamp'),
    Latitude: lat,
    Longitude: lon,
    dailyVoice: consumption(sim, 'voice'),
    dailySMS: consumption(sim, 'sms'),
    dailyData: data === undefined ? undefined : Math.round(data / 1024),
  };
  const record = {} as Record<string, unknown>;
  for (const key of RECORD_KEYS) if (values[key] !== undefined) record[key] = values[key];
  return record as unknown as SimRecord;
}

/**
 * Maps one Kite SIM and, when known, its presence detail to the published record (keys in contract order).
 * @returns `{ ok: true, record }`, or `{ ok: false, reason }` with a stable code: `not-object`, `no-icc`, `bad-icc`,
 *   `bad-imei`, `bad-ip`, `bad-coords`, `bad-type:<field>`, `too-long:<field>`, `bad-number:<field>`,
 *   `bad-date:<field>` (`activationDate` or `timeStamp`).
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
 * A short stable hash of what tells that the SIM's presence may have changed: `gprsStatus`, `ipStatus`, `ip` and
 * `apn`. The fetch activity stores it per SIM and re-fetches presence only when it differs (or for new SIMs).
 */
export function connectivityHints(sim: KiteSim): string {
  const s = (isObj(sim) ? sim : {}) as Obj;
  const conn = (v: unknown) => (isObj(v) ? [v.status ?? null, v.lastConnStart ?? null, v.lastConnStop ?? null] : null);
  const canonical = JSON.stringify([conn(s.gprsStatus), conn(s.ipStatus), s.ip ?? null, s.apn ?? null]);
  return createHash('sha1').update(canonical).digest('base64url').slice(0, 16);
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
