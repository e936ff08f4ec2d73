import { readFileSync } from 'node:fs';
import path from 'node:path';
import { connectivityHints, isInGroup, mapSim, simHash, type KitePresence, type KiteSim } from '../../kite';
import { RECORD_KEYS } from '../../record';

const seed = JSON.parse(readFileSync(path.join(__dirname, '../fixtures/kite/seed-sim.json'), 'utf8')) as {
  sim: KiteSim;
  presence: KitePresence;
  record: Record<string, unknown>;
};
const clone = <T>(v: T): T => structuredClone(v);

function reasonFor(change: (sim: KiteSim, presence: KitePresence) => void): string | undefined {
  const sim = clone(seed.sim);
  const presence = clone(seed.presence);
  change(sim, presence);
  const result = mapSim(sim, presence);
  return result.ok ? undefined : result.reason;
}

describe('mapSim', () => {
  it("turns the seed's Kite SIM into exactly the seed's example record", () => {
    const result = mapSim(seed.sim, seed.presence);
    expect(result).toEqual({ ok: true, record: seed.record });
    if (!result.ok) return;
    expect(Object.keys(result.record)).toEqual([...RECORD_KEYS]); // all 19 keys, contract order
  });

  it('leaves absent values out and takes apn and ip from the SIM when presence has none', () => {
    const sim = clone(seed.sim);
    delete sim.automaticLocation;
    delete sim.imei;
    sim.alias = '';
    sim.ip = '10.0.0.7';
    const result = mapSim(sim, { level: 'GSM', cause: 'UNKNOWN_SUBSCRIBER', timeStamp: '2019-06-18T09:36:01.250Z' });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.record).not.toHaveProperty('Latitude');
    expect(result.record).not.toHaveProperty('imei');
    expect(result.record).not.toHaveProperty('alias');
    expect(result.record).toMatchObject({
      apn: sim.apn,
      ip: '10.0.0.7',
      presenceLevel: 'GSM',
      timestamp: 1560850561250,
    });
  });

  it('without presence publishes no presence keys', () => {
    const result = mapSim(seed.sim);
    expect(result.ok && Object.keys(result.record)).toEqual(
      RECORD_KEYS.filter((k) => !['ip', 'presenceLevel', 'event', 'timestamp'].includes(k))
    );
  });

  it('accepts numeric strings, converts bytes to whole kB and honours date offsets', () => {
    const sim = clone(seed.sim);
    sim.consumptionDaily = { voice: { value: '61' }, sms: { value: 4 }, data: { value: '1535' } };
    sim.automaticLocation = { coordinates: { latitude: '40.4168', longitude: '-3.7038' } };
    sim.activationDate = '2018-05-10T12:13:18+02:00';
    const result = mapSim(sim, seed.presence);
    expect(result.ok && result.record).toMatchObject({
      dailyVoice: 61,
      dailySMS: 4,
      dailyData: 1, // 1535 / 1024 = 1.499 → 1
      Latitude: 40.4168,
      Longitude: -3.7038,
      activationDate: 1525947198000,
    });
    sim.consumptionDaily.data = { value: 1536 };
    expect(mapSim(sim).ok && (mapSim(sim) as { record: { dailyData: number } }).record.dailyData).toBe(2);
  });

  it.each([
    ['no-icc', (s: KiteSim) => delete s.icc],
    ['bad-icc', (s: KiteSim) => (s.icc = '8952O31422900140636')],
    ['bad-icc', (s: KiteSim) => ((s as Record<string, unknown>).icc = 895203142290014)],
    ['bad-imei', (s: KiteSim) => (s.imei = '86378101095723X')],
    ['bad-type:imei', (s: KiteSim) => ((s as Record<string, unknown>).imei = 863781010957232)],
    ['bad-type:alias', (s: KiteSim) => ((s as Record<string, unknown>).alias = { name: 'x' })],
    ['too-long:alias', (s: KiteSim) => (s.alias = 'x'.repeat(257))],
    ['bad-date:activationDate', (s: KiteSim) => (s.activationDate = '10/05/2018')],
    ['bad-date:activationDate', (s: KiteSim) => (s.activationDate = '2018-02-30T10:13:18Z')],
    ['bad-date:timeStamp', (_: KiteSim, p: KitePresence) => (p.timeStamp = 'yesterday')],
    ['bad-coords', (s: KiteSim) => (s.automaticLocation = { coordinates: { latitude: 'NaN', longitude: 1 } })],
    ['bad-coords', (s: KiteSim) => (s.automaticLocation = { coordinates: { latitude: 91, longitude: 1 } })],
    ['bad-coords', (s: KiteSim) => (s.automaticLocation = { coordinates: { latitude: 10 } })],
    ['bad-number:consumptionDaily.data', (s: KiteSim) => (s.consumptionDaily!.data = { value: '12kB' })],
    ['bad-number:consumptionDaily.voice', (s: KiteSim) => (s.consumptionDaily!.voice = { value: -1 })],
    ['implausible:consumptionDaily.data', (s: KiteSim) => (s.consumptionDaily!.data = { value: 1e300 })],
    ['implausible:consumptionDaily.data', (s: KiteSim) => (s.consumptionDaily!.data = { value: '1e300' })],
    ['implausible:consumptionDaily.voice', (s: KiteSim) => (s.consumptionDaily!.voice = { value: 86_400 * 365 })],
    ['implausible:consumptionDaily.sms', (s: KiteSim) => (s.consumptionDaily!.sms = { value: 5e9 })],
    ['not-integer:consumptionDaily.sms', (s: KiteSim) => (s.consumptionDaily!.sms = { value: 2.5 })],
    ['not-integer:consumptionDaily.voice', (s: KiteSim) => (s.consumptionDaily!.voice = { value: '61.25' })],
    ['not-integer:consumptionDaily.data', (s: KiteSim) => (s.consumptionDaily!.data = { value: 1024.5 })],
    ['bad-ip', (_: KiteSim, p: KitePresence) => (p.ip = '300.1.1.1')],
    ['bad-type:presence.level', (_: KiteSim, p: KitePresence) => ((p as Record<string, unknown>).level = 3)],
  ])('rejects with %s', (reason, change) => {
    expect(reasonFor(change)).toBe(reason);
  });

  it('rejects non-objects without throwing', () => {
    expect(mapSim(null)).toEqual({ ok: false, reason: 'not-object' });
    expect(mapSim('x')).toEqual({ ok: false, reason: 'not-object' });
    expect(mapSim(seed.sim, 'x' as unknown as KitePresence)).toEqual({ ok: false, reason: 'bad-type:presence' });
  });
});

describe('connectivityHints', () => {
  it('is stable for the same connectivity and changes with gprsStatus, ipStatus, ip or apn', () => {
    const base = connectivityHints(seed.sim);
    expect(connectivityHints(clone(seed.sim))).toBe(base);
    expect(base).toMatch(/^[0-9a-z]{1,11}$/); // short: stored per SIM
    const other = clone(seed.sim);
    other.alias = 'changed';
    other.consumptionDaily = {};
    expect(connectivityHints(other)).toBe(base);
    const variants: Array<(s: KiteSim) => void> = [
      (s) => (s.gprsStatus = { ...s.gprsStatus, status: 2 }),
      (s) => (s.ipStatus = { ...s.ipStatus, lastConnStart: '2019-06-18T10:00:00Z' }),
      (s) => (s.ip = '10.1.2.3'),
      (s) => (s.apn = 'other.apn'),
    ];
    for (const change of variants) {
      const sim = clone(seed.sim);
      change(sim);
      expect(connectivityHints(sim)).not.toBe(base);
    }
  });
});

describe('simHash', () => {
  it('is 11 characters, the same for an equal entry, and changes with any field', () => {
    const base = simHash(seed.sim);
    expect(base).toMatch(/^[0-9A-Za-z_-]{11}$/); // short: stored per SIM in conn
    expect(simHash(clone(seed.sim))).toBe(base);
    const variants: Array<(s: KiteSim) => void> = [
      (s) => (s.alias = `${s.alias ?? ''}x`),
      (s) => (s.consumptionDaily = { ...s.consumptionDaily, data: { ...(s.consumptionDaily?.data ?? {}), value: 1 } }),
      (s) => (s.lifeCycleStatus = 'TEST'),
    ];
    const hashes = variants.map((change) => {
      const sim = clone(seed.sim);
      change(sim);
      return simHash(sim);
    });
    expect(new Set([base, ...hashes]).size).toBe(1 + variants.length);
  });
});

describe('isInGroup', () => {
  it('uses supervisionGroup by default', () => {
    expect(isInGroup(seed.sim, 'group-1')).toBe(true);
    expect(isInGroup(seed.sim, 'group-2', { type: 'supervisionGroup' })).toBe(false);
    expect(isInGroup({ ...seed.sim, supervisionGroup: undefined }, 'group-1')).toBe(false);
  });

  it('re-checks search parameters that name SIM fields and trusts the others to Kite', () => {
    const sim = { ...seed.sim, customField1: 'fleet-a' };
    expect(isInGroup(sim, 'g', { type: 'search', params: { customField_1: 'fleet-a', presence: 'ip' } })).toBe(true);
    expect(isInGroup(sim, 'g', { type: 'search', params: { customField_1: 'fleet-b' } })).toBe(false);
    expect(isInGroup(sim, 'g', { type: 'search', params: { lifeCycleState: 'ACTIVATION_READY' } })).toBe(true);
  });
});
