/**
 * Changes to the simulated inventory from outside the clock: the control API (tests and demos) and Kite's own
 * write, `PUT .../sim/icc:{icc}`.
 */
import { LIFE_CYCLE_STATES, type KiteSim } from '../kite';
import { CAUSES, LEVELS, SETTABLE_STATES, TRANSITIONS } from './catalog';
import { setLifeCycle } from './evolution';
import type { Inventory } from './inventory';

/** A Kite fault the server turns into its error body (`exceptionCategory`.`exceptionId`). */
export class KiteFault extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly text: string
  ) {
    super(`${code}: ${text}`);
  }
  get kind(): 'ClientException' | 'ServerException' {
    return this.code.startsWith('SVR') ? 'ServerException' : 'ClientException';
  }
}

const ISO_Z = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
const isoMs = (v: unknown) => (typeof v === 'string' && ISO_Z.test(v) ? Date.parse(v) : NaN);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

type Setter = (inv: Inventory, i: number, v: unknown) => boolean;

/** Fields the state model owns: a value of the right type changes the state; anything else becomes an override. */
const SETTERS: Record<string, Setter> = {
  icc: (inv, i, v) => typeof v === 'string' && inv.rekey(i, v),
  alias: (inv, i, v) => typeof v === 'string' && ((inv.alias[i] = v), true),
  apn: (inv, i, v) => typeof v === 'string' && v !== '' && ((inv.apn[i] = v), true),
  ip: (inv, i, v) => (v === null || typeof v === 'string') && inv.setIp(i, v),
  imei: (inv, i, v) => {
    if (v !== null && !(typeof v === 'string' && /^\d{14,16}$/.test(v))) return false;
    inv.imei[i] = v ?? undefined;
    inv.imeiChange[i] = v === null ? NaN : inv.now;
    return true;
  },
  lifeCycleStatus: (inv, i, v) =>
    LIFE_CYCLE_STATES.includes(v as never) && (setLifeCycle(inv, i, v as string, inv.now), true),
  activationDate: (inv, i, v) => {
    const ms = v === null ? NaN : isoMs(v);
    if (v !== null && Number.isNaN(ms)) return false;
    inv.activation[i] = ms;
    return true;
  },
  supervisionGroup: (inv, i, v) => {
    if (v !== null && typeof v !== 'string') return false;
    inv.group[i] = v === null || v === '' ? -1 : inv.groupIndex(v);
    return true;
  },
  automaticLocation: (inv, i, v) => {
    const c = isObj(v) && isObj(v.coordinates) ? v.coordinates : undefined;
    if (v !== null && !(c && finite(c.latitude) && finite(c.longitude))) return false;
    if (c && (Math.abs(c.latitude as number) > 90 || Math.abs(c.longitude as number) > 180)) return false;
    inv.lat[i] = c ? (c.latitude as number) : NaN;
    inv.lon[i] = c ? (c.longitude as number) : NaN;
    inv.locTs[i] = inv.now;
    return true;
  },
  consumptionDaily: (inv, i, v) => {
    if (!isObj(v)) return false;
    const kinds = ['voice', 'sms', 'data'] as const;
    const values = kinds.map((k) => (isObj(v[k]) ? (v[k] as Record<string, unknown>).value : undefined));
    if (!values.every((x) => x === undefined || (finite(x) && x >= 0))) return false;
    kinds.forEach((k, n) => values[n] !== undefined && (inv.daily[k][i] = values[n] as number));
    return true;
  },
};

const PRESENCE_SETTERS: Record<string, Setter> = {
  level: (inv, i, v) => LEVELS.includes(v as never) && ((inv.level[i] = LEVELS.indexOf(v as never)), true),
  cause: (inv, i, v) => CAUSES.includes(v as never) && ((inv.cause[i] = CAUSES.indexOf(v as never)), true),
  timeStamp: (inv, i, v) => !Number.isNaN(isoMs(v)) && ((inv.presenceTs[i] = isoMs(v)), true),
};

function applyFields(
  inv: Inventory,
  i: number,
  patch: Record<string, unknown>,
  setters: Record<string, Setter>,
  overrides: Map<number, Record<string, unknown>>
): void {
  const pinned = { ...overrides.get(i) };
  for (const [key, value] of Object.entries(patch)) {
    if (key === 'presence' && setters === SETTERS && isObj(value)) {
      applyFields(inv, i, value, PRESENCE_SETTERS, inv.presenceOverrides);
    } else if (setters[key]?.(inv, i, value)) {
      delete pinned[key];
    } else {
      pinned[key] = value;
    }
  }
  if (Object.keys(pinned).length) overrides.set(i, pinned);
  else overrides.delete(i);
  inv.touch(i);
}

/**
 * Sets fields of a SIM as Kite would show them (`presence: {...}` for the presence detail). Values the model
 * cannot hold (wrong types, broken dates, unknown fields) are shown verbatim and stay pinned until `resetSim`;
 * `null` removes a field.
 */
export function setSim(inv: Inventory, i: number, patch: Record<string, unknown>): void {
  applyFields(inv, i, patch, SETTERS, inv.overrides);
}

/** Drops the pinned overrides of a SIM. */
export function resetSim(inv: Inventory, i: number): void {
  inv.overrides.delete(i);
  inv.presenceOverrides.delete(i);
  inv.touch(i);
}

/** Ways to break a SIM, with the reason `mapSim` gives for it. */
export const BROKEN_KINDS = {
  'bad-icc': { reason: 'bad-icc', patch: (s: KiteSim) => ({ icc: `${String(s.icc).slice(0, -3)}ABC` }) },
  'no-icc': { reason: 'no-icc', patch: () => ({ icc: null }) },
  'bad-date': { reason: 'bad-date:activationDate', patch: () => ({ activationDate: '2019-13-45T25:61:00Z' }) },
  'bad-coords': {
    reason: 'bad-coords',
    patch: () => ({ automaticLocation: { coordinates: { latitude: 123.4, longitude: 'NaN' } } }),
  },
  'bad-type': { reason: 'bad-type:imei', patch: () => ({ imei: 863781010957232 }) },
  oversized: { reason: 'too-long:alias', patch: () => ({ alias: 'x'.repeat(4096) }) },
  'bad-number': {
    reason: 'bad-number:consumptionDaily.data',
    patch: () => ({ consumptionDaily: { voice: { value: 0 }, sms: { value: 0 }, data: { value: 'lots' } } }),
  },
} as const;
export type BrokenKind = keyof typeof BROKEN_KINDS;

/** Breaks one field of a SIM the way a real feed sometimes does; returns the reason `mapSim` will report. */
export function breakSim(inv: Inventory, i: number, kind: BrokenKind): string {
  const broken = BROKEN_KINDS[kind];
  if (!broken)
    throw new KiteFault(400, 'SVC.1001', `unknown break kind ${kind}; use one of ${Object.keys(BROKEN_KINDS)}`);
  const patch = broken.patch(inv.sim(i));
  inv.overrides.set(i, { ...inv.overrides.get(i), ...patch });
  inv.touch(i);
  return broken.reason;
}

/** Moves SIMs into `group`, or out of any group with `null`. */
export function moveToGroup(inv: Inventory, indexes: number[], group: string | null): void {
  const g = group === null ? -1 : inv.groupIndex(group);
  for (const i of indexes) {
    inv.group[i] = g;
    inv.touch(i);
  }
}

/** Kite's `PUT .../sim/icc:{icc}`: one block per call; life-cycle moves must follow Kite's transitions. */
export function applyKiteWrite(inv: Inventory, i: number, body: unknown): void {
  if (!isObj(body)) throw new KiteFault(400, 'SVC.1000', 'Missing mandatory parameter: request body');
  if (typeof body.lifeCycleStatus === 'string') return writeLifeCycle(inv, i, body.lifeCycleStatus);
  const allowed = ['alias', 'customField1', 'customField2', 'customField3', 'customField4', 'supervisionGroup'];
  const bad = Object.keys(body).find((k) => !allowed.includes(k) || typeof body[k] !== 'string');
  if (bad || !Object.keys(body).length) throw new KiteFault(400, 'SVC.1001', `Invalid parameter: ${bad ?? 'body'}`);
  setSim(inv, i, body);
}

function writeLifeCycle(inv: Inventory, i: number, to: string): void {
  const from = LIFE_CYCLE_STATES[inv.life[i]];
  const ok =
    SETTABLE_STATES.has(to) && (TRANSITIONS[from]?.includes(to) || (from === 'ACTIVATION_READY' && to === 'ACTIVE'));
  if (!ok) throw new KiteFault(400, 'SVC.1021', `There is not an available transition from ${from} to ${to} state`);
  setLifeCycle(inv, i, to, inv.now);
}
