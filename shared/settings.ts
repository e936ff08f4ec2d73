/**
 * Settings read from a config file section overlaid by environment variables, validated by a zod schema. An
 * environment variable set to a non-blank value wins over the file. A problem is a ConfigError named after where
 * the value came from: the file path (`kite.pageSize`) for a value from the file, else its variable
 * (`KITE_PAGE_SIZE`).
 */
import { z } from 'zod';
import { configErrorFrom } from './config-error';

export type Env = Record<string, string | undefined>;
export type Json = Record<string, unknown>;

/** Which environment variable overrides which setting: `{ 'kite.pageSize': 'KITE_PAGE_SIZE' }`. */
export type EnvBindings = Record<string, string>;

/** Parses `file` with the values of `bindings` from `env` laid over it; throws ConfigError naming the setting. */
export function parseSettings<Schema extends z.ZodType>(
  schema: Schema,
  bindings: EnvBindings,
  env: Env,
  file: Json = {}
): z.output<Schema> {
  const raw: Json = structuredClone(file);
  const fromFile = new Set<string>();
  for (const [path, name] of Object.entries(bindings)) {
    const value = env[name]?.trim();
    if (value) setPath(raw, path.split('.'), value);
    else if (getPath(file, path.split('.')) !== undefined) fromFile.add(path);
  }
  const result = schema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    throw configErrorFrom(result.error, '', (path) => (fromFile.has(path) ? path : (bindings[path] ?? path)));
  }
  return result.data;
}

function getPath(source: unknown, path: string[]): unknown {
  let value = source;
  for (const key of path) value = typeof value === 'object' && value !== null ? (value as Json)[key] : undefined;
  return value;
}

function setPath(target: Json, [head, ...rest]: string[], value: string): void {
  if (rest.length === 0) {
    target[head] = value;
    return;
  }
  const child = target[head];
  const next: Json = typeof child === 'object' && child !== null && !Array.isArray(child) ? (child as Json) : {};
  target[head] = next;
  setPath(next, rest, value);
}

/**
 * A settings object that refuses unknown keys (almost always a typo that would otherwise be silently ignored),
 * naming the known ones.
 */
export function strictSettings<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  const known = Object.keys(shape).sort().join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown setting (known: ${known})` : undefined),
  });
}

/** An optional string (a file path, a name); blank counts as unset. */
export function optionalText() {
  return z
    .string()
    .optional()
    .transform((value) => (value?.trim() ? value.trim() : undefined));
}

/** A string with a default; blank counts as unset. */
export function textOr(fallback: string) {
  return optionalText().transform((value) => value ?? fallback);
}

/**
 * A number from `min` to `max` (whole if `integer`), given as a number (file) or as text (environment);
 * `fallback` when unset.
 */
export function numberSetting(opts: { min: number; max?: number; fallback: number; integer?: boolean }) {
  const { min, max = Number.MAX_SAFE_INTEGER, fallback, integer = false } = opts;
  return z
    .unknown()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value === null) return fallback;
      const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
      if (!Number.isFinite(n) || n < min || n > max) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`,
        });
        return z.NEVER;
      }
      if (integer && !Number.isInteger(n)) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number, got ${n}` });
        return z.NEVER;
      }
      return n;
    });
}

/** A URL whose protocol is one of `protocols`; never echoed, as it may hold a password. `fallback` when unset. */
export function urlSetting(protocols: string[], fallback: string) {
  return textOr(fallback).superRefine((value, ctx) => {
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: `must be a URL (${protocols.map((p) => `${p}//…`).join(' or ')})` });
      return;
    }
    if (!protocols.includes(parsed.protocol)) {
      ctx.addIssue({ code: 'custom', message: `must use ${protocols.join(' or ')}, not ${parsed.protocol}` });
    }
  });
}
