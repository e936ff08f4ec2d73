/** The simulator's public types: its options, fault plan, control surface and statistics. */
import type { KitePresence, KiteSim } from '../kite';
import type { DevCertificates } from './certs';
import type { EvolutionRates } from './evolution';
import type { BrokenKind } from './mutate';
import type { RateLimitStats, RequestLogEntry, SimulatorRateLimit } from './rate-limit';
import type { Logger } from '../shared/log';

/**
 * Injected faults. Kite's own errors: `rate-limit` (429 POL.1005), `overload` (503 SVR.1006), `server-error`
 * (500 SVR.1000), `auth` (403 POL.1000), `not-found-bare` (404 whose body has `exceptionId` `SVC.1006` and no
 * `exceptionCategory`). Broken transport: `malformed-json` (200, half the body), `truncated` (full Content-Length,
 * half the body, connection dropped), `hang` (no answer), `reset` (the connection closed at once, no answer),
 * `endless` (a 200 body that never ends). Answers that are not a SIM list: `empty-200` (200, no body),
 * `no-content` (204), `error-200` (200 carrying a Kite error body), `html` (200, a proxy's HTML page). Paging
 * faults of a list answer: `short-page` (the first half of the page only, although more SIMs follow),
 * `ignore-start-index` (the page from index 0 whatever `startIndex` says).
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
  | 'reset'
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
  /** Cache each SIM's JSON (about 1.3 kB per SIM) so that paging is a byte copy. @default true */
  jsonCache?: boolean;
  /** Initial faults. */
  faults?: SimulatorFaults;
  /**
   * Kite's request budget per account (client certificate), over every connection and client: beyond it, 429
   * POL.1005 with a Retry-After. @default { perSecond: 0 } (unlimited); Kite's own is about 4 requests/s
   */
  rateLimit?: SimulatorRateLimit;
  /** Delay of every admitted API request (not control requests), as a distant Kite adds; faults may add more. @default 0 */
  latencyMs?: number;
  /** @default createLogger({ component: 'kite-simulator' }) */
  logger?: Logger;
}

export interface SimulatorStats {
  requests: { list: number; presence: number; location: number; write: number; other: number; control: number };
  faultsInjected: number;
  /** The account budget: its limit, requests admitted and refused (429 POL.1005), the peak per second. */
  rateLimit: RateLimitStats;
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
  /** Changes the account budget from now on (`{ perSecond: 0 }`: unlimited); see `rateLimit`. */
  setRateLimit(limit: SimulatorRateLimit): void;
  stats(): SimulatorStats;
  /** The last API requests (at most 100,000) as the account budget judged them, oldest first. */
  requestLog(): RequestLogEntry[];
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
