/**
 * Small building blocks every target uses to bound itself: a concurrency pool, a request-rate budget, abortable
 * sleeps, backoff and Retry-After parsing. Kept dependency-free so the behaviour is easy to read and test.
 */
import { mapPool } from '../shared/concurrency';
import type { PublishItem, PublishOutcome } from './target';

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}

/**
 * Spaces calls evenly so that no more than `perSecond` start in any second. Slots are handed out in call order,
 * which keeps a burst of callers fair without a timer per caller.
 */
export class RateLimiter {
  private readonly intervalMs: number;
  private nextSlot = 0;

  constructor(perSecond: number) {
    this.intervalMs = perSecond > 0 ? 1000 / perSecond : 0;
  }

  /** Waits for this caller's slot; rejects if the signal aborts first. */
  async take(signal?: AbortSignal): Promise<void> {
    const now = Date.now();
    const slot = Math.max(now, this.nextSlot);
    this.nextSlot = slot + this.intervalMs;
    if (slot > now) await sleep(slot - now, signal);
    else if (signal?.aborted) throw abortError(signal);
  }
}

export { mapPool } from '../shared/concurrency';

/**
 * Like mapPool, but items with the same key run one after another, in their order: two changes of one SIM in a
 * call must reach the cloud in sequence, or an older value could overwrite a newer one.
 */
export async function mapPoolByKey<T, R>(
  items: T[],
  key: (item: T) => string,
  concurrency: number,
  work: (item: T) => Promise<R>
): Promise<R[]> {
  const groups = new Map<string, number[]>();
  items.forEach((item, i) => {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(i);
    else groups.set(k, [i]);
  });
  const results = new Array<R>(items.length);
  await mapPool([...groups.values()], concurrency, async (indexes) => {
    for (const i of indexes) results[i] = await work(items[i]);
  });
  return results;
}

/** The outcome for an item that was not attempted because the caller cancelled. */
export function abortedOutcome(item: Pick<PublishItem, 'iccid'>): PublishOutcome {
  return { iccid: item.iccid, status: 'retryable', reason: 'publish cancelled before this SIM was sent' };
}

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

/** Removes every occurrence of the given secret values from a text (for reasons built from remote messages). */
export function scrub(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out;
}
