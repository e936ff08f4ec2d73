/**
 * Connectivity events: what a SIM's change means, derived from what the connector saw of it before and what it
 * sees now. Published per target as events (an Azure device-to-cloud message, an AWS IoT or MQTT message on an
 * events topic, a webhook `events` array), never as twin or shadow state. Pure and import-free: the workflow's
 * validator uses `eventPolicyError`; the diff keeps each SIM's `EventBaseline` in Redis.
 */
import type { SimRecord } from './record';

export const EVENT_TYPES = [
  'imeiChanged',
  'presenceLost',
  'presenceRestored',
  'operatorChanged',
  'countryChanged',
  'lifeCycleChanged',
  'usageSpike',
  'joinedGroup',
  'leftGroup',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/** One event as every target receives it (the webhook's `events` items, the MQTT/AWS/Azure message body). */
export interface SimEvent {
  /** Stable across re-deliveries: a consumer drops an id it already handled (delivery is at least once). */
  id: string;
  type: EventType;
  group: string;
  iccid: string;
  /** The SIM's alias and IMEI when the event was seen (what `deviceIdTemplate` may use). */
  alias?: string;
  imei?: string;
  /**
   * The value before and after: the IMEI, presence level, operator, country or life-cycle state; for
   * `usageSpike` the baseline and today's `dailyData` (kB); for `joinedGroup`/`leftGroup` null and the group.
   */
  before: string | number | null;
  after: string | number | null;
  /** When the connector saw the change, epoch ms. */
  at: number;
}

/** A group's event switches and the spike rule. Absent fields take their defaults. */
export interface EventPolicy {
  /** Event types emitted for the group; empty turns events off. @default [] (off) */
  types?: EventType[];
  /** `usageSpike` when today's `dailyData` exceeds this many times the SIM's baseline. @default 5 */
  usageSpikeFactor?: number;
  /** Days of history (daily resets seen) before a SIM's baseline counts. @default 3 */
  usageSpikeMinDays?: number;
  /** Never a spike below this much data in a day, in kB (a quiet SIM's baseline is near 0). @default 10240 */
  usageSpikeMinKb?: number;
}

export const EVENT_DEFAULTS = { usageSpikeFactor: 5, usageSpikeMinDays: 3, usageSpikeMinKb: 10_240 } as const;

/** Days the spike baseline averages over: a running mean up to this many days, then a moving one. */
const BASELINE_DAYS = 7;

/**
 * What the connector remembers of a SIM to see its events: one short JSON per SIM. `i` IMEI, `p` presence level,
 * `o` operator, `c` country, `l` life-cycle state, `d` today's `dailyData` so far, `m` the baseline (mean daily
 * data of the last days, kB), `n` days in it, `s` 1 once today's spike was reported.
 */
export interface EventBaseline {
  i?: string;
  p?: string;
  o?: string;
  c?: string;
  l?: string;
  d?: number;
  m?: number;
  n?: number;
  s?: 1;
}

/** An event before it gets its id and the SIM's identity. */
export type DetectedEvent = Pick<SimEvent, 'type' | 'before' | 'after'>;

/** Attached to the network in any way (GSM, GPRS, IP reachability); `unknown` or absent is not. */
function present(level: string | undefined): boolean {
  return level !== undefined && level !== 'unknown';
}

/**
 * The events of one SIM of `group` from its baseline (undefined: not seen before) to `next`, and its new
 * baseline. `joined` is false on a group's first cycle with events, whose SIMs are not joining but were there.
 */
export function detectEvents(
  baseline: EventBaseline | undefined,
  next: SimRecord,
  policy: EventPolicy,
  { group, joined }: { group: string; joined: boolean }
): { events: DetectedEvent[]; baseline: EventBaseline } {
  const on = new Set(policy.types ?? []);
  const events: DetectedEvent[] = [];
  const emit = (type: EventType, before: string | number | null, after: string | number | null) => {
    if (on.has(type)) events.push({ type, before, after });
  };
  const updated = nextBaseline(baseline, next);
  if (!baseline) {
    if (joined) emit('joinedGroup', null, group);
  } else {
    const changed = (a: string | undefined, b: string | undefined) => a !== undefined && b !== undefined && a !== b;
    if (changed(baseline.i, next.imei)) emit('imeiChanged', baseline.i!, next.imei!);
    if (present(baseline.p) && !present(next.presenceLevel))
      emit('presenceLost', baseline.p!, next.presenceLevel ?? null);
    if (baseline.p !== undefined && !present(baseline.p) && present(next.presenceLevel)) {
      emit('presenceRestored', baseline.p, next.presenceLevel!);
    }
    if (changed(baseline.o, next.operator)) emit('operatorChanged', baseline.o!, next.operator!);
    if (changed(baseline.c, next.country)) emit('countryChanged', baseline.c!, next.country!);
    if (changed(baseline.l, next.lifeCycleStatus)) emit('lifeCycleChanged', baseline.l!, next.lifeCycleStatus!);
    const spike = usageSpike(updated, next.dailyData, policy);
    if (spike) {
      emit('usageSpike', Math.round(updated.m!), next.dailyData!);
      updated.s = 1; // once a day, however long the spike lasts
    }
  }
  return { events, baseline: updated };
}

/** The baseline after seeing `next`: identity and state values, and the daily data folded in at each reset. */
function nextBaseline(baseline: EventBaseline | undefined, next: SimRecord): EventBaseline {
  const b: EventBaseline = {};
  if (next.imei !== undefined) b.i = next.imei;
  // A level that disappeared is remembered as `unknown`, so that its return reads as presenceRestored.
  const level = next.presenceLevel ?? (baseline?.p !== undefined ? 'unknown' : undefined);
  if (level !== undefined) b.p = level;
  if (next.operator !== undefined) b.o = next.operator;
  if (next.country !== undefined) b.c = next.country;
  if (next.lifeCycleStatus !== undefined) b.l = next.lifeCycleStatus;
  let m = baseline?.m;
  let n = baseline?.n ?? 0;
  let s = baseline?.s;
  const today = next.dailyData;
  const lastSeen = baseline?.d;
  if (today !== undefined && lastSeen !== undefined && today < lastSeen) {
    // The daily reset: yesterday's last value joins the baseline, and a new day may spike again.
    n = Math.min(n + 1, BASELINE_DAYS);
    m = m === undefined ? lastSeen : m + (lastSeen - m) / n;
    s = undefined;
  }
  if (today !== undefined) b.d = today;
  else if (lastSeen !== undefined) b.d = lastSeen;
  if (m !== undefined) b.m = Math.round(m * 10) / 10;
  if (n) b.n = n;
  if (s) b.s = s;
  return b;
}

function usageSpike(b: EventBaseline, today: number | undefined, policy: EventPolicy): boolean {
  if (today === undefined || b.s || b.m === undefined) return false;
  const factor = policy.usageSpikeFactor ?? EVENT_DEFAULTS.usageSpikeFactor;
  const minDays = policy.usageSpikeMinDays ?? EVENT_DEFAULTS.usageSpikeMinDays;
  const minKb = policy.usageSpikeMinKb ?? EVENT_DEFAULTS.usageSpikeMinKb;
  return (b.n ?? 0) >= minDays && today >= minKb && today > factor * b.m;
}

/** Why `policy` is invalid, or undefined. Shared by the workflow's validator and the CLI. */
export function eventPolicyError(policy: EventPolicy): string | undefined {
  if (policy.types !== undefined) {
    if (!Array.isArray(policy.types)) return 'types must be a list of event types';
    const unknown = policy.types.find((t) => !(EVENT_TYPES as readonly string[]).includes(t));
    if (unknown !== undefined)
      return `types: ${JSON.stringify(unknown)} is not an event type (${EVENT_TYPES.join(', ')})`;
  }
  const positive = (name: keyof EventPolicy, value: unknown, integer: boolean) =>
    value !== undefined &&
    (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value)))
      ? `${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`
      : undefined;
  return (
    positive('usageSpikeFactor', policy.usageSpikeFactor, false) ??
    positive('usageSpikeMinDays', policy.usageSpikeMinDays, true) ??
    positive('usageSpikeMinKb', policy.usageSpikeMinKb, false)
  );
}
