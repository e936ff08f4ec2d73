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
 * Settings renamed since an earlier release, per target type (old name → new name): a configuration written for
 * the old name still works, with a warning, rather than stopping the worker as an unknown setting.
 */
export const RENAMED_TARGET_SETTINGS: Readonly<Partial<Record<TargetType, Readonly<Record<string, string>>>>> = {
  mqtt: { topicTemplate: 'stateTopicTemplate' },
};

/** Receives a warning about the configuration (a deprecated setting), with the setting's path. */
export type ConfigWarning = (message: string, setting: string) => void;

/**
 * Validates the raw settings of the target named `name` (e.g. one entry of a parsed YAML/JSON `targets` map),
 * fills defaults, and returns the typed configuration. Throws ConfigError naming the bad setting. A deprecated
 * setting name is read as its new name and reported to `warn`.
 */
export function parseTargetConfig(raw: unknown, name: string, warn?: ConfigWarning): TargetConfig {
  return parseTargetSettings(targetConfigSchema, withCurrentNames(raw, name, warn), name);
}

/** Validates a whole `targets` map: `{ "aws-eu": {...}, "mqtt": {...} }`. */
export function parseTargetConfigs(raw: unknown, warn?: ConfigWarning): Record<string, TargetConfig> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('targets', 'must be an object keyed by target name');
  }
  return Object.fromEntries(Object.entries(raw).map(([name, value]) => [name, parseTargetConfig(value, name, warn)]));
}

/** `raw` with each deprecated setting moved to its new name; giving both names is an error. */
function withCurrentNames(raw: unknown, name: string, warn?: ConfigWarning): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const settings = raw as Record<string, unknown>;
  const renamed = RENAMED_TARGET_SETTINGS[settings.type as TargetType];
  if (!renamed) return raw;
  const current = { ...settings };
  for (const [old, now] of Object.entries(renamed)) {
    if (!(old in current)) continue;
    const setting = `targets.${name}.${old}`;
    if (now in current) throw new ConfigError(setting, `is the old name of ${now}; give only ${now}`);
    current[now] = current[old];
    delete current[old];
    warn?.(`${setting} is deprecated: rename it to ${now} (the old name will be refused in a later release)`, setting);
  }
  return current;
}
