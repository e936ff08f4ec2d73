/** A counting semaphore: at most `size` holders at once, the others wait in arrival order. */
import { abortError, onAbort } from './abort';

interface Waiter {
  grant(): void;
}

export class Semaphore {
  private readonly waiters: Waiter[] = [];
  private free: number;

  constructor(readonly size: number) {
    if (!(Number.isInteger(size) && size >= 1))
      throw new RangeError(`semaphore size must be an integer >= 1, got ${size}`);
    this.free = size;
  }

  /**
   * Waits for a place and returns its release (safe to call twice). Rejects with the signal's reason if it
   * aborts first; the place then goes to the next waiter.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          forget();
          resolve(this.releaser());
        },
      };
      const forget = signal
        ? onAbort(signal, () => {
            const at = this.waiters.indexOf(waiter);
            if (at >= 0) this.waiters.splice(at, 1);
            reject(abortError(signal));
          })
        : () => undefined;
      this.waiters.push(waiter);
    });
  }

  /** Runs `work` holding a place. */
  async run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await work();
    } finally {
      release();
    }
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next.grant();
      else this.free++;
    };
  }
}
