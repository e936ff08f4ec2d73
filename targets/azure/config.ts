/**
 * Settings of one Azure IoT Hub target. Validation errors name the setting and never echo its value, because
 * several settings carry secrets.
 */
import { z } from 'zod';
import { strictSettings } from '../../shared/settings';
import { commonTargetShape, parseTargetSettings, pem, text } from '../schema';
import { HUB_TIERS, IDENTITY_ID, MAX_UNITS, hubLimits, type HubTier } from './tiers';

/** Where a SIM's record lands: its module twin, its device twin (connector-created devices only), or twin tags. */
export type AzureMode = 'module' | 'reported' | 'tags';

export const AZURE_DEFAULTS = {
  mode: 'module',
  moduleId: 'kite',
  tier: 'S1',
  units: 1,
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
   * `module`: the record goes to the reported properties of a module identity (`moduleId`) under the SIM's device
   * id, written over the module's own MQTT connection. The device is created if missing; the customer's device,
   * its twin and its connection are never touched. Policy: RegistryReadWrite and DeviceConnect.
   * `reported`: the device twin's reported properties, as the device. Only for device identities the connector
   * created itself (marked with the twin tag `kiteConnector`); an existing foreign device is refused, never taken
   * over. Policy: RegistryReadWrite, ServiceConnect and DeviceConnect.
   * `tags`: the twin's tags with the service API (`PATCH /twins/{id}`), no device connection and no identity
   * lookup. Policy: ServiceConnect (RegistryReadWrite too, to create devices that are missing).
   * @default 'module'
   */
  mode: z.enum(['module', 'reported', 'tags']).default(AZURE_DEFAULTS.mode),
  /**
   * The module identity that carries the record in `module` mode (IoT Hub allows 50 modules per device).
   * @default 'kite'
   */
  moduleId: z
    .string()
    .regex(IDENTITY_ID, "must be 1-128 ASCII letters, digits or - : . + % _ # * ? ! ( ) , = @ ; $ '")
    .default(AZURE_DEFAULTS.moduleId),
  /**
   * The hub's tier (`F1`, `S1`, `S2`, `S3`; basic tiers have no twins). With `units`, it sets the defaults of
   * the budgets below from IoT Hub's documented limits.
   * @default 'S1'
   */
  tier: z
    .string()
    .refine((t) => (HUB_TIERS as readonly string[]).includes(t), {
      error: (issue) =>
        `unknown tier ${JSON.stringify(String(issue.input).slice(0, 20))}: one of ${HUB_TIERS.join(', ')} (basic tiers have no device twins)`,
    })
    .default(AZURE_DEFAULTS.tier)
    .transform((t) => t as HubTier),
  /**
   * The hub's units.
   * @default 1
   */
  units: z.number().int('must be a whole number').min(1, 'must be at least 1').default(AZURE_DEFAULTS.units),
  /**
   * Identity registry operations per minute across every worker (create, get, one per device in a bulk call).
   * @default from tier and units: 100/min per unit on F1, S1, S2; 5,000 on S3
   */
  identityOpsPerMinute: positive().optional(),
  /**
   * Twin updates per second across every worker (reported patches, or tag patches in `tags` mode).
   * @default from tier and units: 50/s on F1 and S1
   */
  twinUpdatesPerSecond: positive().optional(),
  /**
   * New device or module connections per second across every worker.
   * @default from tier and units: max(100, 12 × units) on S1
   */
  connectionsPerSecond: positive().optional(),
  /**
   * Billed messages per UTC day this target may spend on the hub (each reported patch costs ⌈size / 4 KB⌉),
   * counted in Redis across every worker. When spent, or when the hub answers 403002 IotHubQuotaExceeded, the
   * target pauses until 00:00 UTC and the changes stay pending. Leave room for the customer's own devices.
   * @default from tier and units: the hub's whole daily quota (400,000 per S1 unit)
   */
  dailyMessageBudget: positiveCount().optional(),
  /**
   * Device or module MQTT connections open at once in this worker. Each is open → patch(es) → close, never two
   * for one identity.
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
   * Identities remembered in this worker: those known to exist (so a retried publish makes no registry call
   * for them) and, when the policy lacks DeviceConnect, their keys. Least recently used ones are dropped first.
   * @default 100000
   */
  keyCacheSize: positiveCount().default(AZURE_DEFAULTS.keyCacheSize),
  /**
   * How long to wait for a device connection or a twin response before giving the SIM a retryable outcome, in ms.
   * @default 30000
   */
  operationTimeoutMs: positive().default(AZURE_DEFAULTS.operationTimeoutMs),
}).superRefine((config, ctx) => {
  if (config.units > MAX_UNITS[config.tier]) {
    const message = `a ${config.tier} hub has at most ${MAX_UNITS[config.tier]} units`;
    ctx.addIssue({ code: 'custom', path: ['units'], message });
  }
});

/** Azure IoT Hub: module twin or device twin reported properties (over MQTT), or twin tags (service API). */
export type AzureTargetConfig = z.output<typeof azureTargetSchema>;

/** The budgets a target applies: the configured ones, or the tier's documented limits. */
export interface AzureBudgets {
  identityOpsPerMinute: number;
  twinUpdatesPerSecond: number;
  connectionsPerSecond: number;
  dailyMessageBudget: number;
  messageChunkBytes: number;
}

export function azureBudgets(config: AzureTargetConfig): AzureBudgets {
  const limits = hubLimits(config.tier, config.units);
  return {
    identityOpsPerMinute: config.identityOpsPerMinute ?? limits.identityOpsPerMinute,
    twinUpdatesPerSecond: config.twinUpdatesPerSecond ?? limits.twinUpdatesPerSecond,
    connectionsPerSecond: config.connectionsPerSecond ?? limits.newConnectionsPerSecond,
    dailyMessageBudget: config.dailyMessageBudget ?? limits.dailyMessages,
    messageChunkBytes: limits.messageChunkBytes,
  };
}

/**
 * Validates raw settings (e.g. parsed YAML) for the Azure target named `name`, filling defaults. `type` may be
 * left out. Throws ConfigError naming the setting (`targets.<name>.<setting>`).
 */
export function parseAzureTargetConfig(raw: unknown, name: string): AzureTargetConfig {
  const settings = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? { type: 'azure', ...raw } : raw;
  return parseTargetSettings(azureTargetSchema, settings, name);
}
