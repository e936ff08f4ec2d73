/**
 * The connector's own metrics, on the same Prometheus endpoint as the Temporal SDK's: they are created on the
 * Runtime's metric meter (`Runtime.instance().metricMeter`, or an activity's `Context.current().metricMeter`),
 * which the SDK's Prometheus exporter serves at `http://<bindAddress>/metrics`. Series (no `temporal_` prefix):
 *
 * | metric | kind | labels |
 * |---|---|---|
 * | `kite_cc_sims_fetched` | counter | group |
 * | `kite_cc_sims_changed` | counter | group, target |
 * | `kite_cc_sims_published` | counter | group, target |
 * | `kite_cc_sims_failed` | counter | group, target |
 * | `kite_cc_cycle_duration` | histogram, ms | group |
 * | `kite_cc_target_latency` | histogram, ms | target |
 * | `kite_cc_target_throttles` | counter | target |
 * | `kite_cc_target_paused_until` | gauge, Unix seconds (0: not paused) | group, target, cause |
 *
 * `kite_cc_target_paused_until` is when a target paused as a whole resumes (e.g. its daily message quota, at
 * 00:00 UTC): set by each publish call the target refuses for a pause, back to 0 by one it accepts. `cause` says
 * what is spent: `hub-quota` (Azure: the hub refused with 403002, its own daily quota), `daily-budget` (Azure:
 * the connector's `dailyMessageBudget`), `other` for a target that does not say.
 */
import type { MetricMeter } from '@temporalio/common';
import { DefaultLogger, makeTelemetryFilterString, Runtime, type LogLevel as SdkLogLevel } from '@temporalio/worker';
import { createLogger, type Logger, type LogLevel } from '../shared/log';
import type { PublishOutcome } from '../targets/target';
import { DEFAULT_METRICS_ADDRESS, LOG_LEVEL_VARIABLE } from '../shared/defaults';

export const METRIC_NAMES = {
  simsFetched: 'kite_cc_sims_fetched',
  simsChanged: 'kite_cc_sims_changed',
  simsPublished: 'kite_cc_sims_published',
  simsFailed: 'kite_cc_sims_failed',
  cycleDuration: 'kite_cc_cycle_duration',
  targetLatency: 'kite_cc_target_latency',
  targetThrottles: 'kite_cc_target_throttles',
  targetPausedUntil: 'kite_cc_target_paused_until',
} as const;

/** Histogram buckets in ms: a cycle takes seconds to many minutes; one target call, milliseconds to seconds. */
export const HISTOGRAM_BUCKETS: Record<string, number[]> = {
  [METRIC_NAMES.cycleDuration]: [500, 1_000, 5_000, 15_000, 30_000, 60_000, 300_000, 900_000, 3_600_000],
  [METRIC_NAMES.targetLatency]: [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000],
};

/** Typed recorders for the connector's metrics. Zero and negative counts are ignored. */
export interface ConnectorMetrics {
  simsFetched(group: string, n: number): void;
  simsChanged(group: string, target: string, n: number): void;
  simsPublished(group: string, target: string, n: number): void;
  simsFailed(group: string, target: string, n: number): void;
  cycleDuration(group: string, ms: number): void;
  targetLatency(target: string, ms: number): void;
  targetThrottles(target: string, n: number): void;
  /**
   * When the target's pause ends (epoch ms), 0 when it is not paused; `cause` as the target names it (see the
   * table above). Ending a pause sets every cause's series of the target back to 0.
   */
  targetPausedUntil(group: string, target: string, epochMs: number, cause?: string): void;
}

/** Creates the connector's metrics on `meter` (the Runtime's, an activity context's, or a test double). */
export function createConnectorMetrics(meter: MetricMeter): ConnectorMetrics {
  const counter = (name: string, unit: string, description: string) => {
    const metric = meter.createCounter(name, unit, description);
    return (n: number, tags: Record<string, string>) => {
      if (Number.isFinite(n) && n > 0) metric.add(Math.round(n), tags);
    };
  };
  const histogram = (name: string, description: string) => {
    const metric = meter.createHistogram(name, 'int', 'ms', description);
    return (ms: number, tags: Record<string, string>) => {
      if (Number.isFinite(ms)) metric.record(Math.max(0, Math.round(ms)), tags);
    };
  };
  const fetched = counter(METRIC_NAMES.simsFetched, 'sims', 'SIMs read from Kite while syncing the group');
  const changed = counter(METRIC_NAMES.simsChanged, 'sims', 'SIMs with a change to publish');
  const published = counter(METRIC_NAMES.simsPublished, 'sims', 'SIMs the target acknowledged');
  const failed = counter(METRIC_NAMES.simsFailed, 'sims', 'SIMs whose publish failed (permanent or retryable)');
  // Created on first use: in a worker, the workflow records cycle durations on its own meter (it knows the cycle).
  let cycle: ReturnType<typeof histogram> | undefined;
  const latency = histogram(METRIC_NAMES.targetLatency, 'Duration of one publish call to a target');
  const throttles = counter(METRIC_NAMES.targetThrottles, 'sims', 'SIMs the target throttled');
  const pausedUntil = meter.createGauge(
    METRIC_NAMES.targetPausedUntil,
    'int',
    's',
    'When a target paused as a whole resumes (Unix time; 0: not paused), e.g. a daily quota at 00:00 UTC'
  );
  /** Per group and target, the causes whose series are not 0. */
  const pauseCauses = new Map<string, Set<string>>();
  return {
    simsFetched: (group, n) => fetched(n, { group }),
    simsChanged: (group, target, n) => changed(n, { group, target }),
    simsPublished: (group, target, n) => published(n, { group, target }),
    simsFailed: (group, target, n) => failed(n, { group, target }),
    cycleDuration: (group, ms) =>
      (cycle ??= histogram(METRIC_NAMES.cycleDuration, 'Duration of a sync cycle'))(ms, { group }),
    targetLatency: (target, ms) => latency(ms, { target }),
    targetThrottles: (target, n) => throttles(n, { target }),
    targetPausedUntil: (group, target, epochMs, cause = 'other') => {
      const key = JSON.stringify([group, target]);
      const seen = pauseCauses.get(key) ?? new Set<string>();
      pauseCauses.set(key, seen);
      const seconds = Math.max(0, Math.round(epochMs / 1000));
      // One cause at a time: a pause for another cause, or the end of the pause, zeroes the other series.
      for (const other of seen) if (!seconds || other !== cause) pausedUntil.set(0, { group, target, cause: other });
      seen.clear();
      if (seconds) {
        seen.add(cause);
        pausedUntil.set(seconds, { group, target, cause });
      }
    },
  };
}

/**
 * Activity hooks (the shape of `startWorker`'s `WorkerHooks`) that feed `metrics`: SIMs read per Kite page,
 * changes per target found by diff, and per publish call its outcomes and latency.
 */
export function metricsHooks(metrics: ConnectorMetrics) {
  return {
    onProgress(group: string, fetched: number): void {
      metrics.simsFetched(group, fetched);
    },
    onDiff(group: string, target: string, changed: number): void {
      metrics.simsChanged(group, target, changed);
    },
    onOutcomes(group: string, target: string, outcomes: PublishOutcome[], ms: number): void {
      const count = (status: PublishOutcome['status']) => outcomes.filter((o) => o.status === status).length;
      metrics.simsPublished(group, target, count('ok'));
      metrics.simsFailed(group, target, count('permanent') + count('retryable'));
      metrics.targetThrottles(target, count('throttled'));
      metrics.targetLatency(target, ms);
      let pause: { until: number; cause?: string } | undefined;
      for (const o of outcomes)
        if (o.status === 'throttled' && o.pausedUntil && o.pausedUntil > (pause?.until ?? 0))
          pause = { until: o.pausedUntil, cause: o.pauseCause };
      if (pause) metrics.targetPausedUntil(group, target, pause.until, pause.cause);
      else if (count('ok')) metrics.targetPausedUntil(group, target, 0);
    },
  };
}

export interface InstallRuntimeOptions {
  /** `host:port` of the Prometheus endpoint (`/metrics`), or `off`. @default '127.0.0.1:9464' */
  prometheusBindAddress?: string;
  /** Lowest level of SDK and Core logs written. @default process.env.KITE_LOG_LEVEL ?? 'info' */
  logLevel?: LogLevel;
  /** Where SDK logs go. @default createLogger({ component: 'temporal-sdk' }) */
  logger?: Logger;
}

const SDK_LEVEL: Record<LogLevel, SdkLogLevel> = { debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR' };

function ourLevel(level: SdkLogLevel): LogLevel {
  if (level === 'ERROR' || level === 'WARN' || level === 'INFO') return level.toLowerCase() as LogLevel;
  return 'debug';
}

/**
 * Installs the process-wide Temporal Runtime: SDK and Core logs into our JSON logger, and (unless `off`) the
 * Prometheus exporter that serves the SDK's metrics and ours. Call once, before any connection or worker.
 * Returns the connector's metrics on the Runtime's meter.
 */
export function installRuntime(options: InstallRuntimeOptions = {}): { runtime: Runtime; metrics: ConnectorMetrics } {
  const level = options.logLevel ?? (process.env[LOG_LEVEL_VARIABLE] as LogLevel | undefined) ?? 'info';
  const sdkLevel = SDK_LEVEL[level] ?? 'INFO';
  const logger = options.logger ?? createLogger({ component: 'temporal-sdk' }, { level });
  const bindAddress = options.prometheusBindAddress ?? DEFAULT_METRICS_ADDRESS;
  const runtime = Runtime.install({
    logger: new DefaultLogger(sdkLevel, (entry) => logger[ourLevel(entry.level)](entry.message, { ...entry.meta })),
    telemetryOptions: {
      logging: { filter: makeTelemetryFilterString({ core: sdkLevel, other: 'ERROR' }), forward: {} },
      metrics:
        bindAddress === 'off'
          ? undefined
          : { prometheus: { bindAddress, histogramBucketOverrides: HISTOGRAM_BUCKETS } },
    },
  });
  return { runtime, metrics: createConnectorMetrics(runtime.metricMeter) };
}
