/**
 * A Kite inventory held in memory, behind the same KiteSource seam the fetch activity uses with the real client,
 * and mapped by the real mapping. For tests of the publishing rule, where what matters is what changed in Kite.
 */
import type { KitePage, KiteSource } from '../../activities/kite-source';
import { connectivityHints, isInGroup, mapSim } from '../../kite/mapping';
import type { KitePresence, KiteSim } from '../../kite/types';

export class MemoryKite implements KiteSource<KiteSim, KitePresence> {
  readonly sims = new Map<string, KiteSim>();
  readonly presences = new Map<string, KitePresence>();
  /** ICCs whose presence was read, in order. */
  readonly presenceReads: string[] = [];

  constructor(private readonly pageSize = 100) {}

  async *pages(_group: string, fromIndex: number): AsyncIterable<KitePage<KiteSim>> {
    const all = [...this.sims.values()];
    for (let start = fromIndex; start < all.length || start === 0; start += this.pageSize) {
      yield { startIndex: start, nextIndex: start + this.pageSize, sims: all.slice(start, start + this.pageSize) };
      if (start + this.pageSize >= all.length) return;
    }
  }

  async presence(icc: string): Promise<KitePresence | undefined> {
    this.presenceReads.push(icc);
    return this.presences.get(icc);
  }

  icc(sim: KiteSim): string | undefined {
    return typeof sim.icc === 'string' && /^\d{18,22}$/.test(sim.icc) ? sim.icc : undefined;
  }

  inGroup(sim: KiteSim, group: string): boolean {
    return isInGroup(sim, group);
  }

  hints(sim: KiteSim): string {
    return connectivityHints(sim);
  }

  map(sim: KiteSim, presence: KitePresence | undefined) {
    return mapSim(sim, presence);
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
