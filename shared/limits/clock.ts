/**
 * Time for the limits toolkit: an abortable `sleep`, and a `Clock` that rate budgets and backoffs take so that
 * tests can run them without real waiting.
 */
import { abortError, onAbort } from './abort';

/** Resolves after `ms`, or rejects with the signal's reason (see `abortError`) as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const forget = signal
      ? onAbort(signal, () => {
          clearTimeout(timer);
          reject(abortError(signal));
        })
      : () => undefined;
    const timer = setTimeout(() => {
      forget();
      resolve();
    }, ms);
  });
}

/**
 * Like `sleep`, for callers that answer an abort with an outcome instead of an error: resolves `true` after the
 * whole `ms`, `false` as soon as the signal aborts.
 */
export function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<boolean> {
  return sleep(ms, signal).then(
    () => true,
    () => false
  );
}

/** A time source: rate budgets and backoffs wait through it. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** As `sleep`. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = { now: () => Date.now(), sleep };
