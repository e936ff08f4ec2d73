/**
 * The worker's configuration: a JSON file (KITE_CONFIG_FILE) overlaid by environment variables, validated up
 * front. An error names the setting and what it expects, never the value of a secret. Any string value may be
 * `env:NAME` to read it from another variable, so a config file can stay free of secrets.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../shared/config-error';
import { parseTargetConfigs, type TargetConfig } from '../targets/config';
import type { GroupFilter } from '../kite';
import { DEFAULT_METRICS_ADDRESS, DEFAULT_TEMPORAL_ADDRESS } from '../shared/defaults';
import { DEFAULT_TASK_QUEUE } from '../workflows/definitions';

export { ConfigError };

export interface WorkerConfig {
  temporal: {
    /** @default '127.0.0.1:7233' (KITE_TEMPORAL_ADDRESS) */
    address: string;
    /** @default 'default' (KITE_TEMPORAL_NAMESPACE) */
    namespace: string;
    /** @default 'kite-cloud-connector' (KITE_TASK_QUEUE) */
    taskQueue: string;
    /** mTLS client certificate and key files, for Temporal Cloud or a secured cluster (KITE_TEMPORAL_TLS_CERT/KEY). */
    tlsCertFile?: string;
    tlsKeyFile?: string;
    /** Server CA file, when not publicly trusted (KITE_TEMPORAL_TLS_CA). */
    tlsCaFile?: string;
    /** Temporal Cloud API key; implies TLS (KITE_TEMPORAL_API_KEY). Secret. */
    apiKey?: string;
  };
  redis: {
    /** `redis://[:password@]host:port[/db]`, or `rediss://` for TLS. @default 'redis://127.0.0.1:6379' (KITE_REDIS_URL) */
    url: string;
    /** @default 'cc' (KITE_REDIS_PREFIX) */
    prefix: string;
  };
  kite: {
    /** Base URL up to the API family, e.g. `https://m2m-api.telefonica.com:8010/services/REST/GlobalM2M` (KITE_API_URL). */
    baseUrl: string;
    /** Inventory API version. @default 13 (KITE_API_VERSION) */
    apiVersion: number;
    /** Client certificate and key, PEM files (KITE_CERT_FILE, KITE_KEY_FILE), or a PFX and its password (KITE_PFX_FILE, KITE_PFX_PASSPHRASE). */
    certFile?: string;
    keyFile?: string;
    pfxFile?: string;
    pfxPassphrase?: string;
    /** CA bundle for Kite's server certificate, when not publicly trusted (KITE_CA_FILE). */
    caFile?: string;
    /** Client-side budget of Kite requests per second; 0 for none. @default 4 (KITE_REQUESTS_PER_SECOND) */
    requestsPerSecond: number;
    /** SIMs per page, 1..1000 (100 on v6). @default 1000 (KITE_PAGE_SIZE) */
    pageSize: number;
    /** Per group, a Kite search that selects its SIMs instead of the `supervisionGroup` field (file only). */
    groupFilters: Record<string, GroupFilter>;
  };
  /** Target instances by name (file `targets`, or KITE_TARGETS as JSON). */
  targets: Record<string, TargetConfig>;
  publish: {
    /** SIMs per target call. @default 500 (KITE_PUBLISH_BATCH_SIZE) */
    batchSize: number;
    /** Batches in flight per target; with batchSize, bounds what a crash may send twice. @default 4 (KITE_PUBLISH_IN_FLIGHT) */
    inFlightBatches: number;
    /** Refuse a cycle in which more than this fraction of a group's SIMs vanished. @default 0.5 (KITE_MAX_LEAVE_FRACTION) */
    maxLeaveFraction: number;
  };
  /** Prometheus endpoint `host:port`, or `off`. @default '127.0.0.1:9464' (KITE_METRICS_ADDRESS) */
  metricsAddress: string;
  /** A workflow bundle prebuilt by `npm run build`; without it the worker bundles at start (KITE_WORKFLOW_BUNDLE). */
  workflowBundle?: string;
  /** Time in-flight activities get to finish on SIGTERM before they are cancelled. @default 10000 (KITE_SHUTDOWN_GRACE_MS) */
  shutdownGraceMs: number;
}

type Env = Record<string, string | undefined>;
type Json = Record<string, unknown>;

export function loadConfig(env: Env = process.env): WorkerConfig {
  const file = env.KITE_CONFIG_FILE ? readJsonFile(env.KITE_CONFIG_FILE, 'KITE_CONFIG_FILE') : {};
  const resolved = resolveEnvRefs(file, env, '') as Json;
  const section = (name: string) => (resolved[name] ?? {}) as Json;
  const setting = new SettingReader(env);
  const t = section('temporal');
  const r = section('redis');
  const k = section('kite');
  const p = section('publish');
  const apiVersion = setting.int('KITE_API_VERSION', k.apiVersion, 13, 1, 99);
  const targetsRaw = env.KITE_TARGETS
    ? parseJson(env.KITE_TARGETS, 'KITE_TARGETS')
    : (resolved.targets ?? defaultTargets(env));
  // TargetConfigError is a ConfigError: it already names the setting.
  const targets: Record<string, TargetConfig> = parseTargetConfigs(resolveEnvRefs(targetsRaw, env, 'targets'));
  return {
    temporal: {
      address: setting.str('KITE_TEMPORAL_ADDRESS', t.address, DEFAULT_TEMPORAL_ADDRESS),
      namespace: setting.str('KITE_TEMPORAL_NAMESPACE', t.namespace, 'default'),
      taskQueue: setting.str('KITE_TASK_QUEUE', t.taskQueue, DEFAULT_TASK_QUEUE),
      tlsCertFile: setting.opt('KITE_TEMPORAL_TLS_CERT', t.tlsCertFile),
      tlsKeyFile: setting.opt('KITE_TEMPORAL_TLS_KEY', t.tlsKeyFile),
      tlsCaFile: setting.opt('KITE_TEMPORAL_TLS_CA', t.tlsCaFile),
      apiKey: setting.opt('KITE_TEMPORAL_API_KEY', t.apiKey),
    },
    redis: {
      url: setting.url('KITE_REDIS_URL', r.url, 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
      prefix: setting.str('KITE_REDIS_PREFIX', r.prefix, 'cc'),
    },
    kite: {
      baseUrl: setting.url('KITE_API_URL', k.baseUrl, 'https://127.0.0.1:8443/services/REST/GlobalM2M', [
        'https:',
        'http:',
      ]),
      apiVersion,
      certFile: setting.opt('KITE_CERT_FILE', k.certFile),
      keyFile: setting.opt('KITE_KEY_FILE', k.keyFile),
      pfxFile: setting.opt('KITE_PFX_FILE', k.pfxFile),
      pfxPassphrase: setting.opt('KITE_PFX_PASSPHRASE', k.pfxPassphrase),
      caFile: setting.opt('KITE_CA_FILE', k.caFile),
      requestsPerSecond: setting.num('KITE_REQUESTS_PER_SECOND', k.requestsPerSecond, 4, 0),
      pageSize: setting.int(
        'KITE_PAGE_SIZE',
        k.pageSize,
        apiVersion <= 6 ? 100 : 1000,
        1,
        apiVersion <= 6 ? 100 : 1000
      ),
      groupFilters: (k.groupFilters as Record<string, GroupFilter>) ?? {},
    },
    targets,
    publish: {
      batchSize: setting.int('KITE_PUBLISH_BATCH_SIZE', p.batchSize, 500, 1, 10_000),
      inFlightBatches: setting.int('KITE_PUBLISH_IN_FLIGHT', p.inFlightBatches, 4, 1, 64),
      maxLeaveFraction: setting.num('KITE_MAX_LEAVE_FRACTION', p.maxLeaveFraction, 0.5, 0, 1),
    },
    metricsAddress: setting.str('KITE_METRICS_ADDRESS', resolved.metricsAddress, DEFAULT_METRICS_ADDRESS),
    workflowBundle: setting.opt('KITE_WORKFLOW_BUNDLE', resolved.workflowBundle),
    shutdownGraceMs: setting.int('KITE_SHUTDOWN_GRACE_MS', resolved.shutdownGraceMs, 10_000, 0, 600_000),
  };
}

/** Without any target configuration, publish to the local broker: the embedded demo's default. */
function defaultTargets(env: Env): Json {
  return { mqtt: { type: 'mqtt', url: env.KITE_MQTT_URL ?? 'mqtt://127.0.0.1:1883' } };
}

class SettingReader {
  constructor(private readonly env: Env) {}

  private raw(name: string, fromFile: unknown): unknown {
    const value = this.env[name];
    return value !== undefined && value !== '' ? value : fromFile;
  }

  opt(name: string, fromFile: unknown): string | undefined {
    const value = this.raw(name, fromFile);
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') throw new ConfigError(name, 'must be a string');
    return value;
  }

  str(name: string, fromFile: unknown, fallback: string): string {
    return this.opt(name, fromFile) ?? fallback;
  }

  num(name: string, fromFile: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.raw(name, fromFile);
    if (value === undefined) return fallback;
    const n = typeof value === 'number' ? value : Number(value);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new ConfigError(name, `must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return n;
  }

  int(name: string, fromFile: unknown, fallback: number, min: number, max: number): number {
    const n = this.num(name, fromFile, fallback, min, max);
    if (!Number.isInteger(n)) throw new ConfigError(name, `must be a whole number, got ${n}`);
    return n;
  }

  /** A URL whose protocol is one of `protocols`; the error never shows the URL, which may hold a password. */
  url(name: string, fromFile: unknown, fallback: string, protocols: string[]): string {
    const value = this.str(name, fromFile, fallback);
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      throw new ConfigError(name, `must be a URL (${protocols.map((p) => `${p}//…`).join(' or ')})`);
    }
    if (!protocols.includes(parsed.protocol))
      throw new ConfigError(name, `must use ${protocols.join(' or ')}, not ${parsed.protocol}`);
    return value;
  }
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
