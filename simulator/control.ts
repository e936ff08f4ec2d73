/** The simulator's control surface: in-process (SimulatorControl) and over HTTP under `/_sim/`. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseDuration } from '../shared/durations';
import { ok, type Simulator } from './api';
import { readBody, send } from './http';
import { breakSim, KiteFault, moveToGroup, resetSim, setSim, type BrokenKind } from './mutate';
import type { SimulatorRateLimit } from './rate-limit';
import type { SimulatorControl, SimulatorFaults } from './types';

/** A duration for the simulator's options and control API: a number of ms, or text such as `500ms`, `5s`, `1h30m`. */
export function durationMs(value: string | number): number {
  if (typeof value === 'number') return value;
  const ms = /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : parseDuration(value);
  if (ms === undefined) throw new Error(`invalid duration ${JSON.stringify(value)}: use e.g. 500ms, 5s, 2m, 1h, 1d`);
  return ms;
}

/** The `/_sim/` endpoints: thin JSON wrappers around SimulatorControl. */
export class ControlHttp {
  constructor(
    private readonly sim: Simulator,
    private readonly control: SimulatorControl
  ) {}

  async handle(method: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.sim.counts.control++;
    const body = (method === 'GET' ? undefined : await readBody(req)) as Record<string, unknown> | undefined;
    const parts = url.pathname.split('/').slice(2).map(decodeURIComponent); // after "/_sim/"
    let answer: unknown;
    try {
      answer = this.dispatch(method, parts, url.searchParams, body ?? {});
    } catch (err) {
      throw err instanceof KiteFault ? err : new KiteFault(400, 'SVC.1001', (err as Error).message);
    }
    send(res, answer === undefined ? { status: 204, body: '' } : ok(answer));
  }

  private dispatch(method: string, p: string[], q: URLSearchParams, body: Record<string, unknown>): unknown {
    const c = this.control;
    const shape = (p[0] === 'sims' || p[0] === 'groups') && p.length > 1 ? [p[0], ':', ...p.slice(2)] : p;
    const key = `${method} ${shape.join('/')}`;
    switch (key) {
      case 'GET info':
        return { now: new Date(c.now()).toISOString(), groups: c.groups(), stats: c.stats() };
      case 'GET sims':
        return { iccs: c.iccs(q.has('group') ? q.get('group') || null : undefined) };
      case 'GET sims/:':
        return { sim: c.getSim(p[1]), presence: c.getPresence(p[1]) };
      case 'PATCH sims/:':
      case 'POST sims/:':
        return c.setSim(p[1], body);
      case 'DELETE sims/:/overrides':
        return c.resetSim(p[1]);
      case 'POST sims/:/break':
        return { reason: c.breakSim(p[1], body.kind as BrokenKind) };
      case 'POST groups/:/sims':
      case 'DELETE groups/:/sims':
        return c.moveToGroup(body.iccs as string[], method === 'POST' ? p[1] : null);
      case 'POST clock/advance':
        c.advanceClock(durationMs((body.ms ?? body.by ?? q.get('by') ?? 0) as string | number));
        return { now: new Date(c.now()).toISOString() };
      case 'PUT faults':
        return c.setFaults(body as SimulatorFaults);
      case 'DELETE faults':
        return c.clearFaults();
      case 'GET faults':
        return this.sim.faults.snapshot();
      case 'PUT rate-limit':
        return c.setRateLimit(body as unknown as SimulatorRateLimit);
      default:
        throw new KiteFault(404, 'SVC.1006', `No control endpoint ${method} /_sim/${p.join('/')}`);
    }
  }
}

export function makeControl(sim: Simulator): SimulatorControl {
  const inv = sim.inv;
  const idx = (icc: string) => sim.index(icc);
  return {
    now: () => inv.now,
    advanceClock: (ms) => sim.evolution.advance(ms),
    groups: () => {
      const out: Record<string, number> = Object.fromEntries(inv.groupNames.map((g) => [g, 0]));
      for (let i = 0; i < inv.size; i++) if (inv.group[i] >= 0) out[inv.groupNames[inv.group[i]]]++;
      return out;
    },
    iccs: (group) => {
      const g = group === undefined ? undefined : group === null ? -1 : inv.groupNames.indexOf(group);
      return inv.icc.filter((_, i) => g === undefined || inv.group[i] === g);
    },
    getSim: (icc) => inv.sim(idx(icc)),
    getPresence: (icc) => inv.presence(idx(icc)),
    setSim: (icc, patch) => setSim(inv, idx(icc), patch),
    resetSim: (icc) => resetSim(inv, idx(icc)),
    breakSim: (icc, kind) => breakSim(inv, idx(icc), kind),
    moveToGroup: (iccs, group) => {
      if (!Array.isArray(iccs)) throw new KiteFault(400, 'SVC.1000', 'iccs must be a list of ICCs');
      moveToGroup(inv, iccs.map(idx), group);
    },
    setFaults: (f) => sim.faults.set(f),
    clearFaults: () => sim.faults.set({}),
    setRateLimit: (limit) => sim.budgets.setLimit(limit),
    stats: () => ({
      requests: { ...sim.counts },
      faultsInjected: sim.faults.injected,
      rateLimit: sim.budgets.snapshot(),
    }),
    requestLog: () => sim.budgets.requestLog(),
  };
}
