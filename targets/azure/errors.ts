/**
 * Classifies failures from the service SDK and the twin response status into the three failure
 * outcomes. Reasons are built from status codes, error names and hub error codes only, then redacted, so that a
 * key or SAS can never travel in a reason.
 */
import { redact } from '../../shared/log';
import type { DailyPauseCause } from './daily-budget';

export type FailureKind = 'retryable' | 'throttled' | 'permanent';

export interface Failure {
  kind: FailureKind;
  reason: string;
  /** For `throttled`: the server's Retry-After, when it sent one. */
  retryAfterMs?: number;
  /** HTTP-like status when known (REST status or `$iothub/twin/res/{status}`). */
  status?: number;
  /** The device connection dropped mid-operation (possibly the hub shedding load). */
  dropped?: boolean;
  /** The hub's daily message quota is exceeded (403002 IotHubQuotaExceeded): nothing works until 00:00 UTC. */
  quotaExceeded?: boolean;
  /** For `throttled`: the whole target is paused until this epoch ms (the daily budget, until 00:00 UTC). */
  pausedUntil?: number;
  /** With `pausedUntil`: what is spent, the hub's quota or the connector's budget (see `DailyPauseCause`). */
  pauseCause?: DailyPauseCause;
}

const STATUS_BY_NAME: Record<string, number> = {
  ArgumentError: 400,
  UnauthorizedError: 401,
  TooManyDevicesError: 403,
  DeviceNotFoundError: 404,
  IotHubNotFoundError: 404,
  DeviceTimeoutError: 408,
  DeviceAlreadyExistsError: 409,
  InvalidEtagError: 412,
  ThrottlingError: 429,
  InternalServerError: 500,
  BadDeviceResponseError: 502,
  ServiceUnavailableError: 503,
  GatewayTimeoutError: 504,
};

/** Network errors worth retrying (DNS, refused, reset, TLS handshake cut short). */
const TRANSIENT_CODES = /^(ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)$/;

/** Status → outcome kind, the same for REST and twin responses. */
export function kindOfStatus(status: number): FailureKind {
  if (status === 429) return 'throttled';
  if (status === 408 || status >= 500) return 'retryable';
  return 'permanent';
}

/** The `ErrorCode:<code>` of an IoT Hub error body, if any. */
export function hubErrorCode(body: unknown): string | undefined {
  if (typeof body !== 'string' || !body) return undefined;
  try {
    const parsed = JSON.parse(body) as { Message?: unknown; errorCode?: unknown };
    if (typeof parsed.Message === 'string') return /ErrorCode:([A-Za-z0-9]+)/.exec(parsed.Message)?.[1];
    if (parsed.errorCode !== undefined) return String(parsed.errorCode);
  } catch {
    return undefined;
  }
  return undefined;
}

/** The text of an IoT Hub error body after its `ErrorCode:<code>;`, shortened to 200 characters; undefined if none. */
export function hubErrorText(body: unknown): string | undefined {
  if (typeof body !== 'string' || !body) return undefined;
  try {
    const message = (JSON.parse(body) as { Message?: unknown }).Message;
    if (typeof message !== 'string') return undefined;
    const text = message.replace(/^ErrorCode:[A-Za-z0-9]+;?/, '').trim();
    return text ? text.slice(0, 200) : undefined;
  } catch {
    return undefined;
  }
}

function retryAfterMs(headers: Record<string, unknown> | undefined): number | undefined {
  const value = headers?.['retry-after'];
  if (typeof value !== 'string') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

interface SdkError {
  name?: string;
  code?: string;
  response?: { statusCode?: number; headers?: Record<string, unknown> };
  responseBody?: unknown;
}

/** Classifies an error thrown by `azure-iothub` (translated REST error or a network error). */
export function classifyServiceError(err: unknown, operation: string): Failure {
  const e = (err ?? {}) as SdkError;
  const status = e.response?.statusCode ?? (e.name ? STATUS_BY_NAME[e.name] : undefined);
  if (status !== undefined) {
    const code = hubErrorCode(e.responseBody);
    const reason = redact(`${operation}: HTTP ${status}${code ? ` ${code}` : ''}`);
    if (status === 403 && (code === 'IotHubQuotaExceeded' || code === '403002')) {
      return {
        kind: 'throttled',
        reason: `${reason}: the hub's daily message quota is spent`,
        status,
        quotaExceeded: true,
      };
    }
    return { kind: kindOfStatus(status), reason, status, retryAfterMs: retryAfterMs(e.response?.headers) };
  }
  if (e.code && TRANSIENT_CODES.test(e.code)) return { kind: 'retryable', reason: `${operation}: ${e.code}` };
  return { kind: 'retryable', reason: redact(`${operation}: ${e.name ?? 'Error'}${e.code ? ` ${e.code}` : ''}`) };
}
