/**
 * Throttling over MQTT does not come as a status: the hub closes connections (429002) or holds the CONNACK back
 * (traffic shaping). One drop is noise; several within a short window are the hub shedding load. This detector
 * counts those signals and, when they cluster, pauses the hub's twin and connection budgets for everyone (at
 * least 10 s, doubling while it repeats; a single success does not end it).
 */

export interface ThrottleSignalOptions {
  /** Signals within `windowMs` that count as throttling. @default 3 */
  threshold?: number;
  /** @default 10000 */
  windowMs?: number;
  /** A CONNACK slower than this is a signal. @default 5000 */
  slowConnackMs?: number;
}

export class ThrottleSignals {
  private readonly threshold: number;
  private readonly windowMs: number;
  readonly slowConnackMs: number;
  private events: number[] = [];

  constructor(
    options: ThrottleSignalOptions,
    /** Called when signals cluster; returns the pause applied, in ms. */
    private readonly onThrottled: () => number,
    private readonly now: () => number = Date.now
  ) {
    this.threshold = options.threshold ?? 3;
    this.windowMs = options.windowMs ?? 10_000;
    this.slowConnackMs = options.slowConnackMs ?? 5_000;
  }

  /** Records a close by the hub or a slow CONNACK; returns the pause when this made the signals a cluster. */
  signal(): number | undefined {
    const now = this.now();
    this.events = this.events.filter((t) => now - t < this.windowMs);
    this.events.push(now);
    if (this.events.length < this.threshold) return undefined;
    this.events = [];
    return this.onThrottled();
  }

  /** Records a CONNACK time; a slow one is a signal. */
  connack(ms: number): number | undefined {
    return ms >= this.slowConnackMs ? this.signal() : undefined;
  }
}
