/** The simulated Kite Inventory REST API: the SIM state and its routes (list, presence, location, writes). */
import type { Logger } from '../shared/log';
import { Evolution } from './evolution';
import { FaultPlan, type Answer, type Route } from './faults';
import { FilterCache, searchParams } from './filters';
import { Inventory } from './inventory';
import { AccountBudgets } from './rate-limit';
import { applyKiteWrite, KiteFault } from './mutate';
import type { FaultKind, KiteSimulatorOptions, SimulatorStats } from './types';

export const API =
  /^\/services\/REST\/GlobalM2M\/Inventory\/v(\d+)\/r12\/sim(?:\/icc:([^/]+)(?:\/(presence|location|networkReset))?)?$/;
const LIST_OPEN = Buffer.from('{"subscriptionData":[');
const LIST_CLOSE = Buffer.from(']}');
const COMMA = Buffer.from(',');
const SERVICE_PACKS = '/services/REST/GlobalM2M/ServicePacks/v2/r12/servicePack';

/** One simulated Kite account: inventory, evolution, faults and request counts. */
export class Simulator {
  readonly inv: Inventory;
  readonly evolution: Evolution;
  readonly faults: FaultPlan;
  /** The request budget of each account (client certificate). */
  readonly budgets: AccountBudgets;
  /** Delay of every admitted API request, on top of any fault plan's. */
  readonly latencyMs: number;
  private readonly filters = new FilterCache();
  readonly counts: SimulatorStats['requests'] = { list: 0, presence: 0, location: 0, write: 0, other: 0, control: 0 };

  constructor(
    o: KiteSimulatorOptions,
    readonly log: Logger
  ) {
    const seed = o.seed ?? 42;
    const groups =
      typeof o.groups === 'object' ? o.groups : Array.from({ length: o.groups ?? 3 }, (_, k) => `group-${k + 1}`);
    this.inv = new Inventory({
      seed,
      groups,
      simsPerGroup: o.simsPerGroup ?? 100,
      ungroupedSims: o.ungroupedSims ?? 0,
      startTime: o.startTime ?? Math.floor(Date.now() / 1000) * 1000,
      jsonCache: o.jsonCache ?? true,
    });
    this.evolution = new Evolution(this.inv, seed, o.rates);
    this.faults = new FaultPlan(seed);
    this.budgets = new AccountBudgets(o.rateLimit);
    this.latencyMs = o.latencyMs ?? 0;
    if (o.faults) this.faults.set(o.faults);
  }

  index(icc: string): number {
    const i = this.inv.indexOf(decodeURIComponent(icc));
    if (i === undefined) throw new KiteFault(404, 'SVC.1006', `Sim icc:${icc} not found`);
    return i;
  }

  /** The Kite API proper. */
  api(method: string, url: URL, body: unknown, fault?: FaultKind): Answer {
    if (url.pathname === SERVICE_PACKS) return ok({ servicePack: [{ name: 'M2M Global 10MB', id: '1' }] });
    const m = API.exec(url.pathname);
    if (!m) throw new KiteFault(404, 'SVC.1006', `Resource ${url.pathname} does not exist`);
    const version = Number(m[1]);
    if (version < 5) throw new KiteFault(400, 'SVC.1004', 'API version deprecated, use v13');
    if (version > 13) throw new KiteFault(404, 'SVC.1006', `Inventory v${version} does not exist`);
    const [, , icc, sub] = m;
    if (!icc) {
      if (method !== 'GET') throw new KiteFault(405, 'SVC.1013', 'Operation not allowed');
      return { status: 200, body: this.list(version, url.searchParams, fault) };
    }
    const i = this.index(icc);
    if (method === 'GET' && sub === 'presence') return ok({ presenceDetailData: this.inv.presence(i) });
    if (method === 'GET' && sub === 'location') return ok({ locationDetailData: this.inv.location(i) });
    if (method === 'PUT' && sub === 'networkReset') return ok({ result: true });
    if (method === 'PUT' && !sub) return (applyKiteWrite(this.inv, i, body), { status: 204, body: '' });
    throw new KiteFault(405, 'SVC.1013', 'Operation not allowed');
  }

  private list(version: number, query: URLSearchParams, fault?: FaultKind): Buffer {
    const cap = version <= 6 ? 100 : 1000;
    const asked = intParam(query, 'startIndex', 0, 0, Number.MAX_SAFE_INTEGER);
    const start = fault === 'ignore-start-index' ? 0 : asked;
    const requested = intParam(query, 'maxBatchSize', cap, 1, cap);
    const size = fault === 'short-page' ? Math.floor(requested / 2) : requested;
    const params = searchParams(query);
    const selected = params.length ? this.filters.select(this.inv, params) : undefined;
    const total = selected ? selected.length : this.inv.size;
    const parts: Buffer[] = [LIST_OPEN];
    for (let k = start; k < Math.min(total, start + size); k++) {
      if (k > start) parts.push(COMMA);
      parts.push(this.inv.simBytes(selected ? selected[k] : k));
    }
    parts.push(LIST_CLOSE);
    return Buffer.concat(parts);
  }

  route(method: string, url: URL): Route {
    if (!API.test(url.pathname)) return 'other';
    if (method !== 'GET') return 'write';
    if (url.pathname.endsWith('/presence')) return 'presence';
    if (url.pathname.endsWith('/location')) return 'location';
    return url.pathname.endsWith('/sim') ? 'list' : 'other';
  }
}

export function ok(value: unknown): Answer {
  return { status: 200, body: JSON.stringify(value) };
}

function intParam(q: URLSearchParams, name: string, dflt: number, min: number, max: number): number {
  const raw = q.get(name);
  if (raw === null) return dflt;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) {
    const text =
      name === 'maxBatchSize'
        ? `Invalid value for maxBatchSize. Supported values are integers minor or equal than ${max} and bigger than 0`
        : `Invalid value for ${name}: ${raw}`;
    throw new KiteFault(400, 'SVC.0002', text);
  }
  return n;
}
