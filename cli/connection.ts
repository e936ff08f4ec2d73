/**
 * The CLI's Temporal connection: settings from the environment, and a connect that turns "nothing listens
 * there" into a message naming the address.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import { DEFAULT_TASK_QUEUE } from '../workflows/definitions';
import { CliError, ExitCode } from './errors';
import { DEFAULT_TEMPORAL_ADDRESS } from '../shared/defaults';

/** Where and how the CLI reaches Temporal. Every field comes from a `KITE_*` environment variable. */
export interface ClientSettings {
  /** Frontend gRPC address, `host:port`. From `KITE_TEMPORAL_ADDRESS`. @default '127.0.0.1:7233' */
  address: string;
  /** From `KITE_TEMPORAL_NAMESPACE`. @default 'default' */
  namespace: string;
  /** Task queue new group workflows are started on. From `KITE_TASK_QUEUE`. @default DEFAULT_TASK_QUEUE */
  taskQueue: string;
  /** Base URL of the Temporal Web UI, for links. From `KITE_WEB_UI_URL`. @default 'http://127.0.0.1:8233' */
  webUiUrl: string;
  /** mTLS client certificate and key (PEM file paths). From `KITE_TEMPORAL_TLS_CERT` and `KITE_TEMPORAL_TLS_KEY`. */
  tlsCertPath?: string;
  tlsKeyPath?: string;
  /** CA that signed the server's certificate, if not a public one. From `KITE_TEMPORAL_TLS_CA`. */
  tlsCaPath?: string;
  /** Temporal Cloud API key; turns TLS on. From `KITE_TEMPORAL_API_KEY`. */
  apiKey?: string;
  /** How long to wait for the server. From `KITE_TEMPORAL_CONNECT_TIMEOUT_MS`. @default 10000 */
  connectTimeoutMs: number;
}

/** Reads {@link ClientSettings} from `env`; fails with a usage error when a value is malformed. */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): ClientSettings {
  const nonEmpty = (name: string) => (env[name]?.trim() ? env[name]!.trim() : undefined);
  const timeout = Number(nonEmpty('KITE_TEMPORAL_CONNECT_TIMEOUT_MS') ?? 10_000);
  if (!Number.isInteger(timeout) || timeout <= 0) {
    throw new CliError('KITE_TEMPORAL_CONNECT_TIMEOUT_MS must be a positive integer (ms)', ExitCode.usage);
  }
  const settings: ClientSettings = {
    address: nonEmpty('KITE_TEMPORAL_ADDRESS') ?? DEFAULT_TEMPORAL_ADDRESS,
    namespace: nonEmpty('KITE_TEMPORAL_NAMESPACE') ?? 'default',
    taskQueue: nonEmpty('KITE_TASK_QUEUE') ?? DEFAULT_TASK_QUEUE,
    webUiUrl: (nonEmpty('KITE_WEB_UI_URL') ?? 'http://127.0.0.1:8233').replace(/\/+$/, ''),
    tlsCertPath: nonEmpty('KITE_TEMPORAL_TLS_CERT'),
    tlsKeyPath: nonEmpty('KITE_TEMPORAL_TLS_KEY'),
    tlsCaPath: nonEmpty('KITE_TEMPORAL_TLS_CA'),
    apiKey: nonEmpty('KITE_TEMPORAL_API_KEY'),
    connectTimeoutMs: timeout,
  };
  if (!settings.tlsCertPath !== !settings.tlsKeyPath) {
    throw new CliError('set both KITE_TEMPORAL_TLS_CERT and KITE_TEMPORAL_TLS_KEY, or neither', ExitCode.usage);
  }
  return settings;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CliError(`cannot read the ${what} at ${path}: ${(err as Error).message}`, ExitCode.usage);
  }
}

/** Connection options for `settings`: plain, mTLS, or TLS with an API key (Temporal Cloud). */
export function connectionOptions(settings: ClientSettings): ConnectionOptions {
  const mtls = settings.tlsCertPath && settings.tlsKeyPath;
  const useTls = Boolean(mtls || settings.apiKey || settings.tlsCaPath);
  return {
    address: settings.address,
    connectTimeout: settings.connectTimeoutMs,
    apiKey: settings.apiKey,
    tls: useTls
      ? {
          clientCertPair: mtls
            ? { crt: readPem(settings.tlsCertPath!, 'TLS certificate'), key: readPem(settings.tlsKeyPath!, 'TLS key') }
            : undefined,
          serverRootCACertificate: settings.tlsCaPath ? readPem(settings.tlsCaPath, 'TLS CA') : undefined,
        }
      : undefined,
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
