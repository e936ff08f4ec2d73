/**
 * The CLI's Temporal connection: settings from the environment, and a connect that turns "nothing listens
 * there" into a message naming the address.
 */
import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import { z } from 'zod';
import { ConfigError } from '../shared/config-error';
import { numberSetting, parseSettings, textOr, type Env } from '../shared/settings';
import {
  temporalBindings,
  temporalSecurity,
  temporalSettingsSchema,
  type TemporalSettings,
} from '../shared/temporal-settings';
import { CliError, ExitCode } from './errors';

const cliSettingsSchema = z.object({
  temporal: temporalSettingsSchema,
  /** Base URL of the Temporal Web UI, for links. From `KITE_WEB_UI_URL`. @default 'http://127.0.0.1:8233' */
  webUiUrl: textOr('http://127.0.0.1:8233').transform((url) => url.replace(/\/+$/, '')),
  /** How long to wait for the server, in ms. From `KITE_TEMPORAL_CONNECT_TIMEOUT_MS`. @default 10000 */
  connectTimeoutMs: numberSetting({ min: 1, fallback: 10_000, integer: true }),
});

/**
 * Where and how the CLI reaches Temporal: the worker's Temporal settings (shared/temporal-settings.ts: address,
 * namespace, task queue, TLS, API key) and the CLI's own, every one from a `KITE_*` environment variable.
 */
export type ClientSettings = TemporalSettings & Omit<z.output<typeof cliSettingsSchema>, 'temporal'>;

/** Reads {@link ClientSettings} from `env`; a malformed value is a usage error (exit code 2) naming the variable. */
export function settingsFromEnv(env: Env = process.env): ClientSettings {
  const bindings = {
    ...temporalBindings(),
    webUiUrl: 'KITE_WEB_UI_URL',
    connectTimeoutMs: 'KITE_TEMPORAL_CONNECT_TIMEOUT_MS',
  };
  const { temporal, ...cli } = asUsageError(() => parseSettings(cliSettingsSchema, bindings, env, { temporal: {} }));
  return { ...temporal, ...cli };
}

/** Runs `read`, turning a ConfigError into the CLI's "invalid configuration" exit code. */
function asUsageError<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(`invalid configuration: ${err.message}`, ExitCode.usage);
    throw err;
  }
}

/** Connection options for `settings`: plain, mTLS, or TLS with an API key (Temporal Cloud). */
export function connectionOptions(settings: ClientSettings): ConnectionOptions {
  return {
    address: settings.address,
    connectTimeout: settings.connectTimeoutMs,
    ...asUsageError(() => temporalSecurity(settings)),
  };
}

/** The error to report when the server at `settings.address` does not answer. */
export function unreachableError(settings: ClientSettings, detail?: string): CliError {
  return new CliError(
    `cannot reach Temporal at ${settings.address}${detail ? ` (${detail})` : ''}. ` +
      'Start the local stack with `npm run stack start`, or point KITE_TEMPORAL_ADDRESS at your server.',
    ExitCode.unreachable
  );
}

/** Connects to Temporal; fails with exit code 4 and the address when nothing answers in time. */
export async function connectClient(settings: ClientSettings): Promise<Client> {
  const options = connectionOptions(settings);
  let connection: Connection;
  try {
    connection = await Connection.connect(options);
  } catch (err) {
    throw unreachableError(settings, (err as Error).message);
  }
  return new Client({ connection, namespace: settings.namespace });
}
