/**
 * The Kite simulator as an HTTPS server: the Inventory REST API of DESIGN §3 under
 * `/services/REST/GlobalM2M/Inventory/v{5..13}/r12`, control endpoints under `/_sim/`, fault injection, and a
 * clock that evolves the SIMs. Runs in-process (tests) or from `simulator/cli.ts`.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseDuration } from '../shared/durations';
import { createLogger, type Logger } from '../shared/log';
import type { KitePresence, KiteSim } from '../kite';
import { ensureDevCertificates, type DevCertificates } from './certs';
import { Evolution, type EvolutionRates } from './evolution';
import { FilterCache, searchParams } from './filters';
import { Inventory } from './inventory';
import { applyKiteWrite, breakSim, KiteFault, moveToGroup, resetSim, setSim, type BrokenKind } from './mutate';
import { hash32, Rng } from './random';

/**
 * Injected faults. Kite's own errors: `rate-limit` (429 POL.1005), `overload` (503 SVR.1006), `server-error`
 * (500 SVR.1000), `auth` (403 POL.1000), `not-found-bare` (404 whose body has `exceptionId` `SVC.1006` and no
 * `exceptionCategory`). Broken transport: `malformed-json` (200, half the body), `truncated` (full Content-Length,
 * half the body, connection dropped), `hang` (no answer), `endless` (a 200 body that never ends). Answers that are
 * not a SIM list: `empty-200` (200, no body), `no-content` (204), `error-200` (200 carrying a Kite error body),
 * `html` (200, a proxy's HTML page). Paging faults of a list answer: `short-page` (the first half of the page
 * only, although more SIMs follow), `ignore-start-index` (the page from index 0 whatever `startIndex` says).
 */
export type FaultKind =
  | 'rate-limit'
  | 'overload'
  | 'server-error'
  | 'auth'
  | 'not-found-bare'
  | 'malformed-json'
  | 'truncated'
  | 'hang'
  | 'endless'
  | 'empty-200'
  | 'no-content'
  | 'error-200'
  | 'html'
  | 'short-page'
  | 'ignore-start-index';

export interface SimulatorFaults {
  /** Delay before every API answer that `only` selects (control endpoints excluded). @default 0 */
  latencyMs?: number;
  /** Faults for the next API requests, one per request, in order; `'ok'` lets one through. @default [] */
  sequence?: Array<FaultKind | 'ok'>;
  /** Probability that an API request (after the sequence) fails with one of `kinds`, seeded. @default 0 */
  rate?: number;
  /** Kinds drawn by `rate`. @default ['rate-limit', 'overload'] */
  kinds?: FaultKind[];
  /** Which API requests faults and latency apply to. @default 'all' */
  only?: 'list' | 'presence' | 'all';
  /** A fault for every presence read of these ICCs, on top of the rest (one SIM's presence broken). @default {} */
  presenceBySim?: Record<string, FaultKind>;
}

export interface KiteSimulatorOptions {
  /** Number of supervision groups (named group-1..N), or their names. @default 3 */
  groups?: number | string[];
  /** SIMs in each group. @default 100 */
  simsPerGroup?: number;
  /** Extra SIMs in no group (the rest of the account). @default 0 */
  ungroupedSims?: number;
  /** Seed of every generated value and of the evolution. @default 42 */
  seed?: number;
  /** Simulated time at start, epoch ms. @default now, whole seconds */
  startTime?: number;
  /** @default 0 (any free port) */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** Require a client certificate signed by the simulator's CA. @default true */
  mtls?: boolean;
  /** Where the generated certificates are cached. @default `<tmpdir>/kite-simulator-certs` */
  certDir?: string;
  /** Real milliseconds between automatic clock advances; 0 = the clock moves only through `advanceClock`. @default 0 */
  tickMs?: number;
  /** Simulated milliseconds per real millisecond for automatic ticks. @default 1 */
  speed?: number;
  /** Event rates per SIM and hour (see EvolutionRates). */
  rates?: Partial<EvolutionRates>;
  /** Cache each SIM's JSON (about 1.3 kB per SIM) so that paging is a string join. @default true */
  jsonCache?: boolean;
  /** Initial faults. */
  faults?: SimulatorFaults;
  /** @default createLogger({ component: 'kite-simulator' }) */
  logger?: Logger;
}

export interface SimulatorStats {
  requests: { list: number; presence: number; location: number; write: number; other: number; control: number };
  faultsInjected: number;
}

/** In-process control, mirroring the `/_sim/` endpoints. ICCs are the SIMs' current ones. */
export interface SimulatorControl {
  /** Simulated time, epoch ms. */
  now(): number;
  /** Moves the clock forward and plays the events of that time. */
  advanceClock(ms: number): void;
  /** SIM count per group. */
  groups(): Record<string, number>;
  /** ICCs in list order: of a group, of no group (`null`), or all (`undefined`). */
  iccs(group?: string | null): string[];
  getSim(icc: string): KiteSim;
  getPresence(icc: string): KitePresence;
  /** Sets fields as Kite would show them (`presence: {...}` for presence); see mutate.ts for pinning. */
  setSim(icc: string, patch: Record<string, unknown>): void;
  resetSim(icc: string): void;
  /** Breaks a field; returns the reason `mapSim` will report. */
  breakSim(icc: string, kind: BrokenKind): string;
  /** Moves SIMs into a group, or out of every group with `null`. */
  moveToGroup(iccs: string[], group: string | null): void;
  setFaults(faults: SimulatorFaults): void;
  clearFaults(): void;
  stats(): SimulatorStats;
}

export interface KiteSimulator {
  /** `https://host:port` */
  url: string;
  /** `url` + `/services/REST/GlobalM2M`: the client's `baseUrl`. */
  baseUrl: string;
  /** Certificate files, and the PEMs/PFX a client needs (`ca` to trust the server; `cert`+`key` or `pfx`+`passphrase`). */
  tls: DevCertificates & { ca: string; cert: string; key: string; pfx: Buffer; passphrase: string };
  control: SimulatorControl;
  close(): Promise<void>;
}

const API =
  /^\/services\/REST\/GlobalM2M\/Inventory\/v(\d+)\/r12\/sim(?:\/icc:([^/]+)(?:\/(presence|location|networkReset))?)?$/;
const SERVICE_PACKS = '/services/REST/GlobalM2M/ServicePacks/v2/r12/servicePack';
const MAX_BODY = 1 << 20;

/** A duration for the simulator's options and control API: a number of ms, or text such as `500ms`, `5s`, `1h30m`. */
export function durationMs(value: string | number): number {
  if (typeof value === 'number') return value;
  const ms = /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : parseDuration(value);
  if (ms === undefined) throw new Error(`invalid duration ${JSON.stringify(value)}: use e.g. 500ms, 5s, 2m, 1h, 1d`);
  return ms;
}

function faultBody(f: KiteFault): string {
  const [category, id] = f.code.split('.');
  return JSON.stringify({ [f.kind]: { exceptionCategory: category, exceptionId: id, text: f.text } });
}

const INJECTED: Record<string, KiteFault> = {
  'rate-limit': new KiteFault(429, 'POL.1005', 'Request rate per period control not pass.'),
  overload: new KiteFault(503, 'SVR.1006', 'Service temporarily unavailable: system overloaded'),
  'server-error': new KiteFault(500, 'SVR.1000', 'Generic server error'),
  auth: new KiteFault(403, 'POL.1000', 'Restricted information: the certificate has no access to this resource'),
};

/** Answers that are not a SIM list, whatever was asked. */
const NOT_A_LIST: Partial<Record<FaultKind, Answer & { type?: string }>> = {
  'empty-200': { status: 200, body: '' },
  'no-content': { status: 204, body: '' },
  'error-200': { status: 200, body: faultBody(INJECTED.overload) },
  html: { status: 200, body: '<html><body><h1>Service unavailable</h1></body></html>', type: 'text/html' },
  'not-found-bare': {
    status: 404,
    body: JSON.stringify({ ClientException: { exceptionId: 'SVC.1006', text: 'Resource not found' } }),
  },
};

type Route = 'list' | 'presence' | 'location' | 'write' | 'other';
type Answer = { status: number; body: string };

class FaultPlan {
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

class Simulator {
  readonly inv: Inventory;
  readonly evolution: Evolution;
  readonly faults: FaultPlan;
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

  private list(version: number, query: URLSearchParams, fault?: FaultKind): string {
    const cap = version <= 6 ? 100 : 1000;
    const asked = intParam(query, 'startIndex', 0, 0, Number.MAX_SAFE_INTEGER);
    const start = fault === 'ignore-start-index' ? 0 : asked;
    const requested = intParam(query, 'maxBatchSize', cap, 1, cap);
    const size = fault === 'short-page' ? Math.floor(requested / 2) : requested;
    const params = searchParams(query);
    const selected = params.length ? this.filters.select(this.inv, params) : undefined;
    const total = selected ? selected.length : this.inv.size;
    const parts: string[] = [];
    for (let k = start; k < Math.min(total, start + size); k++)
      parts.push(this.inv.simJson(selected ? selected[k] : k));
    return `{"subscriptionData":[${parts.join(',')}]}`;
  }

  route(method: string, url: URL): Route {
    if (!API.test(url.pathname)) return 'other';
    if (method !== 'GET') return 'write';
    if (url.pathname.endsWith('/presence')) return 'presence';
    if (url.pathname.endsWith('/location')) return 'location';
    return url.pathname.endsWith('/sim') ? 'list' : 'other';
  }
}

function ok(value: unknown): Answer {
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

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      if ((size += c.length) > MAX_BODY) req.destroy(new KiteFault(413, 'SVC.1011', 'Request body too large'));
      else chunks.push(c);
    });
    req.once('error', reject);
    req.once('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text ? JSON.parse(text) : undefined);
      } catch {
        reject(new KiteFault(400, 'SVC.1001', 'Invalid parameter: the body is not JSON'));
      }
    });
  });
}

function send(res: ServerResponse, a: Answer): void {
  const headers: Record<string, string | number> = { 'content-length': Buffer.byteLength(a.body) };
  if (a.body) headers['content-type'] = 'application/json; charset=utf-8';
  res.writeHead(a.status, headers).end(a.body);
}

function sendFault(res: ServerResponse, f: KiteFault): void {
  if (f.status === 429) res.setHeader('retry-after', '1');
  send(res, { status: f.status, body: faultBody(f) });
}

/** Sends a damaged answer: half the JSON (malformed), or half the announced bytes and a dropped connection. */
function corrupt(res: ServerResponse, kind: FaultKind, a: Answer): void {
  const half = a.body.slice(0, Math.floor(a.body.length / 2));
  if (kind === 'malformed-json') return send(res, { status: a.status, body: half });
  // truncated: announce the full length, send half, then drop the connection
  res.writeHead(a.status, { 'content-length': Buffer.byteLength(a.body), 'content-type': 'application/json' });
  res.write(half, () => res.socket?.destroy());
}

/** A 200 whose JSON list never ends: SIM-like items written as fast as the client reads, until it hangs up. */
function sendEndless(res: ServerResponse): void {
  const item = JSON.stringify({ icc: '8934000000000000000', alias: 'x'.repeat(200) });
  const chunk = Buffer.from(`${item},`.repeat(256));
  res.writeHead(200, { 'content-type': 'application/json' });
  res.write('{"subscriptionData":[');
  const pump = () => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', pump);
  };
  res.once('close', () => res.removeListener('drain', pump));
  pump();
}

async function serve(sim: Simulator, control: ControlHttp, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://simulator');
  const method = req.method ?? 'GET';
  if (url.pathname.startsWith('/_sim/')) return control.handle(method, url, req, res);
  const route = sim.route(method, url);
  sim.counts[route]++;
  const body = method === 'PUT' ? await readBody(req) : undefined;
  const latency = sim.faults.latencyMs(route);
  if (latency > 0) await new Promise((r) => setTimeout(r, latency));
  const fault = sim.faults.next(route, API.exec(url.pathname)?.[2]);
  if (fault === 'hang') return; // the client's timeout must fire; close() drops the socket
  if (fault === 'endless') return sendEndless(res);
  if (fault && INJECTED[fault]) return sendFault(res, INJECTED[fault]);
  const broken = fault && NOT_A_LIST[fault];
  if (broken)
    return void res.writeHead(broken.status, broken.type ? { 'content-type': broken.type } : {}).end(broken.body);
  const answer = sim.api(method, url, body, fault);
  if (fault === 'malformed-json' || fault === 'truncated') return corrupt(res, fault, answer);
  send(res, answer);
}

/** The `/_sim/` endpoints: thin JSON wrappers around SimulatorControl. */
class ControlHttp {
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
      default:
        throw new KiteFault(404, 'SVC.1006', `No control endpoint ${method} /_sim/${p.join('/')}`);
    }
  }
}

function makeControl(sim: Simulator): SimulatorControl {
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
    stats: () => ({ requests: { ...sim.counts }, faultsInjected: sim.faults.injected }),
  };
}

/** Starts a simulator; with `mtls` (the default) only clients with a certificate of its CA get in. */
export async function startKiteSimulator(options: KiteSimulatorOptions = {}): Promise<KiteSimulator> {
  const log = options.logger ?? createLogger({ component: 'kite-simulator' });
  const certs = ensureDevCertificates(options.certDir ?? path.join(os.tmpdir(), 'kite-simulator-certs'));
  const sim = new Simulator(options, log);
  const control = makeControl(sim);
  const http = new ControlHttp(sim, control);
  const mtls = options.mtls ?? true;
  const ca = readFileSync(certs.caFile, 'utf8');
  const server = https.createServer(
    {
      key: readFileSync(certs.serverKeyFile),
      cert: readFileSync(certs.serverCertFile),
      ca,
      requestCert: mtls,
      rejectUnauthorized: mtls,
    },
    (req, res) => {
      serve(sim, http, req, res).catch((err: unknown) => {
        const fault =
          err instanceof KiteFault ? err : new KiteFault(500, 'SVR.1000', `Simulator error: ${(err as Error).message}`);
        if (!(err instanceof KiteFault)) log.error('simulator request failed', { err, url: req.url });
        if (!res.headersSent) sendFault(res, fault);
      });
    }
  );
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const ticker = startTicker(sim, options);
  const warmer = startWarming(sim, options);
  const { port } = server.address() as AddressInfo;
  const host = options.host && options.host !== '0.0.0.0' ? options.host : '127.0.0.1';
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    url,
    baseUrl: `${url}/services/REST/GlobalM2M`,
    tls: {
      ...certs,
      ca,
      cert: readFileSync(certs.clientCertFile, 'utf8'),
      key: readFileSync(certs.clientKeyFile, 'utf8'),
      pfx: readFileSync(certs.pfxFile),
      passphrase: readFileSync(certs.passphraseFile, 'utf8').trim(),
    },
    control,
    close: () => {
      if (ticker) clearInterval(ticker);
      warmer.stop();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function startTicker(sim: Simulator, o: KiteSimulatorOptions): NodeJS.Timeout | undefined {
  const tickMs = o.tickMs ?? 0;
  if (tickMs <= 0) return undefined;
  const timer = setInterval(() => sim.evolution.advance(tickMs * (o.speed ?? 1)), tickMs);
  timer.unref();
  return timer;
}

/** Builds every SIM's JSON in the background, in small slices, so that even the first full paging is fast. */
function startWarming(sim: Simulator, o: KiteSimulatorOptions): { stop(): void } {
  let next: NodeJS.Immediate | undefined;
  const slice = (from: number) => {
    const end = Math.min(sim.inv.size, from + 500);
    for (let i = from; i < end; i++) sim.inv.simJson(i);
    next = end < sim.inv.size ? setImmediate(slice, end) : undefined;
  };
  if (o.jsonCache ?? true) next = setImmediate(slice, 0);
  return { stop: () => next && clearImmediate(next) };
}
