/**
 * The simulator's clock: advancing it plays random events on random SIMs, at rates per SIM and hour, all drawn
 * from one stream of the seed, so the same seed and the same advances give the same inventory. The cost is
 * proportional to the number of events, not to the inventory size (except at midnight UTC, when daily counters
 * reset, and on the 1st of a month for monthly ones).
 *
 * Every presence change is a data session starting or ending, and so also changes `gprsStatus`/`ipStatus`: the
 * connector's rule "re-fetch presence only when the connectivity hints changed" sees all of them.
 */
import { TRAFFIC_STATES, TRANSITIONS, MODULES } from './catalog';
import { IN_SESSION, newImei, newIp, round6, type Inventory } from './inventory';
import { hash32, Rng } from './random';
import { LIFE_CYCLE_STATES } from '../kite';

/** Events per SIM and hour of simulated time. */
export interface EvolutionRates {
  /** A data session starts (or, when one is open, ends). @default 0.5 */
  session: number;
  /** A burst of data traffic during a session. @default 4 */
  data: number;
  /** An SMS. @default 0.1 */
  sms: number;
  /** A voice call. @default 0.03 */
  voice: number;
  /** The network location moves a little. @default 0.2 */
  drift: number;
  /** The SIM moves to another device (new IMEI). @default 0.0005 */
  imeiChange: number;
  /** A life-cycle move along Kite's allowed transitions. @default 0.001 */
  lifeCycle: number;
}

export const DEFAULT_RATES: EvolutionRates = {
  session: 0.5,
  data: 4,
  sms: 0.1,
  voice: 0.03,
  drift: 0.2,
  imeiChange: 0.0005,
  lifeCycle: 0.001,
};

const DAY = 86_400_000;
const MAX_STEP = 60_000;
const traffic = (inv: Inventory, i: number) => TRAFFIC_STATES.has(LIFE_CYCLE_STATES[inv.life[i]]);

export function startSession(inv: Inventory, i: number, t: number, rng: Rng): void {
  inv.level[i] = rng.chance(0.5) ? 2 : 3;
  inv.cause[i] = 2; // ACCOUNTING_RADIUS_START
  inv.presenceTs[i] = inv.connStart[i] = t;
  inv.ip[i] = newIp(rng);
  if (inv.visited[i] === 255) inv.visited[i] = 0;
  if (Number.isNaN(inv.lat[i]) && rng.chance(0.85)) inv.placeNear(i, rng);
  // "Activation ready → Activated after first session" (Kite's life-cycle diagram)
  if (LIFE_CYCLE_STATES[inv.life[i]] === 'ACTIVATION_READY') setLifeCycle(inv, i, 'ACTIVE', t);
  inv.touch(i);
}

export function endSession(inv: Inventory, i: number, t: number): void {
  inv.level[i] = 1; // GSM: still camped, no data session
  inv.cause[i] = 3; // ACCOUNTING_RADIUS_STOP (assumed name)
  inv.presenceTs[i] = inv.connStop[i] = t;
  inv.ip[i] = 0;
  inv.touch(i);
}

/** Moves a SIM to `state`; a state without traffic closes an open data session. */
export function setLifeCycle(inv: Inventory, i: number, state: string, t: number): void {
  inv.life[i] = LIFE_CYCLE_STATES.indexOf(state as never);
  inv.lastStateChange[i] = t;
  if (state === 'ACTIVE' && Number.isNaN(inv.activation[i])) inv.activation[i] = t;
  if (!TRAFFIC_STATES.has(state) && inv.level[i] >= IN_SESSION) endSession(inv, i, t);
  inv.touch(i);
}

export class Evolution {
  private readonly rng: Rng;
  private readonly rates: EvolutionRates;
  private readonly events: Array<[keyof EvolutionRates, (i: number, t: number) => void]>;

  constructor(
    private readonly inv: Inventory,
    seed: number,
    rates: Partial<EvolutionRates> = {}
  ) {
    this.rng = new Rng(hash32(seed, 0x636c6f63));
    this.rates = { ...DEFAULT_RATES, ...rates };
    this.events = [
      ['session', (i, t) => this.session(i, t)],
      ['data', (i) => this.consume(i, 'data', Math.round(10 ** (2.3 + this.rng.next() * 3)), true)],
      ['sms', (i) => this.consume(i, 'sms', 1, false)],
      ['voice', (i) => this.consume(i, 'voice', this.rng.int(5, 300), false)],
      ['drift', (i, t) => this.drift(i, t)],
      ['imeiChange', (i, t) => this.imeiChange(i, t)],
      ['lifeCycle', (i, t) => this.lifeCycle(i, t)],
    ];
  }

  /** Advances the simulated time by `ms`, in steps of at most a minute that stop at each midnight UTC. */
  advance(ms: number): void {
    let remaining = Math.max(0, Math.floor(ms));
    while (remaining > 0) {
      const midnight = (Math.floor(this.inv.now / DAY) + 1) * DAY;
      const step = Math.min(remaining, MAX_STEP, midnight - this.inv.now);
      this.step(this.inv.now, step);
      this.inv.now += step;
      remaining -= step;
      if (this.inv.now === midnight) this.resetCounters();
    }
  }

  private step(start: number, dt: number): void {
    const n = this.inv.size;
    if (n === 0) return;
    for (const [kind, apply] of this.events) {
      const count = this.rng.count((n * this.rates[kind] * dt) / 3_600_000);
      for (let k = 0; k < count; k++) {
        const i = this.rng.int(0, n - 1);
        apply(i, Math.floor((start + this.rng.next() * dt) / 1000) * 1000);
      }
    }
  }

  private session(i: number, at: number): void {
    if (!traffic(this.inv, i)) return;
    const t = Math.max(at, this.inv.presenceTs[i] + 1000); // presence time never goes backwards
    if (this.inv.level[i] >= IN_SESSION) endSession(this.inv, i, t);
    else startSession(this.inv, i, t, this.rng);
  }

  private consume(i: number, kind: 'data' | 'sms' | 'voice', amount: number, needsSession: boolean): void {
    if (!traffic(this.inv, i) || this.inv.visited[i] === 255) return;
    if (needsSession && this.inv.level[i] < IN_SESSION) return;
    this.inv.daily[kind][i] += amount;
    this.inv.monthly[kind][i] += amount;
    this.inv.touch(i);
  }

  private drift(i: number, t: number): void {
    if (Number.isNaN(this.inv.lat[i])) return;
    this.inv.lat[i] = round6(Math.max(-89.9, Math.min(89.9, this.inv.lat[i] + (this.rng.next() - 0.5) * 0.01)));
    this.inv.lon[i] = round6(Math.max(-179.9, Math.min(179.9, this.inv.lon[i] + (this.rng.next() - 0.5) * 0.01)));
    this.inv.locTs[i] = t;
    this.inv.touch(i);
  }

  private imeiChange(i: number, t: number): void {
    if (this.inv.module[i] === 255) return;
    if (this.rng.chance(0.2)) this.inv.module[i] = this.rng.int(0, MODULES.length - 1);
    this.inv.imei[i] = newImei(this.rng, this.inv.module[i]);
    this.inv.imeiChange[i] = t;
    this.inv.touch(i);
  }

  private lifeCycle(i: number, t: number): void {
    const next = TRANSITIONS[LIFE_CYCLE_STATES[this.inv.life[i]]];
    if (next.length) setLifeCycle(this.inv, i, this.rng.pick(next), t);
  }

  private resetCounters(): void {
    const monthStart = new Date(this.inv.now).getUTCDate() === 1;
    const { daily, monthly } = this.inv;
    for (let i = 0; i < this.inv.size; i++) {
      const used =
        daily.voice[i] +
        daily.sms[i] +
        daily.data[i] +
        (monthStart ? monthly.voice[i] + monthly.sms[i] + monthly.data[i] : 0);
      if (!used) continue;
      daily.voice[i] = daily.sms[i] = daily.data[i] = 0;
      if (monthStart) monthly.voice[i] = monthly.sms[i] = monthly.data[i] = 0;
      this.inv.touch(i);
    }
  }
}
