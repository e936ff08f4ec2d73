/** A target that remembers what it received and can be told to fail chosen SIMs: the publishing rule's witness. */
import type { SimEvent, SimPatch } from '../../record';
import type { EventItem, PublishItem, PublishOutcome, Target } from '../../targets/target';

export class RecordingTarget implements Target {
  /** Every patch received, per ICCID, in order. */
  readonly received = new Map<string, { patch: SimPatch; full: boolean; deviceId: string }[]>();
  /** ICCIDs to reject permanently, or to throttle, until removed. */
  readonly rejected = new Set<string>();
  readonly throttled = new Set<string>();
  /** How many times each ICCID was answered as throttled. */
  readonly throttledAnswers = new Map<string, number>();
  calls = 0;
  /** Every connectivity event received, in order (duplicates included), with the device id it was sent for. */
  readonly events: (SimEvent & { deviceId: string })[] = [];
  /** Fail every events call as retryable while true. */
  eventsDown = false;
  /** Delay of each publish call, to stretch a cycle out in time. */
  delayMs = 0;

  constructor(readonly name: string) {}

  async publish(items: PublishItem[]): Promise<PublishOutcome[]> {
    this.calls++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    return items.map((item) => {
      if (this.rejected.has(item.iccid)) return { iccid: item.iccid, status: 'permanent', reason: 'rejected by test' };
      if (this.throttled.has(item.iccid)) {
        this.throttledAnswers.set(item.iccid, (this.throttledAnswers.get(item.iccid) ?? 0) + 1);
        return { iccid: item.iccid, status: 'throttled', retryAfterMs: 100, reason: 'throttled by test' };
      }
      const list = this.received.get(item.iccid) ?? [];
      list.push({ patch: item.patch, full: item.full, deviceId: item.deviceId });
      this.received.set(item.iccid, list);
      return { iccid: item.iccid, status: 'ok' };
    });
  }

  async publishEvents(items: EventItem[]): Promise<PublishOutcome[]> {
    if (this.eventsDown) {
      return items.map((i) => ({ iccid: i.iccid, status: 'retryable', reason: 'events down by test' }));
    }
    for (const item of items) for (const e of item.events) this.events.push({ ...e, deviceId: item.deviceId });
    return items.map((i) => ({ iccid: i.iccid, status: 'ok' }));
  }

  /** Events received since the last call; resets. */
  drainEvents(): (SimEvent & { deviceId: string })[] {
    return this.events.splice(0);
  }

  /** Patches received since the last call, per ICCID; resets. */
  drain(): Map<string, SimPatch[]> {
    const out = new Map([...this.received].map(([iccid, list]) => [iccid, list.map((r) => r.patch)]));
    this.received.clear();
    return out;
  }

  async close(): Promise<void> {}
}
