/** Fault injection: the plan of which API request fails how, and the canned answers of each fault kind. */
import { KiteFault } from './mutate';
import { hash32, Rng } from './random';
import type { FaultKind, SimulatorFaults } from './types';

/** A status and a body, as the API answers. */
export type Answer = { status: number; body: string | Buffer };
/** Which part of the API a request is for; faults and latency can target one. */
export type Route = 'list' | 'presence' | 'location' | 'write' | 'other';

/** Kite's JSON error body for `f`. */
export function faultBody(f: KiteFault): string {
  const [category, id] = f.code.split('.');
  return JSON.stringify({ [f.kind]: { exceptionCategory: category, exceptionId: id, text: f.text } });
}

/** Kite's answer beyond the account's request budget (kite-api.md §1.9: POL 1005, "rate per period control"). */
export const RATE_LIMITED = new KiteFault(429, 'POL.1005', 'Request rate per period control not pass.');

/** Kite's own errors, by the fault kind that injects them. */
export const INJECTED: Record<string, KiteFault> = {
  'rate-limit': RATE_LIMITED,
  overload: new KiteFault(503, 'SVR.1006', 'Service temporarily unavailable: system overloaded'),
  'server-error': new KiteFault(500, 'SVR.1000', 'Generic server error'),
  auth: new KiteFault(403, 'POL.1000', 'Restricted information: the certificate has no access to this resource'),
};

/** Answers that are not a SIM list, whatever was asked. */
export const NOT_A_LIST: Partial<Record<FaultKind, Answer & { type?: string }>> = {
  'empty-200': { status: 200, body: '' },
  'no-content': { status: 204, body: '' },
  'error-200': { status: 200, body: faultBody(INJECTED.overload) },
  html: { status: 200, body: '<html><body><h1>Service unavailable</h1></body></html>', type: 'text/html' },
  'not-found-bare': {
    status: 404,
    body: JSON.stringify({ ClientException: { exceptionId: 'SVC.1006', text: 'Resource not found' } }),
  },
};

/** The faults in force: a queue, a seeded rate, per-SIM presence faults and latency. */
export class FaultPlan {
  private faults: Required<SimulatorFaults> = FaultPlan.none();
  private readonly rng: Rng;
  injected = 0;

  constructor(seed: number) {
    this.rng = new Rng(hash32(seed, 0x66617574));
  }

  static none(): Required<SimulatorFaults> {
    return { latencyMs: 0, sequence: [], rate: 0, kinds: ['rate-limit', 'overload'], only: 'all', presenceBySim: {} };
  }

  set(f: SimulatorFaults): void {
    this.faults = {
      ...FaultPlan.none(),
      ...f,
      sequence: [...(f.sequence ?? [])],
      presenceBySim: { ...f.presenceBySim },
    };
  }

  latencyMs(route: Route): number {
    const f = this.faults;
    return f.only === 'all' || f.only === route ? f.latencyMs : 0;
  }

  next(route: Route, icc?: string): FaultKind | undefined {
    const f = this.faults;
    const bySim = route === 'presence' && icc !== undefined ? f.presenceBySim[decodeURIComponent(icc)] : undefined;
    if (bySim) return (this.injected++, bySim);
    if (f.only !== 'all' && f.only !== route) return undefined;
    const queued = f.sequence.shift();
    const kind = queued ?? (f.rate > 0 && this.rng.chance(f.rate) ? this.rng.pick(f.kinds) : undefined);
    if (kind === undefined || kind === 'ok') return undefined;
    this.injected++;
    return kind;
  }

  snapshot(): SimulatorFaults {
    return { ...this.faults, sequence: [...this.faults.sequence], presenceBySim: { ...this.faults.presenceBySim } };
  }
}
