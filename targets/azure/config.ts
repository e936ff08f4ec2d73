/**
 * Settings of one Azure IoT Hub target. Validation errors name the setting and never echo its value, because
 * several settings carry secrets.
 */

/** How a SIM's record lands in its device twin. */
export type AzureMode = 'reported' | 'tags';

export interface AzureTargetConfig {
  /**
   * Service connection string of a shared access policy with registry read/write rights (e.g. `iothubowner`):
   * `HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<base64>`. Secret.
   */
  connectionString: string;
  /**
   * `reported`: connect as each SIM's device over MQTT and patch its reported properties (only a device can).
   * `tags`: patch the twin's tags with the service API (`PATCH /twins/{id}`), for hubs where devices own their
   * identity and reported properties.
   * @default 'reported'
   */
  mode: AzureMode;
  /**
   * Identity registry operations per minute across this target (create, get, and one per device in a bulk
   * create). S1/S2 allow 100/min per unit.
   * @default 100
   */
  identityOpsPerMinute: number;
  /**
   * Twin updates per second across this target (reported patches, or tag patches in `tags` mode). S1 allows 50/s.
   * @default 50
   */
  twinUpdatesPerSecond: number;
  /**
   * Device MQTT connections open at once. Each connection is open → patch → close, never two for one device id.
   * @default 32
   */
  maxConnections: number;
  /**
   * Base URL of the service REST API, to reach a private endpoint or a test double, e.g. `https://127.0.0.1:8443`.
   * TLS still verifies the certificate against the hub's host name. Unset: `https://<HostName>`.
   * @default undefined
   */
  serviceUrl?: string;
  /**
   * Host (and optional port) that devices connect to over MQTT/TLS, e.g. `localhost:18883`. Unset: the hub's
   * `HostName` on port 8883.
   * @default undefined
   */
  deviceHost?: string;
  /**
   * Extra trusted CA certificate(s), PEM, for the service and device connections (private CA, test double).
   * @default undefined (the system trust store)
   */
  ca?: string;
  /**
   * Device keys kept in memory, per device id, so that a SIM's identity is fetched once. Least recently used
   * keys are dropped first and fetched again (one identity operation) when needed.
   * @default 100000
   */
  keyCacheSize: number;
  /**
   * How long to wait for a device connection or a twin response before giving the SIM a retryable outcome.
   * @default 30000
   */
  operationTimeoutMs: number;
}

export const AZURE_DEFAULTS = {
  mode: 'reported',
  identityOpsPerMinute: 100,
  twinUpdatesPerSecond: 50,
  maxConnections: 32,
  keyCacheSize: 100_000,
  operationTimeoutMs: 30_000,
} as const satisfies Partial<AzureTargetConfig>;

const KNOWN = new Set([
  'connectionString',
  'mode',
  'identityOpsPerMinute',
  'twinUpdatesPerSecond',
  'maxConnections',
  'serviceUrl',
  'deviceHost',
  'ca',
  'keyCacheSize',
  'operationTimeoutMs',
  // Resolved upstream into PublishItem.deviceId; accepted here so that one settings object serves both.
  'deviceIdTemplate',
  'type',
  'name',
]);

/** The parts of a service connection string the target needs. */
export interface ServiceCredentials {
  hostName: string;
  keyName: string;
  key: string;
}

/** Parses `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`; the error never contains the input. */
export function parseServiceConnectionString(value: string, where: string): ServiceCredentials {
  const parts = new Map<string, string>();
  for (const segment of value.split(';')) {
    const eq = segment.indexOf('=');
    if (eq > 0) parts.set(segment.slice(0, eq).trim(), segment.slice(eq + 1).trim());
  }
  const hostName = parts.get('HostName');
  const keyName = parts.get('SharedAccessKeyName');
  const key = parts.get('SharedAccessKey');
  if (!hostName || !keyName || !key) {
    throw new Error(`${where}.connectionString must contain HostName, SharedAccessKeyName and SharedAccessKey`);
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key))
    throw new Error(`${where}.connectionString has a SharedAccessKey that is not base64`);
  return { hostName, keyName, key };
}

function positiveNumber(raw: Record<string, unknown>, key: string, where: string, fallback: number): number {
  const value = raw[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new Error(`${where}.${key} must be a positive number`);
  }
  return value;
}

function optionalString(raw: Record<string, unknown>, key: string, where: string): string | undefined {
  const value = raw[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '') throw new Error(`${where}.${key} must be a non-empty string`);
  return value.trim();
}

function parseServiceUrl(raw: Record<string, unknown>, where: string): string | undefined {
  const value = optionalString(raw, 'serviceUrl', where);
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${where}.serviceUrl must be an absolute https URL`);
  }
  if (url.protocol !== 'https:') throw new Error(`${where}.serviceUrl must use https`);
  if (url.username || url.password || url.search)
    throw new Error(`${where}.serviceUrl must not carry credentials or a query`);
  return url.origin;
}

/** Validates raw settings (e.g. parsed YAML) for the Azure target named `name`, filling defaults. */
export function parseAzureTargetConfig(raw: unknown, name: string): AzureTargetConfig {
  const where = `targets.${name}`;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${where} must be an object`);
  const obj = raw as Record<string, unknown>;
  for (const key of Object.keys(obj)) if (!KNOWN.has(key)) throw new Error(`${where}.${key} is not a known setting`);
  if (typeof obj.connectionString !== 'string') throw new Error(`${where}.connectionString is required (a string)`);
  parseServiceConnectionString(obj.connectionString, where);
  const mode = obj.mode ?? AZURE_DEFAULTS.mode;
  if (mode !== 'reported' && mode !== 'tags') throw new Error(`${where}.mode must be 'reported' or 'tags'`);
  const ca = optionalString(obj, 'ca', where);
  if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`${where}.ca must be PEM`);
  return {
    connectionString: obj.connectionString,
    mode,
    identityOpsPerMinute: positiveNumber(obj, 'identityOpsPerMinute', where, AZURE_DEFAULTS.identityOpsPerMinute),
    twinUpdatesPerSecond: positiveNumber(obj, 'twinUpdatesPerSecond', where, AZURE_DEFAULTS.twinUpdatesPerSecond),
    maxConnections: Math.floor(positiveNumber(obj, 'maxConnections', where, AZURE_DEFAULTS.maxConnections)) || 1,
    serviceUrl: parseServiceUrl(obj, where),
    deviceHost: optionalString(obj, 'deviceHost', where),
    ca,
    keyCacheSize: Math.floor(positiveNumber(obj, 'keyCacheSize', where, AZURE_DEFAULTS.keyCacheSize)) || 1,
    operationTimeoutMs: positiveNumber(obj, 'operationTimeoutMs', where, AZURE_DEFAULTS.operationTimeoutMs),
  };
}
