/**
 * The one logger: JSON lines on stderr, one object per event, with secrets redacted by key name and by value
 * pattern, so that a connection string passed by mistake never reaches a log.
 */
import { LOG_LEVEL_VARIABLE } from './defaults';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_KEY =
  /(password|passphrase|secret|sharedaccesskey|connectionstring|token|apikey|authorization|privatekey|^key$|^pfx$)/i;
const SECRET_VALUE =
  /(SharedAccessKey=[^;"\s]+|SharedAccessSignature [^"\s]+|sig=[^&"\s]+|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)/g;

/** Replaces secret-looking substrings of a string. Use on any text that may carry configuration. */
export function redact(text: string): string {
  return text.replace(SECRET_VALUE, (m) => `${m.slice(0, m.indexOf('=') + 1 || 8)}[redacted]`);
}

function clean(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (value instanceof Error) return { name: value.name, message: redact(value.message) };
  if (!value || typeof value !== 'object' || depth > 4) return value;
  if (Array.isArray(value)) return value.map((v) => clean(v, depth + 1));
  const out: LogFields = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? '[redacted]' : clean(v, depth + 1);
  return out;
}

export interface LoggerOptions {
  /** Lowest level written. @default process.env.KITE_LOG_LEVEL ?? 'info' */
  level?: LogLevel;
  /** Where lines go. @default process.stderr */
  write?: (line: string) => void;
}

export function createLogger(fields: LogFields = {}, options: LoggerOptions = {}): Logger {
  const min = LEVELS[options.level ?? (process.env[LOG_LEVEL_VARIABLE] as LogLevel) ?? 'info'] ?? LEVELS.info;
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: LogLevel, msg: string, extra?: LogFields) => {
    if (LEVELS[level] < min) return;
    write(
      JSON.stringify({
        time: new Date().toISOString(),
        level,
        msg: redact(msg),
        ...(clean({ ...fields, ...extra }) as LogFields),
      })
    );
  };
  return {
    debug: (msg, extra) => emit('debug', msg, extra),
    info: (msg, extra) => emit('info', msg, extra),
    warn: (msg, extra) => emit('warn', msg, extra),
    error: (msg, extra) => emit('error', msg, extra),
    child: (extra) => createLogger({ ...fields, ...extra }, options),
  };
}

/** Removes every occurrence of the given secret values from a text (for reasons built from remote messages). */
export function scrub(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out;
}

/**
 * Makes `logger` the only writer of the process's diagnostics, so every stderr line stays one JSON object:
 * Node's process warnings (e.g. `MaxListenersExceededWarning`, printed as multi-line text by default) become
 * `warn` lines, and an uncaught error or unhandled rejection becomes an `error` line before the process exits
 * with code 1, as Node's default handler would.
 */
export function routeProcessDiagnostics(logger: Logger): void {
  process.removeAllListeners('warning'); // Node's default listener, which prints text
  process.on('warning', (warning: Error & { code?: string }) =>
    logger.warn(warning.message, { warning: warning.name, code: warning.code })
  );
  const fatal = (what: string) => (err: unknown) => {
    logger.error(what, {
      error: err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : err,
    });
    process.exit(1);
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled promise rejection'));
}
