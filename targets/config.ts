/**
 * Typed, validated configuration of publishing targets. One entry per configured target instance, keyed by its
 * name (`aws-eu`, `mqtt`, ...), discriminated by `type`. Each target's schema sits beside its code
 * (`aws-config.ts`, `mqtt-config.ts`, `webhook-config.ts`, `null-config.ts`, `azure/config.ts`), with every
 * setting's meaning and default. Errors are ConfigErrors named by the setting (`targets.aws-eu.shadowName: ...`)
 * and never echo the value of a secret or a URL (URLs may carry tokens).
 */
import { z } from 'zod';
import { ConfigError } from '../shared/config-error';

export { ConfigError };
import { awsTargetSchema } from './aws-config';
import { azureTargetSchema } from './azure/config';
import { mqttTargetSchema } from './mqtt-config';
import { nullTargetSchema } from './null-config';
import { parseTargetSettings } from './schema';
import { webhookTargetSchema } from './webhook-config';

export { AWS_DEFAULTS, type AwsCredentialsConfig, type AwsTargetConfig } from './aws-config';
export { AZURE_DEFAULTS, type AzureTargetConfig } from './azure/config';
export { MQTT_DEFAULTS, type MqttTargetConfig } from './mqtt-config';
export type { NullTargetConfig } from './null-config';
export type { CommonTargetConfig } from './schema';
export { WEBHOOK_DEFAULTS, type WebhookTargetConfig } from './webhook-config';

const SCHEMAS = [awsTargetSchema, mqttTargetSchema, webhookTargetSchema, nullTargetSchema, azureTargetSchema] as const;

export type TargetConfig = z.output<(typeof SCHEMAS)[number]>;
export type TargetType = TargetConfig['type'];
export const TARGET_TYPES: readonly TargetType[] = SCHEMAS.map((schema) => schema.shape.type.value);

/** Any target's settings, by `type`. */
export const targetConfigSchema = z.discriminatedUnion('type', SCHEMAS, {
  error: (issue) => (issue.code === 'invalid_union' ? `must be one of ${TARGET_TYPES.join(', ')}` : undefined),
});

/**
 * Validates the raw settings of the target named `name` (e.g. one entry of a parsed YAML/JSON `targets` map),
 * fills defaults, and returns the typed configuration. Throws ConfigError naming the bad setting.
 */
export function parseTargetConfig(raw: unknown, name: string): TargetConfig {
  return parseTargetSettings(targetConfigSchema, raw, name);
}

/** Validates a whole `targets` map: `{ "aws-eu": {...}, "mqtt": {...} }`. */
export function parseTargetConfigs(raw: unknown): Record<string, TargetConfig> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('targets', 'must be an object keyed by target name');
  }
  return Object.fromEntries(Object.entries(raw).map(([name, value]) => [name, parseTargetConfig(value, name)]));
}
