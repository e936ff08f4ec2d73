/**
 * A Kite inventory held in memory, behind the same KiteSource seam the fetch activity uses with the real client,
 * and mapped by the real mapping. For tests of the publishing rule, where what matters is what changed in Kite.
 */
import type { KiteSource } from '../../activities/kite-source';
import {
  splitListAnswer,
  type GroupFilter,
  type KiteEntries,
  type KitePage,
  type KitePresence,
  type KiteSim,
} from '../../kite';

export class MemoryKite implements KiteSource {
  readonly sims = new Map<string, KiteSim>();
  readonly presences = new Map<string, KitePresence>();
  /** ICCs whose presence was read, in order. */
  readonly presenceReads: string[] = [];

  /** With `raw` pages: how many entries the fetch parsed (KiteEntries.sim on an entry not parsed before). */
  parsed = 0;

  /**
   * `raw`: pages come as the Kite client gives them, JSON bytes split into entries parsed on demand (entries.ts).
   * @default plain parsed pages
   */
  constructor(
    private readonly pageSize = 100,
    private readonly options: { raw?: boolean } = {}
  ) {}

  async *pages(_group: string, fromIndex: number): AsyncIterable<KitePage> {
    const all = [...this.sims.values()];
    for (let start = fromIndex; start < all.length || start === 0; start += this.pageSize) {
      const sims = all.slice(start, start + this.pageSize);
      const last = start + this.pageSize >= all.length;
      const entries = this.options.raw ? this.rawEntries(sims) : undefined;
      yield { startIndex: start, nextIndex: start + sims.length, sims, entries, last };
      if (last) return;
    }
  }

  private rawEntries(sims: KiteSim[]): KiteEntries {
    const entries = splitListAnswer(Buffer.from(JSON.stringify({ subscriptionData: sims })), 'GET sim')!;
    const parsed = new Set<number>();
    return {
      ...entries,
      sim: (i) => {
        if (!parsed.has(i)) {
          parsed.add(i);
          this.parsed++;
        }
        return entries.sim(i);
      },
    };
  }

  async presence(icc: string): Promise<KitePresence | undefined> {
    this.presenceReads.push(icc);
    return this.presences.get(icc);
  }

  filterOf(): GroupFilter {
    return { type: 'supervisionGroup' };
  }

  /** Adds `count` SIMs to `group`, numbered from `first`, each with a presence record. */
  addSims(group: string, count: number, first = 0): string[] {
    const iccs: string[] = [];
    for (let n = first; n < first + count; n++) {
      const icc = `8934071100${String(n).padStart(10, '0')}`;
      this.sims.set(icc, exampleSim(icc, group, n));
      this.presences.set(icc, { level: 'GPRS', timeStamp: '2026-11-26T10:00:00Z', cause: 'ACCOUNTING_RADIUS_START' });
      iccs.push(icc);
    }
    return iccs;
  }

  update(icc: string, change: Partial<KiteSim>): void {
    this.sims.set(icc, { ...this.sims.get(icc)!, ...change });
  }
}

export function exampleSim(icc: string, group: string, n: number): KiteSim {
  return {
    icc,
    alias: `sensor-${n}`,
    imei: '863781010957232',
    supervisionGroup: group,
    lifeCycleStatus: 'ACTIVE',
    activationDate: '2026-01-15T08:00:00Z',
    country: 'ES',
    operator: 'Telefonica Moviles España',
    apn: 'm2m.movistar.es',
    ip: `10.0.${(n >> 8) & 255}.${n & 255}`,
    gprsStatus: { status: 1 },
    ipStatus: { status: 1 },
    commModuleManufacturer: 'Quectel',
    commModuleModel: 'BG96',
    automaticLocation: { coordinates: { latitude: 40.4168, longitude: -3.7038 } },
    consumptionDaily: { voice: { value: 0 }, sms: { value: 2 }, data: { value: 2048 } },
  };
}
