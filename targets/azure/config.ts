/**
 * Settings of one Azure IoT Hub target. Validation errors name the setting and never echo its value, because
 * several settings carry secrets.
 */
import { z } from 'zod';
import { strictSettings } from '../../shared/settings';
import { commonTargetShape, parseTargetSettings, pem, text } from '../schema';

/** How a SIM's record lands in its device twin. */
export type AzureMode = 'reported' | 'tags';

export const AZURE_DEFAULTS = {
  mode: 'reported',
  identityOpsPerMinute: 100,
  twinUpdatesPerSecond: 50,
  maxConnections: 32,
  keyCacheSize: 100_000,
  operationTimeoutMs: 30_000,
} as const;

/** The parts of a service connection string the target needs. */
export interface ServiceCredentials {
  hostName: string;
  keyName: string;
  key: string;
}

/** Parses `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`, or says what is wrong (never the input). */
function readServiceConnectionString(value: string): ServiceCredentials | string {
  const parts = new Map<string, string>();
  for (const segment of value.split(';')) {
    const eq = segment.indexOf('=');
    if (eq > 0) parts.set(segment.slice(0, eq).trim(), segment.slice(eq + 1).trim());
  }
  const hostName = parts.get('HostName');
  const keyName = parts.get('SharedAccessKeyName');
  const key = parts.get('SharedAccessKey');
  if (!hostName || !keyName || !key) return 'must contain HostName, SharedAccessKeyName and SharedAccessKey';
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key)) return 'has a SharedAccessKey that is not base64';
  return { hostName, keyName, key };
}

/** Parses `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`; the error never contains the input. */
export function parseServiceConnectionString(value: string, where: string): ServiceCredentials {
  const credentials = readServiceConnectionString(value);
  if (typeof credentials === 'string') throw new Error(`${where}.connectionString ${credentials}`);
  return credentials;
}

/** A positive number (fractions allowed). */
const positive = () => z.number().positive('must be a positive number');
/** A positive number rounded down to a whole one, at least 1. */
const positiveCount = () => positive().transform((n) => Math.max(1, Math.floor(n)));

export const azureTargetSchema = strictSettings({
  type: z.literal('azure'),
  ...commonTargetShape,
  /**
   * Service connection string of a shared access policy with registry read/write rights (e.g. `iothubowner`):
   * `HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<base64>`. Secret. Required.
   */
  connectionString: z.string().superRefine((value, ctx) => {
    const credentials = readServiceConnectionString(value);
    if (typeof credentials === 'string') ctx.addIssue({ code: 'custom', message: credentials });
  }),
  /**
   * `reported`: connect as each SIM's device over MQTT and patch its reported properties (only a device can).
   * `tags`: patch the twin's tags with the service API (`PATCH /twins/{id}`), for hubs where devices own their
   * identity and reported properties.
   * @default 'reported'
   */
  mode: z.enum(['reported', 'tags']).default(AZURE_DEFAULTS.mode),
  /**
   * Identity registry operations per minute across this target (create, get, and one per device in a bulk
   * create). S1/S2 allow 100/min per unit.
   * @default 100
   */
  identityOpsPerMinute: positive().default(AZURE_DEFAULTS.identityOpsPerMinute),
  /**
   * Twin updates per second across this target (reported patches, or tag patches in `tags` mode). S1 allows 50/s.
   * @default 50
   */
  twinUpdatesPerSecond: positive().default(AZURE_DEFAULTS.twinUpdatesPerSecond),
  /**
   * Device MQTT connections open at once. Each connection is open → patch → close, never two for one device id.
   * @default 32
   */
  maxConnections: positiveCount().default(AZURE_DEFAULTS.maxConnections),
  /**
   * Base URL of the service REST API, to reach a private endpoint or a test double, e.g. `https://127.0.0.1:8443`.
   * TLS still verifies the certificate against the hub's host name. Only the origin is kept.
   * @default undefined: `https://<HostName>`
   */
  serviceUrl: text()
    .transform((value, ctx) => {
      let url: URL;
      try {
        url = new URL(value.trim());
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be an absolute https URL' });
        return z.NEVER;
      }
      if (url.protocol !== 'https:') ctx.addIssue({ code: 'custom', message: 'must use https' });
      else if (url.username || url.password || url.search) {
        ctx.addIssue({ code: 'custom', message: 'must not carry credentials or a query' });
      }
      return url.origin;
    })
    .optional(),
  /**
   * Host (and optional port) that devices connect to over MQTT/TLS, e.g. `localhost:18883`.
   * @default undefined: the hub's `HostName` on port 8883
   */
  deviceHost: text()
    .transform((value) => value.trim())
    .optional(),
  /**
   * Extra trusted CA certificate(s), PEM, for the service and device connections (private CA, test double).
   * @default undefined: the system trust store
   */
  ca: pem()
    .transform((value) => value.trim())
    .optional(),
  /**
   * Device keys kept in memory, per device id, so that a SIM's identity is fetched once. Least recently used
   * keys are dropped first and fetched again (one identity operation) when needed.
   * @default 100000
   */
  keyCacheSize: positiveCount().default(AZURE_DEFAULTS.keyCacheSize),
  /**
   * How long to wait for a device connection or a twin response before giving the SIM a retryable outcome, in ms.
   * @default 30000
   */
  operationTimeoutMs: positive().default(AZURE_DEFAULTS.operationTimeoutMs),
});

/** Azure IoT Hub: device twin reported properties (as the device) or tags (service API). */
export type AzureTargetConfig = z.output<typeof azureTargetSchema>;

/**
 * Validates raw settings (e.g. parsed YAML) for the Azure target named `name`, filling defaults. `type` may be
 * left out. Throws ConfigError naming the setting (`targets.<name>.<setting>`).
 */
export function parseAzureTargetConfig(raw: unknown, name: string): AzureTargetConfig {
  const settings = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? { type: 'azure', ...raw } : raw;
  return parseTargetSettings(azureTargetSchema, settings, name);
}
