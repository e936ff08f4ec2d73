/**
 * Typed, validated configuration of publishing targets. One entry per configured target instance, keyed by its
 * name (`aws-eu`, `mqtt`, ...), discriminated by `type`. Validation errors name the setting
 * (`targets.aws-eu.shadowName: ...`) and never echo the value of a secret or a URL (URLs may carry tokens).
 */
import { ConfigError } from '../shared/config-error';
import { DEFAULT_DEVICE_ID_TEMPLATE, deviceIdTemplateProblem } from './device-id';

/** Settings every target has. */
export interface CommonTargetConfig {
  /** The instance name: the key under `targets`, used in logs, Redis keys and outcomes. `[A-Za-z0-9_-]{1,64}`. */
  name: string;
  /**
   * The SIM's cloud identity (thing name, device id, `{deviceId}` in topics). Placeholders: `{iccid}`,
   * `{alias}`, `{imei}`; resolved by `deviceIdFor` in targets/device-id.ts. Keep it stable: changing it creates
   * new identities in the cloud.
   * @default '{iccid}'
   */
  deviceIdTemplate: string;
}

/** Static AWS credentials. Secret: never logged, never echoed in errors. */
export interface AwsCredentialsConfig {
  accessKeyId: string;
  secretAccessKey: string;
  /** For temporary credentials. @default undefined */
  sessionToken?: string;
}

/** AWS IoT Core: CreateThing in the registry, then UpdateThingShadow `{"state":{"reported":patch}}`. */
export interface AwsTargetConfig extends CommonTargetConfig {
  type: 'aws';
  /** AWS region, e.g. `eu-west-1`. Required. */
  region: string;
  /**
   * Data-plane (shadow) endpoint. Production should use the account's own ATS endpoint
   * (`aws iot describe-endpoint --endpoint-type iot:Data-ATS`), e.g. `https://abc123-ats.iot.eu-west-1.amazonaws.com`.
   * @default the SDK's regional default `https://data-ats.iot.<region>.amazonaws.com`
   */
  endpoint?: string;
  /** Control-plane (registry, CreateThing) endpoint. @default the SDK's regional default */
  controlEndpoint?: string;
  /** Static credentials. @default undefined: the SDK's default provider chain (env, profile, role) */
  credentials?: AwsCredentialsConfig;
  /**
   * Named shadow to write, `[$a-zA-Z0-9:_-]{1,64}`. Each named shadow has its own 8 KB limit.
   * @default undefined: the classic (unnamed) shadow
   */
  shadowName?: string;
  /** Register each SIM as a thing (CreateThing, identity fields as attributes) before its first shadow update. @default true */
  createThings: boolean;
  /** Shadow updates in flight at once. @default 16 */
  concurrency: number;
  /** Shadow updates started per second (check the account's shadow TPS quota for the region). @default 50 */
  requestsPerSecond: number;
  /** CreateThing calls per second; AWS allows 15 TPS per account. @default 10 */
  thingsPerSecond: number;
  /** Attempts per request, including the SDK's own retries on 429 and 5xx. @default 3 */
  maxAttempts: number;
  /** Per-request timeout in ms. @default 10000 */
  timeoutMs: number;
}

/** Any MQTT broker: one retained QoS 1 JSON message per SIM and change. */
export interface MqttTargetConfig extends CommonTargetConfig {
  type: 'mqtt';
  /** Broker URL: `mqtt://`, `mqtts://`, `ws://` or `wss://`. Must not carry a password (use `password`). Required. */
  url: string;
  /** @default undefined */
  username?: string;
  /** Secret. @default undefined */
  password?: string;
  /** MQTT client id. Two connectors must not share one. @default `kite-cc-<name>-<random>` */
  clientId?: string;
  /**
   * Topic per SIM. Placeholders: `{group}`, `{iccid}`, `{deviceId}`. Substituted values may not contain
   * `/`, `+`, `#`.
   * @default 'kite/{group}/{iccid}/reported'
   */
  topicTemplate: string;
  /** Publish retained, so that a late subscriber gets the latest message per SIM. @default true */
  retain: boolean;
  /** MQTT protocol version: 4 (3.1.1) or 5. @default 4 */
  protocolVersion: 4 | 5;
  /** Publishes awaiting PUBACK at once. @default 20 (Mosquitto's default max_inflight_messages) */
  concurrency: number;
  /** Publishes started per second. @default 500 */
  requestsPerSecond: number;
  /** Time allowed to connect, and for each PUBACK, in ms. @default 10000 */
  timeoutMs: number;
  /** Extra trusted CA certificate(s), PEM, for `mqtts:`/`wss:`. @default undefined: system trust store */
  ca?: string;
}

/** Batched, HMAC-signed JSON POSTs to an HTTP endpoint. */
export interface WebhookTargetConfig extends CommonTargetConfig {
  type: 'webhook';
  /** `http://` or `https://` URL to POST to. Treated as sensitive (it may carry a token): never logged. Required. */
  url: string;
  /** HMAC-SHA256 key for `X-Kite-Signature`, at least 16 characters. Secret. Required. */
  secret: string;
  /** SIMs per POST. @default 500 */
  batchSize: number;
  /** Timeout of one POST, in ms. @default 10000 */
  timeoutMs: number;
  /** Attempts per batch on 429, 5xx and network errors, including the first. @default 5 */
  maxAttempts: number;
  /** Longest Retry-After (or backoff) honoured in place; longer ones end the attempt as `throttled`. @default 30000 */
  maxRetryDelayMs: number;
  /** Batches in flight at once. @default 2 */
  concurrency: number;
  /** POSTs started per second. @default 10 */
  requestsPerSecond: number;
}

/** Publishes nowhere; counts items and keys (benchmarks, dry runs). */
export interface NullTargetConfig extends CommonTargetConfig {
  type: 'null';
  /** Simulated latency per publish call, in ms. @default 0 */
  latencyMs: number;
}

/**
 * Azure IoT Hub. Its settings are validated by `parseAzureTargetConfig` in targets/azure/config.ts; this side
 * only knows the discriminator, the name and the device id template.
 */
export interface AzureTargetConfig extends CommonTargetConfig {
  type: 'azure';
  [setting: string]: unknown;
}

export type TargetConfig =
  AwsTargetConfig | MqttTargetConfig | WebhookTargetConfig | NullTargetConfig | AzureTargetConfig;
export type TargetType = TargetConfig['type'];
export const TARGET_TYPES: readonly TargetType[] = ['aws', 'mqtt', 'webhook', 'null', 'azure'];

export const AWS_DEFAULTS = {
  createThings: true,
  concurrency: 16,
  requestsPerSecond: 50,
  thingsPerSecond: 10,
  maxAttempts: 3,
  timeoutMs: 10_000,
} as const;
export const MQTT_DEFAULTS = {
  topicTemplate: 'kite/{group}/{iccid}/reported',
  retain: true,
  protocolVersion: 4,
  concurrency: 20,
  requestsPerSecond: 500,
  timeoutMs: 10_000,
} as const;
export const WEBHOOK_DEFAULTS = {
  batchSize: 500,
  timeoutMs: 10_000,
  maxAttempts: 5,
  maxRetryDelayMs: 30_000,
  concurrency: 2,
  requestsPerSecond: 10,
} as const;

/** A target's configuration problem. `setting` is the full path, e.g. `targets.aws-eu.shadowName`. */
export class TargetConfigError extends ConfigError {
  override name = 'TargetConfigError';
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const SHADOW_NAME = /^[$a-zA-Z0-9:_-]{1,64}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
const TOPIC_FIELDS = ['group', 'iccid', 'deviceId'];

/** Reads one target's raw object, remembering which keys it consumed so leftovers can be reported as typos. */
class SettingsReader {
  private readonly used: Set<string>;

  constructor(
    private readonly raw: Record<string, unknown>,
    readonly where: string,
    consumed: string[] = []
  ) {
    this.used = new Set(consumed);
  }

  fail(key: string, problem: string): never {
    throw new TargetConfigError(`${this.where}.${key}`, problem);
  }

  has(key: string): boolean {
    this.used.add(key);
    return this.raw[key] !== undefined;
  }

  /** A string; `secret` (or URL) values are never echoed back in errors. */
  string(key: string, opts: { required?: boolean; pattern?: RegExp; hint?: string; secret?: boolean } = {}) {
    const value = this.raw[key];
    this.used.add(key);
    if (value === undefined) {
      if (opts.required) this.fail(key, `required${opts.hint ? `, ${opts.hint}` : ''}`);
      return undefined;
    }
    if (typeof value !== 'string' || value.trim() === '') this.fail(key, 'must be a non-empty string');
    if (opts.pattern && !opts.pattern.test(value)) {
      const got = opts.secret ? '' : ` (got ${JSON.stringify(value.slice(0, 80))})`;
      this.fail(key, `must match ${opts.hint ?? opts.pattern.source}${got}`);
    }
    return value;
  }

  requiredString(key: string, opts: { pattern?: RegExp; hint?: string; secret?: boolean } = {}): string {
    return this.string(key, { ...opts, required: true }) as string;
  }

  int(key: string, fallback: number, min: number, max: number): number {
    const value = this.raw[key];
    this.used.add(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(key, `must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
    }
    return value;
  }

  bool(key: string, fallback: boolean): boolean {
    const value = this.raw[key];
    this.used.add(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') this.fail(key, `must be true or false (got ${JSON.stringify(value)})`);
    return value;
  }

  /** An absolute URL with one of `protocols`; never echoed, and refused if it embeds a password. */
  url(key: string, protocols: string[], opts: { required?: boolean; passwordSetting?: string } = {}) {
    const value = this.string(key, { required: opts.required, secret: true });
    if (value === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return this.fail(key, `must be an absolute URL (${protocols.join(', ')})`);
    }
    if (!protocols.includes(url.protocol)) this.fail(key, `must use ${protocols.join(' or ')}`);
    if (url.password) {
      const where = opts.passwordSetting ? `; put it in ${this.where}.${opts.passwordSetting}` : '';
      this.fail(key, `must not embed a password${where}`);
    }
    return value;
  }

  object(key: string): SettingsReader | undefined {
    const value = this.raw[key];
    this.used.add(key);
    if (value === undefined) return undefined;
    if (!isObject(value)) this.fail(key, 'must be an object');
    return new SettingsReader(value, `${this.where}.${key}`);
  }

  deviceIdTemplate(): string {
    const template = this.string('deviceIdTemplate') ?? DEFAULT_DEVICE_ID_TEMPLATE;
    const problem = deviceIdTemplateProblem(template);
    if (problem) this.fail('deviceIdTemplate', problem);
    return template;
  }

  /** Rejects keys nobody read: almost always a typo that would otherwise be silently ignored. */
  finish(): void {
    const unknown = Object.keys(this.raw).filter((k) => !this.used.has(k));
    if (unknown.length) this.fail(unknown[0], `unknown setting (known: ${[...this.used].sort().join(', ')})`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseAws(r: SettingsReader, name: string): AwsTargetConfig {
  const config: AwsTargetConfig = {
    type: 'aws',
    name,
    deviceIdTemplate: r.deviceIdTemplate(),
    region: r.requiredString('region', { pattern: REGION, hint: 'an AWS region such as "eu-west-1"' }),
    endpoint: r.url('endpoint', ['https:', 'http:']),
    controlEndpoint: r.url('controlEndpoint', ['https:', 'http:']),
    credentials: parseAwsCredentials(r.object('credentials')),
    shadowName: r.string('shadowName', { pattern: SHADOW_NAME, hint: '[$a-zA-Z0-9:_-]{1,64}' }),
    createThings: r.bool('createThings', AWS_DEFAULTS.createThings),
    concurrency: r.int('concurrency', AWS_DEFAULTS.concurrency, 1, 1000),
    requestsPerSecond: r.int('requestsPerSecond', AWS_DEFAULTS.requestsPerSecond, 1, 100_000),
    thingsPerSecond: r.int('thingsPerSecond', AWS_DEFAULTS.thingsPerSecond, 1, 1000),
    maxAttempts: r.int('maxAttempts', AWS_DEFAULTS.maxAttempts, 1, 10),
    timeoutMs: r.int('timeoutMs', AWS_DEFAULTS.timeoutMs, 100, 300_000),
  };
  r.finish();
  return config;
}

function parseAwsCredentials(r: SettingsReader | undefined): AwsCredentialsConfig | undefined {
  if (!r) return undefined;
  const credentials: AwsCredentialsConfig = {
    accessKeyId: r.requiredString('accessKeyId', { secret: true }),
    secretAccessKey: r.requiredString('secretAccessKey', { secret: true }),
    sessionToken: r.string('sessionToken', { secret: true }),
  };
  r.finish();
  return credentials;
}

function parseMqtt(r: SettingsReader, name: string): MqttTargetConfig {
  const protocolVersion = r.int('protocolVersion', MQTT_DEFAULTS.protocolVersion, 4, 5) as 4 | 5;
  const config: MqttTargetConfig = {
    type: 'mqtt',
    name,
    deviceIdTemplate: r.deviceIdTemplate(),
    url: r.url('url', ['mqtt:', 'mqtts:', 'ws:', 'wss:'], { required: true, passwordSetting: 'password' })!,
    username: r.string('username'),
    password: r.string('password', { secret: true }),
    clientId: r.string('clientId', { pattern: /^[\x21-\x7e]{1,128}$/, hint: 'printable ASCII without spaces' }),
    topicTemplate: topicTemplate(r),
    retain: r.bool('retain', MQTT_DEFAULTS.retain),
    protocolVersion,
    concurrency: r.int('concurrency', MQTT_DEFAULTS.concurrency, 1, 65_535),
    requestsPerSecond: r.int('requestsPerSecond', MQTT_DEFAULTS.requestsPerSecond, 1, 100_000),
    timeoutMs: r.int('timeoutMs', MQTT_DEFAULTS.timeoutMs, 100, 300_000),
    ca: pem(r, 'ca'),
  };
  r.finish();
  return config;
}

function topicTemplate(r: SettingsReader): string {
  const template = r.string('topicTemplate') ?? MQTT_DEFAULTS.topicTemplate;
  const fields = [...template.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]);
  const unknown = fields.find((f) => !TOPIC_FIELDS.includes(f));
  if (unknown !== undefined)
    r.fail('topicTemplate', `unknown placeholder {${unknown}} (allowed: ${TOPIC_FIELDS.join(', ')})`);
  if (!fields.includes('iccid') && !fields.includes('deviceId')) {
    r.fail('topicTemplate', 'must contain {iccid} or {deviceId}, or every SIM would share one retained topic');
  }
  if (/[+#\0]/.test(template)) r.fail('topicTemplate', 'must not contain the wildcards + or #');
  return template;
}

function pem(r: SettingsReader, key: string): string | undefined {
  const value = r.string(key, { secret: true });
  if (value !== undefined && !value.includes('-----BEGIN CERTIFICATE-----'))
    r.fail(key, 'must be PEM certificate text');
  return value;
}

function parseWebhook(r: SettingsReader, name: string): WebhookTargetConfig {
  const config: WebhookTargetConfig = {
    type: 'webhook',
    name,
    deviceIdTemplate: r.deviceIdTemplate(),
    url: r.url('url', ['https:', 'http:'], { required: true })!,
    secret: webhookSecret(r),
    batchSize: r.int('batchSize', WEBHOOK_DEFAULTS.batchSize, 1, 10_000),
    timeoutMs: r.int('timeoutMs', WEBHOOK_DEFAULTS.timeoutMs, 100, 300_000),
    maxAttempts: r.int('maxAttempts', WEBHOOK_DEFAULTS.maxAttempts, 1, 20),
    maxRetryDelayMs: r.int('maxRetryDelayMs', WEBHOOK_DEFAULTS.maxRetryDelayMs, 0, 600_000),
    concurrency: r.int('concurrency', WEBHOOK_DEFAULTS.concurrency, 1, 100),
    requestsPerSecond: r.int('requestsPerSecond', WEBHOOK_DEFAULTS.requestsPerSecond, 1, 10_000),
  };
  r.finish();
  return config;
}

function webhookSecret(r: SettingsReader): string {
  const secret = r.requiredString('secret', { secret: true });
  if (secret.length < 16) r.fail('secret', 'must be at least 16 characters; use a long random value');
  return secret;
}

function parseNull(r: SettingsReader, name: string): NullTargetConfig {
  const config: NullTargetConfig = {
    type: 'null',
    name,
    deviceIdTemplate: r.deviceIdTemplate(),
    latencyMs: r.int('latencyMs', 0, 0, 600_000),
  };
  r.finish();
  return config;
}

type AzureParser = (raw: unknown, name: string) => Record<string, unknown>;

/** Azure settings belong to targets/azure/config.ts; loaded lazily so the other targets never depend on it. */
function parseAzure(r: SettingsReader, raw: Record<string, unknown>, name: string): AzureTargetConfig {
  const deviceIdTemplate = r.deviceIdTemplate();
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy seam to the Azure module
  const { parseAzureTargetConfig } = require('./azure/config') as { parseAzureTargetConfig: AzureParser };
  return { ...parseAzureTargetConfig(raw, name), type: 'azure', name, deviceIdTemplate };
}

/**
 * Validates the raw settings of the target named `name` (e.g. one entry of a parsed YAML/JSON `targets` map),
 * fills defaults, and returns the typed configuration. Throws TargetConfigError naming the bad setting.
 */
export function parseTargetConfig(raw: unknown, name: string): TargetConfig {
  if (!NAME.test(name)) {
    throw new TargetConfigError(`targets.${name}`, 'target names must match [A-Za-z0-9_-]{1,64}');
  }
  const where = `targets.${name}`;
  if (!isObject(raw)) throw new TargetConfigError(where, 'must be an object with a "type"');
  if (raw.name !== undefined && raw.name !== name) {
    throw new TargetConfigError(`${where}.name`, `must be absent or equal to the key "${name}"`);
  }
  const r = new SettingsReader(raw, where, ['type', 'name']);
  switch (raw.type) {
    case 'aws':
      return parseAws(r, name);
    case 'mqtt':
      return parseMqtt(r, name);
    case 'webhook':
      return parseWebhook(r, name);
    case 'null':
      return parseNull(r, name);
    case 'azure':
      return parseAzure(r, raw, name);
    default:
      throw new TargetConfigError(`${where}.type`, `must be one of ${TARGET_TYPES.join(', ')}`);
  }
}

/** Validates a whole `targets` map: `{ "aws-eu": {...}, "mqtt": {...} }`. */
export function parseTargetConfigs(raw: unknown): Record<string, TargetConfig> {
  if (!isObject(raw)) throw new TargetConfigError('targets', 'must be an object keyed by target name');
  return Object.fromEntries(Object.entries(raw).map(([name, value]) => [name, parseTargetConfig(value, name)]));
}
