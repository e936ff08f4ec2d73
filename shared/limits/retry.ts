/** Waits between tries: exponential backoff, and a peer's own Retry-After. */

/** Exponential backoff with full jitter: a random delay in [0, min(cap, base * 2^attempt)). */
export function backoffMs(attempt: number, baseMs = 500, capMs = 30_000): number {
  return Math.floor(Math.random() * Math.min(capMs, baseMs * 2 ** attempt));
}

/**
 * Parses an HTTP Retry-After value (delay-seconds or an HTTP date) into milliseconds from `now`.
 * Returns undefined when absent or unreadable; a date in the past gives 0.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
