/**
 * Building blocks of the target configuration schemas: the settings every target has, typed fields with messages
 * that say what is expected, and the parse that turns the first problem into a ConfigError named by its path
 * (`targets.aws-eu.shadowName: ...`). Values of secrets and URLs never appear in a message.
 */
import { z } from 'zod';
import { ConfigError, configErrorFrom } from '../shared/config-error';
import { DEFAULT_DEVICE_ID_TEMPLATE, deviceIdTemplateProblem } from './device-id';

/** Target instance names: the key under `targets`, used in logs, Redis keys and outcomes. */
export const TARGET_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Settings every target has. */
export const commonTargetShape = {
  /** The instance name: the key under `targets`, used in logs, Redis keys and outcomes. `[A-Za-z0-9_-]{1,64}`. */
  name: z.string().regex(TARGET_NAME),
  /**
   * The SIM's cloud identity (thing name, device id, `{deviceId}` in topics). Placeholders: `{iccid}`,
   * `{alias}`, `{imei}`; resolved by `deviceIdFor` in targets/device-id.ts. Keep it stable: changing it creates
   * new identities in the cloud.
   * @default '{iccid}'
   */
  deviceIdTemplate: z
    .string()
    .default(DEFAULT_DEVICE_ID_TEMPLATE)
    .superRefine((template, ctx) => {
      const problem = deviceIdTemplateProblem(template);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  /**
   * When a SIM leaves the monitoring group, tell this target, rather than leave the SIM's last state there as if
   * it were current: a twin, a shadow or a webhook receiver gets `{"monitoring": "off"}` as a patch, and an MQTT
   * state topic `{"iccid", "monitoring": "off"}` in place of the record (the changes topic the patch); and the
   * target gets a `leftGroup` event, even when the group's events are off. While it is on, a SIM's first publish
   * carries `monitoring: "on"`, so a SIM that joins the group again reads as monitored again. Only SIMs the target
   * holds are told, with the same pending-and-commit scheme as events (at least once).
   * @default false
   */
  leftGroupNotice: flag().optional(),
};

/** Settings every target has, as a type. */
export type CommonTargetConfig = z.output<z.ZodObject<typeof commonTargetShape>>;

/** A whole number in `[min, max]`; the message shows the (non-secret) value it got. */
export function intIn(min: number, max: number) {
  const error = (issue: { input?: unknown }) =>
    `must be an integer from ${min} to ${max} (got ${JSON.stringify(issue.input)})`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

/** true or false; the message shows the value it got. */
export function flag() {
  return z.boolean({
    error: (issue) =>
      issue.input === undefined ? undefined : `must be true or false (got ${JSON.stringify(issue.input)})`,
  });
}

/** A string that is not blank. Secret-safe: the message never shows the value. */
export function text() {
  return z
    .string({ error: (issue) => (issue.input === undefined ? undefined : 'must be a non-empty string') })
    .refine((value) => value.trim() !== '', 'must be a non-empty string');
}

/** A non-secret string matching `pattern`; the message explains `hint` and shows (the start of) the value. */
export function matching(pattern: RegExp, hint: string, requiredHint?: string) {
  return z
    .string({
      error: (issue) =>
        issue.input === undefined ? requiredHint && `required, ${requiredHint}` : 'must be a non-empty string',
    })
    .refine((value) => value.trim() !== '', 'must be a non-empty string')
    .refine((value) => pattern.test(value), {
      error: (issue) => `must match ${hint} (got ${JSON.stringify(String(issue.input).slice(0, 80))})`,
    });
}

/**
 * An absolute URL with one of `protocols` (e.g. `['https:', 'http:']`). Never echoed (URLs may carry tokens),
 * and refused if it embeds a password: `passwordSetting` names the setting to put it in instead.
 */
export function url(protocols: string[], passwordSetting?: string) {
  return text().superRefine((value, ctx) => {
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: `must be an absolute URL (${protocols.join(', ')})` });
      return;
    }
    if (!protocols.includes(parsed.protocol)) {
      ctx.addIssue({ code: 'custom', message: `must use ${protocols.join(' or ')}` });
    } else if (parsed.password) {
      const instead = passwordSetting ? `; put it in the ${passwordSetting} setting` : '';
      ctx.addIssue({ code: 'custom', message: `must not embed a password${instead}` });
    }
  });
}

/** PEM certificate text (one or more certificates). */
export function pem() {
  return text().refine((value) => value.includes('-----BEGIN CERTIFICATE-----'), 'must be PEM certificate text');
}

/** A target's settings schema: an object with a `type` literal, the common settings and its own. */
export type TargetSchema = z.ZodType<{ type: string; name: string; deviceIdTemplate: string }>;

/**
 * Validates the raw settings of the target named `name` against `schema`, filling defaults. The name comes from
 * the key under `targets`; a `name` inside the settings must equal it. Throws ConfigError naming the setting.
 */
export function parseTargetSettings<Schema extends z.ZodType>(
  schema: Schema,
  raw: unknown,
  name: string
): z.output<Schema> {
  const where = `targets.${name}`;
  if (!TARGET_NAME.test(name)) throw new ConfigError(where, 'target names must match [A-Za-z0-9_-]{1,64}');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(where, 'must be an object with a "type"');
  }
  const settings = raw as Record<string, unknown>;
  if (settings.name !== undefined && settings.name !== name) {
    throw new ConfigError(`${where}.name`, `must be absent or equal to the key "${name}"`);
  }
  const result = schema.safeParse({ ...settings, name }, { reportInput: true });
  if (!result.success) throw configErrorFrom(result.error, where);
  return result.data;
}
