/**
 * Waiting on an AbortSignal without one listener per waiter. Every waiter of one signal (a publish's rate-budget
 * waits, its semaphore waits, its sleeps) shares a single `abort` listener registered here, so hundreds of waiting
 * callers never trip Node's MaxListenersExceededWarning (10 listeners per signal) and nothing is left behind.
 */
const waiters = new WeakMap<AbortSignal, Set<() => void>>();

/**
 * Calls `callback` once when `signal` aborts (at once, synchronously, if it already has). Returns a function
 * that forgets the callback; call it when the wait ends otherwise.
 */
export function onAbort(signal: AbortSignal, callback: () => void): () => void {
  if (signal.aborted) {
    callback();
    return () => undefined;
  }
  let callbacks = waiters.get(signal);
  if (!callbacks) {
    const created = new Set<() => void>();
    waiters.set(signal, created);
    signal.addEventListener(
      'abort',
      () => {
        waiters.delete(signal);
        for (const call of created) call();
      },
      { once: true }
    );
    callbacks = created;
  }
  const own = () => callback();
  callbacks.add(own);
  const registered = callbacks;
  return () => void registered.delete(own);
}

/** The error a wait rejects with when its signal aborts: the signal's reason if it is an Error. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(`aborted${reason === undefined ? '' : `: ${String(reason)}`}`);
}
