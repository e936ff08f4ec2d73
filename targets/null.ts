/**
 * A target that publishes nowhere and only counts, for benchmarks and dry runs. Every item succeeds.
 */
import type { NullTargetConfig } from './null-config';
import { sleepUnlessAborted } from '../shared/limits';
import type { EventItem, PublishContext, PublishItem, PublishOutcome, Target } from './target';

export interface NullTargetCounters {
  /** publish() calls. */
  calls: number;
  /** Items (SIMs) received. */
  items: number;
  /** Items that were a SIM's first, full publish. */
  fullItems: number;
  /** Keys across all patches, including `null` deletions. */
  keys: number;
  /** Keys set to `null` (deletions). */
  nullKeys: number;
  /** Items per group, for calls that passed a context. */
  byGroup: Record<string, number>;
  /** Connectivity events received. */
  events: number;
}

export class NullTarget implements Target {
  readonly name: string;
  private counts: NullTargetCounters = emptyCounters();

  constructor(private readonly config: Pick<NullTargetConfig, 'name' | 'latencyMs'>) {
    this.name = config.name;
  }

  async publish(items: PublishItem[], signal?: AbortSignal, context?: PublishContext): Promise<PublishOutcome[]> {
    if (this.config.latencyMs > 0) {
      // A cancelled wait still answers every item, as the contract requires.
      if (!(await sleepUnlessAborted(this.config.latencyMs, signal)))
        return items.map((i) => ({ iccid: i.iccid, status: 'retryable', reason: 'publish cancelled' }));
    }
    this.count(items, context);
    return items.map((i) => ({ iccid: i.iccid, status: 'ok' }));
  }

  async publishEvents(items: EventItem[]): Promise<PublishOutcome[]> {
    for (const item of items) this.counts.events += item.events.length;
    return items.map((i) => ({ iccid: i.iccid, status: 'ok' }));
  }

  private count(items: PublishItem[], context?: PublishContext): void {
    const c = this.counts;
    c.calls++;
    for (const item of items) {
      const values = Object.values(item.patch).filter((v) => v !== undefined);
      c.items++;
      c.fullItems += item.full ? 1 : 0;
      c.keys += values.length;
      c.nullKeys += values.filter((v) => v === null).length;
      if (context) c.byGroup[context.group] = (c.byGroup[context.group] ?? 0) + 1;
    }
  }

  /** A copy of the counters since creation or the last reset. */
  counters(): NullTargetCounters {
    return { ...this.counts, byGroup: { ...this.counts.byGroup } };
  }

  reset(): void {
    this.counts = emptyCounters();
  }

  async close(): Promise<void> {}
}

function emptyCounters(): NullTargetCounters {
  return { calls: 0, items: 0, fullItems: 0, keys: 0, nullKeys: 0, byGroup: {}, events: 0 };
}

export function createNullTarget(config: Pick<NullTargetConfig, 'name' | 'latencyMs'>): NullTarget {
  return new NullTarget(config);
}
