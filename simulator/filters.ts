/**
 * The list search parameters the simulator implements (Kite's REST names, see reference §1.5). Kite has many
 * more; those answer SVR.1003 "not implemented" rather than being silently ignored.
 */
import { LIFE_CYCLE_STATES } from '../kite';
import { VISITED_NETWORKS } from './catalog';
import { IN_SESSION, ipToString, type Inventory } from './inventory';
import { KiteFault } from './mutate';

type Accessor = (inv: Inventory, i: number) => string | undefined;

const ACCESSORS: Record<string, Accessor> = {
  icc: (inv, i) => inv.icc[i],
  imsi: (inv, i) => inv.staticOf(i).imsi,
  msisdn: (inv, i) => inv.staticOf(i).msisdn,
  imei: (inv, i) => inv.imei[i],
  alias: (inv, i) => inv.alias[i],
  // "subscriptions currently using the given APN/IP during an ongoing GPRS session"
  apn: (inv, i) => (inv.level[i] >= IN_SESSION ? inv.apn[i].toLowerCase() : undefined),
  ip: (inv, i) => (inv.ip[i] ? ipToString(inv.ip[i]) : undefined),
  customField_1: (inv, i) => inv.staticOf(i).customField1,
  customField_2: () => '',
  customField_3: () => '',
  customField_4: () => '',
  lifeCycleState: (inv, i) => LIFE_CYCLE_STATES[inv.life[i]],
  operator: (inv, i) => VISITED_NETWORKS[inv.visited[i]]?.operator,
  country: (inv, i) => VISITED_NETWORKS[inv.visited[i]]?.country,
  presence: (inv, i) => (inv.level[i] === 3 ? 'ip' : inv.level[i] === IN_SESSION ? 'gprs' : ''),
};

/** Field names in the SIM JSON, where an override may replace the model's value. */
const JSON_FIELD: Record<string, string> = {
  customField_1: 'customField1',
  customField_2: 'customField2',
  customField_3: 'customField3',
  customField_4: 'customField4',
  lifeCycleState: 'lifeCycleStatus',
};

function matches(inv: Inventory, i: number, param: string, wanted: string): boolean {
  const pinned = inv.overrides.get(i);
  const field = JSON_FIELD[param] ?? param;
  const value = pinned && field in pinned ? String(pinned[field] ?? '') : (ACCESSORS[param](inv, i) ?? '');
  if (param === 'presence') {
    const negate = wanted.startsWith('!');
    const hit = wanted.replace('!', '') === 'gprs' ? value !== '' : value === 'ip';
    return negate !== hit;
  }
  return param === 'apn' ? value === wanted.toLowerCase() : value === wanted;
}

/** Checks the search parameters of a list request; throws Kite's fault for unknown or unsupported ones. */
export function searchParams(query: URLSearchParams): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of query) {
    if (name === 'startIndex' || name === 'maxBatchSize') continue;
    if (!ACCESSORS[name]) throw new KiteFault(501, 'SVR.1003', `Search parameter ${name} is not implemented`);
    if (name === 'presence' && !['ip', 'gprs', '!ip', '!gprs'].includes(value)) {
      throw new KiteFault(
        400,
        'SVC.0003',
        `Invalid value ${value} for presence. Possible values: ip, gprs, !ip, !gprs`
      );
    }
    out.push([name, value]);
  }
  return out;
}

/** Indexes of the SIMs matching every parameter, cached until the inventory changes. */
export class FilterCache {
  private key = '';
  private version = -1;
  private result: number[] = [];

  select(inv: Inventory, params: Array<[string, string]>): number[] {
    const key = JSON.stringify(params);
    if (key === this.key && inv.version === this.version) return this.result;
    const result: number[] = [];
    for (let i = 0; i < inv.size; i++) if (params.every(([p, v]) => matches(inv, i, p, v))) result.push(i);
    [this.key, this.version, this.result] = [key, inv.version, result];
    return result;
  }
}
