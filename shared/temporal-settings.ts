/**
 * Where and how the worker and the CLI reach Temporal: one reader of the `KITE_TEMPORAL_*` and `KITE_TASK_QUEUE`
 * variables (over the worker's config file section `temporal`), and the TLS/API-key connection options they imply.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './config-error';
import { DEFAULT_TASK_QUEUE, DEFAULT_TEMPORAL_ADDRESS } from './defaults';
import { optionalText, parseSettings, textOr, type EnvBindings, type Env, type Json } from './settings';

export const temporalSettingsSchema = z
  .object({
    /** Frontend gRPC address, `host:port`. From `KITE_TEMPORAL_ADDRESS`. @default '127.0.0.1:7233' */
    address: textOr(DEFAULT_TEMPORAL_ADDRESS),
    /** From `KITE_TEMPORAL_NAMESPACE`. @default 'default' */
    namespace: textOr('default'),
    /** Task queue of the workers and of new group workflows. From `KITE_TASK_QUEUE`. @default 'kite-cloud-connector' */
    taskQueue: textOr(DEFAULT_TASK_QUEUE),
    /** mTLS client certificate, a PEM file, for Temporal Cloud or a secured cluster. From `KITE_TEMPORAL_TLS_CERT`. @default undefined */
    tlsCertFile: optionalText(),
    /** The key of `tlsCertFile`, a PEM file. From `KITE_TEMPORAL_TLS_KEY`. @default undefined */
    tlsKeyFile: optionalText(),
    /** CA of the server's certificate, a PEM file, when not publicly trusted. From `KITE_TEMPORAL_TLS_CA`. @default undefined */
    tlsCaFile: optionalText(),
    /** Temporal Cloud API key; turns TLS on. From `KITE_TEMPORAL_API_KEY`. Secret. @default undefined */
    apiKey: optionalText(),
  })
  .superRefine((settings, ctx) => {
    if (!settings.tlsCertFile !== !settings.tlsKeyFile) {
      const missing = settings.tlsCertFile ? 'tlsKeyFile' : 'tlsCertFile';
      ctx.addIssue({
        code: 'custom',
        path: [missing],
        message: 'set both KITE_TEMPORAL_TLS_CERT and KITE_TEMPORAL_TLS_KEY, or neither',
      });
    }
  });

export type TemporalSettings = z.output<typeof temporalSettingsSchema>;

/** The environment variable of each Temporal setting. */
export const TEMPORAL_ENV = {
  address: 'KITE_TEMPORAL_ADDRESS',
  namespace: 'KITE_TEMPORAL_NAMESPACE',
  taskQueue: 'KITE_TASK_QUEUE',
  tlsCertFile: 'KITE_TEMPORAL_TLS_CERT',
  tlsKeyFile: 'KITE_TEMPORAL_TLS_KEY',
  tlsCaFile: 'KITE_TEMPORAL_TLS_CA',
  apiKey: 'KITE_TEMPORAL_API_KEY',
} as const satisfies Record<keyof TemporalSettings, string>;

/** The bindings of {@link TEMPORAL_ENV} under `section` of a config file (e.g. `temporal.address`). */
export function temporalBindings(section = 'temporal'): EnvBindings {
  return Object.fromEntries(Object.entries(TEMPORAL_ENV).map(([key, name]) => [`${section}.${key}`, name]));
}

/** Reads the Temporal settings from `env` over a config file's `temporal` section. Throws ConfigError. */
export function readTemporalSettings(env: Env = process.env, fromFile: Json = {}): TemporalSettings {
  const schema = z.object({ temporal: temporalSettingsSchema });
  return parseSettings(schema, temporalBindings(), env, { temporal: fromFile }).temporal;
}

/** TLS and API key options for `Connection.connect` (client) and `NativeConnection.connect` (worker). */
export interface TemporalConnectionSecurity {
  tls?: { clientCertPair?: { crt: Buffer; key: Buffer }; serverRootCACertificate?: Buffer };
  apiKey?: string;
}

/** Plain, mTLS, or TLS with an API key (Temporal Cloud); reads the PEM files, failing with a ConfigError. */
export function temporalSecurity(settings: TemporalSettings): TemporalConnectionSecurity {
  const mtls = settings.tlsCertFile && settings.tlsKeyFile;
  if (!mtls && !settings.apiKey && !settings.tlsCaFile) return {};
  return {
    apiKey: settings.apiKey,
    tls: {
      clientCertPair: mtls
        ? {
            crt: readPem(settings.tlsCertFile!, TEMPORAL_ENV.tlsCertFile),
            key: readPem(settings.tlsKeyFile!, TEMPORAL_ENV.tlsKeyFile),
          }
        : undefined,
      serverRootCACertificate: settings.tlsCaFile ? readPem(settings.tlsCaFile, TEMPORAL_ENV.tlsCaFile) : undefined,
    },
  };
}

function readPem(path: string, setting: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(
      setting,
      `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`
    );
  }
}
