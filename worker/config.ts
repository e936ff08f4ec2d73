/**
 * The worker's configuration: a JSON file (KITE_CONFIG_FILE) overlaid by environment variables, validated up
 * front by one schema. An error is a ConfigError naming the setting (the variable, or the file path such as
 * `kite.pageSize` or `targets.aws-eu.region`) and what it expects, never the value of a secret. Any string value
 * may be `env:NAME` to read it from another variable, so a config file can stay free of secrets.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DEFAULT_MAX_RESPONSE_BYTES } from '../kite';
import { ConfigError } from '../shared/config-error';
import { DEFAULT_METRICS_ADDRESS } from '../shared/defaults';
import {
  numberSetting,
  optionalText,
  parseSettings,
  strictSettings,
  textOr,
  urlSetting,
  type Env,
  type EnvBindings,
  type Json,
} from '../shared/settings';
import { temporalBindings, temporalSettingsSchema } from '../shared/temporal-settings';
import { redisUrlSetting } from '../state/redis';
import { parseTargetConfigs, type ConfigWarning, type TargetConfig } from '../targets/config';

export { ConfigError };

const groupFilterSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('supervisionGroup') }),
  z.strictObject({ type: z.literal('search'), params: z.record(z.string(), z.string()) }),
]);

const kiteSchema = strictSettings({
  /**
   * Base URL up to the API family, e.g. `https://m2m-api.telefonica.com:8010/services/REST/GlobalM2M` (KITE_API_URL).
   * @default 'https://127.0.0.1:8443/services/REST/GlobalM2M'
   */
  baseUrl: urlSetting(['https:', 'http:'], 'https://127.0.0.1:8443/services/REST/GlobalM2M'),
  /** Inventory API version. @default 13 (KITE_API_VERSION) */
  apiVersion: numberSetting({ min: 1, max: 99, fallback: 13, integer: true }),
  /** Client certificate, a PEM file (KITE_CERT_FILE). @default undefined */
  certFile: optionalText(),
  /** Key of `certFile`, a PEM file (KITE_KEY_FILE). @default undefined */
  keyFile: optionalText(),
  /** Or a PFX with certificate and key (KITE_PFX_FILE). @default undefined */
  pfxFile: optionalText(),
  /** Password of `pfxFile` (KITE_PFX_PASSPHRASE). Secret. @default undefined */
  pfxPassphrase: optionalText(),
  /** CA bundle for Kite's server certificate, when not publicly trusted (KITE_CA_FILE). @default undefined: system roots */
  caFile: optionalText(),
  /** Client-side budget of Kite requests per second; 0 for none. @default 4 (KITE_REQUESTS_PER_SECOND) */
  requestsPerSecond: numberSetting({ min: 0, fallback: 4 }),
  /** Kite requests allowed at once after a quiet spell (the account bucket's burst). @default 1: evenly spaced (KITE_REQUESTS_BURST) */
  requestsBurst: numberSetting({ min: 1, max: 1000, fallback: 1, integer: true }),
  /** SIMs per page, 1..1000 (1..100 on v6). @default 1000, 100 on v6 (KITE_PAGE_SIZE) */
  pageSize: z.unknown().optional(),
  /**
   * Largest Kite answer body read, in bytes, 64 KiB to 256 MiB; a longer one fails the request, naming this
   * setting. Bodies are held whole while parsed, so it bounds the worker's memory per request: a page of 1000
   * SIMs is about 1.6 MB. @default 16777216 (16 MiB) (KITE_MAX_RESPONSE_BYTES)
   */
  maxResponseBytes: numberSetting({
    min: 64 * 1024,
    max: 256 * 1024 * 1024,
    fallback: DEFAULT_MAX_RESPONSE_BYTES,
    integer: true,
  }),
  /** Per group, a Kite search that selects its SIMs instead of the `supervisionGroup` field (file only). @default {} */
  groupFilters: z.record(z.string(), groupFilterSchema).default({}),
})
  .prefault({})
  .transform((kite, ctx) => {
    const max = kite.apiVersion <= 6 ? 100 : 1000;
    const pageSize = numberSetting({ min: 1, max, fallback: max, integer: true }).safeParse(kite.pageSize);
    if (!pageSize.success) {
      ctx.addIssue({ code: 'custom', path: ['pageSize'], message: pageSize.error.issues[0].message });
      return z.NEVER;
    }
    return { ...kite, pageSize: pageSize.data };
  });

const workerSchema = strictSettings({
  temporal: temporalSettingsSchema.prefault({}),
  redis: strictSettings({
    /**
     * One server, `redis://[[user]:password@]host:port[/db]`, or a Redis Cluster from its seed nodes,
     * `redis-cluster://[[user]:password@]host:port,host:port,…`; `rediss://` and `rediss-cluster://` for TLS
     * (state/redis.ts). @default 'redis://127.0.0.1:6379' (KITE_REDIS_URL)
     */
    url: redisUrlSetting('redis://127.0.0.1:6379'),
    /** First segment of every key. @default 'cc' (KITE_REDIS_PREFIX) */
    prefix: textOr('cc'),
  }).prefault({}),
  kite: kiteSchema,
  /** Target instances by name (file `targets`, or KITE_TARGETS as JSON); validated by targets/config.ts. */
  targets: z.unknown().optional(),
  publish: strictSettings({
    /** SIMs per target call. @default 500 (KITE_PUBLISH_BATCH_SIZE) */
    batchSize: numberSetting({ min: 1, max: 10_000, fallback: 500, integer: true }),
    /** Batches in flight per target; with batchSize, bounds what a crash may send twice. @default 4 (KITE_PUBLISH_IN_FLIGHT) */
    inFlightBatches: numberSetting({ min: 1, max: 64, fallback: 4, integer: true }),
    /** Refuse a cycle in which more than this fraction of a group's SIMs vanished. @default 0.5 (KITE_MAX_LEAVE_FRACTION) */
    maxLeaveFraction: numberSetting({ min: 0, max: 1, fallback: 0.5 }),
  }).prefault({}),
  audit: strictSettings({
    /** Audit trail entries kept per SIM (publishes and failures); 0 keeps none. @default 10 (KITE_AUDIT_ENTRIES_PER_SIM) */
    entriesPerSim: numberSetting({ min: 0, max: 1000, fallback: 10, integer: true }),
    /** Audit trail entries older than this many days are dropped. @default 7 (KITE_AUDIT_MAX_AGE_DAYS) */
    maxAgeDays: numberSetting({ min: 0, max: 3650, fallback: 7 }),
  }).prefault({}),
  /** Prometheus endpoint `host:port`, or `off`. @default '127.0.0.1:9464' (KITE_METRICS_ADDRESS) */
  metricsAddress: textOr(DEFAULT_METRICS_ADDRESS),
  /** A workflow bundle prebuilt by `npm run build`; without it the worker bundles at start (KITE_WORKFLOW_BUNDLE). @default undefined */
  workflowBundle: optionalText(),
  /** Time in-flight activities get to finish on SIGTERM before they are cancelled. @default 10000 (KITE_SHUTDOWN_GRACE_MS) */
  shutdownGraceMs: numberSetting({ min: 0, max: 600_000, fallback: 10_000, integer: true }),
});

/** The environment variable that overrides each file setting (the Temporal ones are in shared/temporal-settings.ts). */
const WORKER_ENV: EnvBindings = {
  ...temporalBindings(),
  'redis.url': 'KITE_REDIS_URL',
  'redis.prefix': 'KITE_REDIS_PREFIX',
  'kite.baseUrl': 'KITE_API_URL',
  'kite.apiVersion': 'KITE_API_VERSION',
  'kite.certFile': 'KITE_CERT_FILE',
  'kite.keyFile': 'KITE_KEY_FILE',
  'kite.pfxFile': 'KITE_PFX_FILE',
  'kite.pfxPassphrase': 'KITE_PFX_PASSPHRASE',
  'kite.caFile': 'KITE_CA_FILE',
  'kite.requestsPerSecond': 'KITE_REQUESTS_PER_SECOND',
  'kite.requestsBurst': 'KITE_REQUESTS_BURST',
  'kite.pageSize': 'KITE_PAGE_SIZE',
  'kite.maxResponseBytes': 'KITE_MAX_RESPONSE_BYTES',
  'publish.batchSize': 'KITE_PUBLISH_BATCH_SIZE',
  'publish.inFlightBatches': 'KITE_PUBLISH_IN_FLIGHT',
  'publish.maxLeaveFraction': 'KITE_MAX_LEAVE_FRACTION',
  'audit.entriesPerSim': 'KITE_AUDIT_ENTRIES_PER_SIM',
  'audit.maxAgeDays': 'KITE_AUDIT_MAX_AGE_DAYS',
  metricsAddress: 'KITE_METRICS_ADDRESS',
  workflowBundle: 'KITE_WORKFLOW_BUNDLE',
  shutdownGraceMs: 'KITE_SHUTDOWN_GRACE_MS',
};

export type WorkerConfig = Omit<z.output<typeof workerSchema>, 'targets'> & {
  /** Target instances by name (file `targets`, or KITE_TARGETS as JSON). @default one `mqtt` target on KITE_MQTT_URL */
  targets: Record<string, TargetConfig>;
};

/**
 * Reads, resolves and validates the worker's configuration; throws ConfigError naming the first bad setting.
 * `warn` hears of settings that still work but should change (a deprecated name).
 */
export function loadConfig(env: Env = process.env, warn?: ConfigWarning): WorkerConfig {
  const file = env.KITE_CONFIG_FILE ? readJsonFile(env.KITE_CONFIG_FILE, 'KITE_CONFIG_FILE') : {};
  const resolved = resolveEnvRefs(file, env, '') as Json;
  const settings = parseSettings(workerSchema, WORKER_ENV, env, resolved);
  const targetsRaw = env.KITE_TARGETS
    ? parseJson(env.KITE_TARGETS, 'KITE_TARGETS')
    : (resolved.targets ?? defaultTargets(env));
  return { ...settings, targets: parseTargetConfigs(resolveEnvRefs(targetsRaw, env, 'targets'), warn) };
}

/** Without any target configuration, publish to the local broker: the embedded demo's default. */
function defaultTargets(env: Env): Json {
  return { mqtt: { type: 'mqtt', url: env.KITE_MQTT_URL ?? 'mqtt://127.0.0.1:1883' } };
}

function readJsonFile(path: string, setting: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      setting,
      `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`
    );
  }
  return parseJson(text, `${setting} (${path})`) as Json;
}

function parseJson(text: string, setting: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(setting, `is not valid JSON: ${(err as Error).message}`);
  }
}

/** Replaces every `env:NAME` string with that variable's value; a missing variable is an error naming both. */
function resolveEnvRefs(value: unknown, env: Env, path: string): unknown {
  if (typeof value === 'string' && value.startsWith('env:')) {
    const name = value.slice(4);
    const resolved = env[name];
    if (resolved === undefined)
      throw new ConfigError(path || name, `refers to environment variable ${name}, which is not set`);
    return resolved;
  }
  if (Array.isArray(value)) return value.map((v, i) => resolveEnvRefs(v, env, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, resolveEnvRefs(v, env, path ? `${path}.${k}` : k)])
    );
  }
  return value;
}
