/**
 * What the double enforces per hub, like IoT Hub does: token buckets per operation class sized from the tier
 * table (targets/azure/tiers.ts), a meter of every accepted operation (so tests count what the hub saw, not
 * what the client believes it sent), the daily message quota, per-operation latency, and a movable clock.
 */
import { billedMessages, hubLimits, utcDay, type HubLimits, type HubTier } from '../../targets/azure/tiers';

/** The operation classes IoT Hub throttles separately. */
export type ThrottleClass = 'identity' | 'connection' | 'twinUpdate' | 'twinRead';

/**
 * The double's time for its quota day and throttles: real time plus an offset that tests move (e.g. to the next
 * UTC day). SAS expiry is checked against real time, as the clients sign with it.
 */
export class HubClock {
  offsetMs = 0;

  now(): number {
    return Date.now() + this.offsetMs;
  }
}

/** Refill the hub lets a client run ahead by (see `Bucket.take`). */
const SHAPING_MS = 100;

/** A token bucket: `burst` tokens at most, refilled at `perMs` tokens per millisecond. */
class Bucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly perMs: number,
    readonly burst: number,
    now: number
  ) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + Math.max(0, now - this.last) * this.perMs);
    this.last = now;
  }

  /**
   * Takes `n` tokens now if there are enough, give or take 100 ms of refill: the hub's traffic shaping accepts
   * brief excess, and a client that paces itself exactly on the rate must not be refused for clock rounding.
   */
  take(n: number, now: number): boolean {
    this.refill(now);
    if (this.tokens + SHAPING_MS * this.perMs < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Takes `n` tokens, going into debt; returns how long until they are really there (the shaping queue). */
  queue(n: number, now: number): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil(-this.tokens / this.perMs);
  }
}

/** Latency of one operation: fixed, or uniformly random within `[min, max]`. */
export type Latency = number | [number, number];

export interface HubLimitOptions {
  /** @default 'S1' */
  tier?: HubTier;
  /** @default 1 */
  units?: number;
  /** Override single limits of the tier table (e.g. a tiny `dailyMessages` for a quota test). */
  limits?: Partial<HubLimits>;
  /**
   * Set false for a hub that never throttles (the double's old behaviour, for tests about something else).
   * @default true
   */
  throttle?: boolean;
  /**
   * How throttling shows over MQTT: `close` drops the connection (429002, what the hub does under pressure);
   * `delay` holds the CONNACK or twin response until the operation's budget allows it (traffic shaping).
   * @default 'close'
   */
  mqttThrottle?: 'close' | 'delay';
  /** Added before the hub answers, per operation class. @default none */
  latencyMs?: Partial<Record<ThrottleClass, Latency>>;
}

const PERIOD_MS: Record<ThrottleClass, number> = {
  identity: 60_000,
  connection: 1_000,
  twinUpdate: 1_000,
  twinRead: 1_000,
};

function ratePerPeriod(limits: HubLimits, cls: ThrottleClass): number {
  switch (cls) {
    case 'identity':
      return limits.identityOpsPerMinute;
    case 'connection':
      return limits.newConnectionsPerSecond;
    case 'twinUpdate':
      return limits.twinUpdatesPerSecond;
    case 'twinRead':
      return limits.twinReadsPerSecond;
  }
}

/** The hub's throttles, meter and quota. */
export class HubLimiter {
  readonly limits: HubLimits;
  readonly mqttThrottle: 'close' | 'delay';
  throttleEnabled: boolean;
  /** Accepted operations per class, as timestamps (identity: one per device of a bulk call). */
  readonly accepted: Record<ThrottleClass, number[]> = { identity: [], connection: [], twinUpdate: [], twinRead: [] };
  /** Operations refused or delayed for a throttle, per class. */
  readonly throttled: Record<ThrottleClass, number> = { identity: 0, connection: 0, twinUpdate: 0, twinRead: 0 };
  /** Billed messages since the double started, and today's. */
  billedTotal = 0;
  private billedToday = 0;
  private day: string;
  private readonly buckets: Record<ThrottleClass, Bucket>;
  private readonly latency: Partial<Record<ThrottleClass, Latency>>;

  constructor(
    readonly clock: HubClock,
    options: HubLimitOptions
  ) {
    this.limits = { ...hubLimits(options.tier ?? 'S1', options.units ?? 1), ...options.limits };
    this.mqttThrottle = options.mqttThrottle ?? 'close';
    this.throttleEnabled = options.throttle ?? true;
    this.latency = options.latencyMs ?? {};
    const now = clock.now();
    const bucket = (cls: ThrottleClass) => {
      const rate = ratePerPeriod(this.limits, cls);
      return new Bucket(rate / PERIOD_MS[cls], rate, now);
    };
    this.buckets = {
      identity: bucket('identity'),
      connection: bucket('connection'),
      twinUpdate: bucket('twinUpdate'),
      twinRead: bucket('twinRead'),
    };
    this.day = utcDay(now);
  }

  /** Admits `n` operations of a class now, or refuses them (REST 429, MQTT close). */
  admit(cls: ThrottleClass, n = 1): boolean {
    const now = this.clock.now();
    if (this.throttleEnabled && !this.buckets[cls].take(n, now)) {
      this.throttled[cls] += n;
      return false;
    }
    this.record(cls, n, now);
    return true;
  }

  /** Admits `n` operations after the wait it returns (traffic shaping: the hub queues instead of refusing). */
  admitLater(cls: ThrottleClass, n = 1): number {
    const now = this.clock.now();
    const wait = this.throttleEnabled ? this.buckets[cls].queue(n, now) : 0;
    if (wait > 0) this.throttled[cls] += n;
    this.record(cls, n, now + wait);
    return wait;
  }

  private record(cls: ThrottleClass, n: number, at: number): void {
    for (let i = 0; i < n; i++) this.accepted[cls].push(at);
  }

  /** The most operations of a class the hub accepted within any `windowMs` (sliding over accepted times). */
  maxInWindow(cls: ThrottleClass, windowMs: number): number {
    const times = [...this.accepted[cls]].sort((a, b) => a - b);
    let best = 0;
    for (let lo = 0, hi = 0; hi < times.length; hi++) {
      while (times[hi] - times[lo] >= windowMs) lo++;
      best = Math.max(best, hi - lo + 1);
    }
    return best;
  }

  private rollDay(): void {
    const today = utcDay(this.clock.now());
    if (today !== this.day) {
      this.day = today;
      this.billedToday = 0;
    }
  }

  /** True while today's billed messages have reached the daily quota (403002 IotHubQuotaExceeded). */
  quotaExceeded(): boolean {
    this.rollDay();
    return this.billedToday >= this.limits.dailyMessages;
  }

  /** Bills one device-side operation carrying `bytes`; returns the messages it cost. */
  bill(bytes: number): number {
    this.rollDay();
    const cost = billedMessages(bytes, this.limits.messageChunkBytes);
    this.billedToday += cost;
    this.billedTotal += cost;
    return cost;
  }

  /** Billed messages of the current UTC day. */
  billedMessagesToday(): number {
    this.rollDay();
    return this.billedToday;
  }

  /** The configured latency of one operation of `cls`, drawn now. */
  latencyOf(cls: ThrottleClass): number {
    const l = this.latency[cls];
    if (l === undefined) return 0;
    if (typeof l === 'number') return l;
    return l[0] + Math.random() * (l[1] - l[0]);
  }
}

/** Resolves after `ms` (immediately for 0). */
export function delay(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
