/** The Kite simulator: a faithful stand-in for Kite's Inventory REST API, for tests, demos and benchmarks. */
export {
  startKiteSimulator,
  durationMs,
  type KiteSimulator,
  type KiteSimulatorOptions,
  type SimulatorControl,
  type SimulatorFaults,
  type SimulatorStats,
  type FaultKind,
} from './server';
export { ensureDevCertificates, type DevCertificates } from './certs';
export { BROKEN_KINDS, type BrokenKind } from './mutate';
export { DEFAULT_RATES, type EvolutionRates } from './evolution';
export { luhnValid } from './random';
export type { RateLimitStats, RequestLogEntry, SimulatorRateLimit } from './rate-limit';
