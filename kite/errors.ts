/**
 * Kite errors. Kite answers a failed call with `{"ClientException":{...}}` or `{"ServerException":{...}}` whose
 * code is `<category>.<id>` (SVC.1006 not found, SVR.1006 overloaded, POL.* rate limit). Codes of our own for
 * failures that never reached Kite's error model: TIMEOUT, NETWORK, TLS (certificate refused), BAD_RESPONSE
 * (malformed or truncated body) and HTTP_<status> (an error status without a Kite body).
 */
export class KiteApiError extends Error {
  override name = 'KiteApiError';
  /** Kite's code such as `SVC.1006`, or one of ours (see the module comment). */
  readonly code: string;
  /** Kite's text, or ours; never contains credentials. */
  readonly text: string;
  /** HTTP status; 0 when no response came. */
  readonly status: number;
  /** True when the same request may succeed later (SVR.1006, POL.*, 5xx, timeouts, broken responses). */
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

const OWN_RETRYABLE = new Set(['TIMEOUT', 'NETWORK', 'BAD_RESPONSE']);

/**
 * Retry policy: SVR.1006, POL.*, 5xx and transport failures are retried; SVC.* (client errors), SVR.1003 (not
 * implemented), TLS failures and 401/403 never are (a 403 wins over a POL code: POL.1000 is a permission error).
 */
export function isRetryable(code: string, status: number): boolean {
  if (code.startsWith('SVC.') || code === 'SVR.1003' || code === 'TLS' || status === 401 || status === 403)
    return false;
  if (code === 'SVR.1006' || code.startsWith('POL.') || OWN_RETRYABLE.has(code)) return true;
  return status === 429 || status >= 500;
}

const CODE_IN_TEXT = /\b(SVC|SVR|POL)[.\s]?(\d{4})\b/;

/**
 * Reads Kite's error body. Accepts `exceptionCategory`+`exceptionId`, a `code` field, or a code quoted in the
 * text; falls back to HTTP_<status> so that nothing is misread as a Kite code.
 */
export function parseKiteError(status: number, body: string, where?: string, retryAfterSec?: number): KiteApiError {
  let exc: Record<string, unknown> | undefined;
  try {
    const json = JSON.parse(body) as Record<string, unknown>;
    const inner = json?.ClientException ?? json?.ServerException;
    if (inner && typeof inner === 'object') exc = inner as Record<string, unknown>;
  } catch {
    // not JSON: a proxy page or a cut body; the status decides
  }
  const text = typeof exc?.text === 'string' ? exc.text : body.slice(0, 200).trim() || `HTTP ${status}`;
  let code = `HTTP_${status}`;
  if (typeof exc?.exceptionCategory === 'string' && exc.exceptionId !== undefined) {
    code = `${exc.exceptionCategory}.${String(exc.exceptionId)}`;
  } else if (typeof exc?.code === 'string') {
    code = exc.code;
  } else {
    const m = CODE_IN_TEXT.exec(text);
    if (m) code = `${m[1]}.${m[2]}`;
  }
  return new KiteApiError({ code, text, status, where, retryAfterSec });
}
