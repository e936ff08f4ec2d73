/**
 * Kite errors. Kite answers a failed call with `{"ClientException":{...}}` or `{"ServerException":{...}}` whose
 * code is `<category>.<id>` (SVC.1006 not found, SVR.1006 overloaded, POL.* rate limit). Codes of our own for
 * failures that never reached Kite's error model: TIMEOUT, NETWORK (Kite unreachable), DISCONNECTED (a kept-alive
 * connection closed under one request before Kite answered), TLS (certificate refused), BAD_RESPONSE
 * (malformed, truncated or empty body, or an answer that is not what was asked), TOO_LARGE (a body over the
 * client's limit), REPEATED_SIMS and TOO_MANY_PAGES (paging that does not advance or does not end) and
 * HTTP_<status> (an error status without a Kite body).
 */
import { FailureType } from '../shared/failures';
export class KiteApiError extends Error {
  override name = FailureType.KiteApi;
  /** Kite's code such as `SVC.1006`, or one of ours (see the module comment). */
  readonly code: string;
  /** Kite's text, or ours; never contains credentials. */
  readonly text: string;
  /** HTTP status; 0 when no response came. */
  readonly status: number;
  /**
   * True when the same request may succeed later (SVR.1006, POL.*, 5xx, timeouts, broken responses): Temporal may
   * retry the activity. The client itself re-sends only after a 429 (see KiteClientOptions.rateLimitRetries).
   */
  readonly retryable: boolean;
  /** Seconds from a `Retry-After` header, when Kite sent one. */
  readonly retryAfterSec?: number;

  constructor(init: { code: string; text: string; status: number; where?: string; retryAfterSec?: number }) {
    const where = init.where ? ` on ${init.where}` : '';
    super(`Kite ${init.code}${init.status ? ` (HTTP ${init.status})` : ''}${where}: ${init.text}`);
    this.code = init.code;
    this.text = init.text;
    this.status = init.status;
    this.retryable = isRetryable(init.code, init.status);
    this.retryAfterSec = init.retryAfterSec;
  }
}

const OWN_RETRYABLE = new Set(['TIMEOUT', 'NETWORK', 'DISCONNECTED', 'BAD_RESPONSE']);

/**
 * Whether Temporal should retry the activity that met this failure: yes for SVR.1006, POL.*, 5xx and transport
 * failures; never for SVC.* (client errors), SVR.1003 (not implemented), TLS failures and 401/403 (a 403 wins over
 * a POL code: POL.1000 is a permission error).
 */
export function isRetryable(code: string, status: number): boolean {
  if (/^SVC\b/.test(code) || code === 'SVR.1003' || code === 'TLS' || status === 401 || status === 403) return false;
  if (code === 'SVR.1006' || /^(POL|SVR)\b/.test(code) || OWN_RETRYABLE.has(code)) return true;
  return status === 429 || status >= 500;
}

const CODE_IN_TEXT = /\b(SVC|SVR|POL)[.\s]?(\d{4})\b/;

/** The `ClientException`/`ServerException` object of a Kite error body, with which of the two it was. */
export function kiteException(
  json: unknown
): { kind: 'ClientException' | 'ServerException'; exc: Record<string, unknown> } | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  for (const kind of ['ClientException', 'ServerException'] as const) {
    const exc = (json as Record<string, unknown>)[kind];
    if (exc && typeof exc === 'object') return { kind, exc: exc as Record<string, unknown> };
  }
  return undefined;
}

/**
 * Reads Kite's error body. Accepts `exceptionCategory` and `exceptionId` together or either alone (an id such as
 * `SVC.1006` carries its category; a bare `1006` takes it from the exception's kind: SVR for ServerException,
 * else SVC), a `code` field, or a code quoted in the text; falls back to HTTP_<status> so that nothing is misread
 * as a Kite code.
 */
export function parseKiteError(status: number, body: string, where?: string, retryAfterSec?: number): KiteApiError {
  let found: ReturnType<typeof kiteException>;
  try {
    found = kiteException(JSON.parse(body));
  } catch {
    // not JSON: a proxy page or a cut body; the status decides
  }
  const exc = found?.exc;
  const text = typeof exc?.text === 'string' ? exc.text : body.slice(0, 200).trim() || `HTTP ${status}`;
  const category = typeof exc?.exceptionCategory === 'string' ? exc.exceptionCategory : undefined;
  const id =
    typeof exc?.exceptionId === 'string' || typeof exc?.exceptionId === 'number' ? String(exc.exceptionId) : '';
  const inText = CODE_IN_TEXT.exec(text);
  let code = `HTTP_${status}`;
  if (id.includes('.')) code = id;
  else if (id) code = `${category ?? (found?.kind === 'ServerException' ? 'SVR' : 'SVC')}.${id}`;
  else if (typeof exc?.code === 'string') code = exc.code;
  else if (inText) code = `${inText[1]}.${inText[2]}`;
  else if (category) code = category;
  return new KiteApiError({ code, text, status, where, retryAfterSec });
}
