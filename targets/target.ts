import type { SimEvent, SimPatch, SimRecord } from '../record';

/**
 * Whether the connector still keeps a SIM's state at the target up to date: `off` once the SIM left the group,
 * `on` from its first publish. Sent only to targets with `leftGroupNotice` (targets/schema.ts).
 */
export interface MonitoringKey {
  monitoring?: 'on' | 'off';
}

/** One SIM's change, ready to send. */
export interface PublishItem {
  iccid: string;
  /** The cloud identity (device id, thing name); defaults to the ICCID. */
  deviceId: string;
  /**
   * Changed keys only; on first publish, every present key. `null` deletes a key. `monitoring` with
   * `leftGroupNotice`: `on` on a first publish; `{monitoring: "off"}` alone once the SIM left the group.
   */
  patch: SimPatch & MonitoringKey;
  /** True when this is the SIM's first publish to this target (the patch holds the full record). */
  full: boolean;
  /**
   * The SIM's whole record as the target holds it once this patch is applied (what a state topic carries); once
   * the SIM left the group (`leftGroupNotice`), only its `iccid` and `monitoring: "off"`.
   */
  state: SimRecord & MonitoringKey;
}

/** One SIM's connectivity events, oldest first, ready to send (record/events.ts). */
export interface EventItem {
  iccid: string;
  /** The cloud identity, from the target's `deviceIdTemplate` and the SIM's identity when the event was seen. */
  deviceId: string;
  events: SimEvent[];
}

/** The result for one SIM. Every item passed to `publish` gets exactly one outcome. */
export type PublishOutcome =
  | { iccid: string; status: 'ok' }
  /** Transient: network error, 5xx, dropped connection. Retry later. */
  | { iccid: string; status: 'retryable'; reason: string }
  /**
   * The cloud asked us to slow down; retry after the delay. `pausedUntil` (epoch ms): the whole target is paused
   * until then (e.g. its daily message quota is spent until 00:00 UTC); the publish step stops for this cycle,
   * the changes stay pending, and status and metrics show the pause. `pauseCause`: a short fixed name of what is
   * spent, the `cause` label of the pause metric (e.g. `hub-quota`: the cloud's own quota; `daily-budget`: the
   * connector's budget for it); the `reason` says it in words.
   */
  | {
      iccid: string;
      status: 'throttled';
      retryAfterMs: number;
      reason: string;
      pausedUntil?: number;
      pauseCause?: string;
    }
  /** Will not succeed by retrying: bad request, too large, forbidden. Recorded and skipped. */
  | { iccid: string; status: 'permanent'; reason: string };

/** Who the items belong to. Optional so that callers written before it existed keep compiling. */
export interface PublishContext {
  /** The Kite monitoring group being synced (used by topic templates and webhook bodies). */
  group: string;
}

/**
 * A publishing destination. Implementations bound their own concurrency and rate, never throw for a
 * per-SIM failure (they report it as an outcome), and never put secrets in a `reason`.
 */
export interface Target {
  /** The configured instance name, e.g. `azure` or `aws-eu`. */
  readonly name: string;
  /**
   * SIMs per second this target takes when it is the bottleneck (its tightest rate budget), if it has one. The
   * publish activity sizes its batches from it, so that one batch lasts a few seconds. @default unbounded
   */
  readonly itemsPerSecond?: number;
  publish(items: PublishItem[], signal?: AbortSignal, context?: PublishContext): Promise<PublishOutcome[]>;
  /**
   * Checks the configuration against the peer once, at worker start (e.g. an endpoint of another region);
   * throws ConfigError naming the setting. @default none
   */
  ready?(signal?: AbortSignal): Promise<void>;
  /**
   * Sends SIMs' connectivity events as events, never as state (one outcome per item, all of a SIM's events
   * acknowledged or none). A target without it drops the events queued for it.
   */
  publishEvents?(items: EventItem[], signal?: AbortSignal, context?: PublishContext): Promise<PublishOutcome[]>;
  close(): Promise<void>;
}

/** The outcome for an item that was not attempted because the caller cancelled. */
export function abortedOutcome(item: Pick<PublishItem, 'iccid'>): PublishOutcome {
  return { iccid: item.iccid, status: 'retryable', reason: 'publish cancelled before this SIM was sent' };
}
