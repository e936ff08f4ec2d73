import { readFileSync } from 'node:fs';
import path from 'node:path';
import { connectivityHints, LIFE_CYCLE_STATES, mapSim, type KitePresence, type KiteSim } from '../../kite';
import { BROKEN_KINDS, luhnValid, type BrokenKind, type KiteSimulator } from '../../simulator';
import { HOME_NETWORKS, MODULES, TRANSITIONS, VISITED_NETWORKS } from '../../simulator/catalog';
import { iso } from '../../simulator/inventory';
import { allSims, clientOf, request, simulator, START } from '../kite/helpers';

const HOUR = 3_600_000;
const snapshot = (sim: KiteSimulator) =>
  sim.control.iccs().map((icc) => ({ sim: sim.control.getSim(icc), presence: sim.control.getPresence(icc) }));

/** States reachable from `from` along Kite's transitions (plus the first-session activation). */
function reachable(from: string): Set<string> {
  const seen = new Set([from]);
  const todo = [from];
  while (todo.length) {
    const s = todo.pop() as string;
    for (const n of [...TRANSITIONS[s], ...(s === 'ACTIVATION_READY' ? ['ACTIVE'] : [])]) {
      if (seen.has(n)) continue;
      seen.add(n);
      todo.push(n);
    }
  }
  return seen;
}

describe('Kite simulator dates', () => {
  it('formats like Date#toISOString to the second, across leap days, year ends and before 1970', () => {
    const dates = ['2024-02-29T23:59:59Z', '2023-12-31T23:59:59Z', '2100-03-01T00:00:00Z', '1969-12-31T12:34:56Z'];
    for (const d of dates) expect(iso(Date.parse(d) + 999)).toBe(d);
    for (let ms = -2e11; ms < 5e12; ms += 7_777_777_777) {
      expect(iso(ms)).toBe(new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z'));
    }
  });
});

describe('Kite simulator data', () => {
  let sim: KiteSimulator;
  let sims: KiteSim[];
  beforeAll(async () => {
    sim = await simulator({ groups: 3, simsPerGroup: 100, ungroupedSims: 20 });
    const client = clientOf(sim);
    sims = await allSims(client);
    client.close();
  });
  afterAll(() => sim.close());

  it('holds N groups x M SIMs plus the ungrouped ones, spread over the list', () => {
    expect(sim.control.groups()).toEqual({ 'group-1': 100, 'group-2': 100, 'group-3': 100 });
    expect(sims).toHaveLength(320);
    expect(sims.filter((s) => s.supervisionGroup === undefined)).toHaveLength(20);
    const firstHundred = new Set(sims.slice(0, 100).map((s) => s.supervisionGroup));
    expect(firstHundred.size).toBeGreaterThan(2);
  });

  it('has realistic identifiers: ICCIDs 19-20 digits from 89 with a Luhn digit, IMEIs of the module TAC', () => {
    const prefixes = HOME_NETWORKS.map((n) => n.iccPrefix);
    for (const s of sims) {
      expect(s.icc).toMatch(/^89\d{17,18}$/);
      expect(luhnValid(s.icc as string)).toBe(true);
      expect(prefixes).toContain((s.icc as string).slice(0, 6));
      expect(s.imsi).toMatch(/^\d{15}$/);
      if (s.imei === undefined) continue;
      expect(s.imei).toMatch(/^\d{15}$/);
      expect(luhnValid(s.imei)).toBe(true);
      expect(MODULES.find((m) => m.model === s.commModuleModel)?.tac).toBe(s.imei.slice(0, 8));
    }
    expect(new Set(sims.map((s) => s.icc)).size).toBe(sims.length);
  });

  it('uses real operators, countries and Kite enumerations, and every SIM maps', () => {
    const operators = VISITED_NETWORKS.map((v) => `${v.operator}/${v.country}`);
    for (const s of sims) {
      if (s.operator !== undefined) expect(operators).toContain(`${s.operator}/${s.country}`);
      expect(LIFE_CYCLE_STATES).toContain(s.lifeCycleStatus);
      expect(mapSim(s, sim.control.getPresence(s.icc as string))).toMatchObject({ ok: true });
    }
    const states = new Set(sims.map((s) => s.lifeCycleStatus));
    expect(states.has('ACTIVE') && states.has('ACTIVATION_READY')).toBe(true);
    const levels = new Set(sims.map((s) => sim.control.getPresence(s.icc as string).level));
    expect([...levels].sort()).toEqual(['GPRS', 'GSM', 'IP reachability', 'unknown']);
  });

  it('shows ip and apn in presence only during a data session', () => {
    for (const s of sims) {
      const p = sim.control.getPresence(s.icc as string);
      const inSession = p.level === 'GPRS' || p.level === 'IP reachability';
      expect(p.ip !== undefined).toBe(inSession);
      expect(p.apn !== undefined).toBe(inSession);
      expect(s.gprsStatus?.status).toBe(inSession ? 1 : s.gprsStatus?.lastConnStart ? 2 : 0);
    }
  });
});

describe('Kite simulator clock', () => {
  it('is deterministic for a seed', async () => {
    const a = await simulator({ groups: 2, simsPerGroup: 40, seed: 7 });
    const b = await simulator({ groups: 2, simsPerGroup: 40, seed: 7 });
    const c = await simulator({ groups: 2, simsPerGroup: 40, seed: 8 });
    try {
      expect(snapshot(a)).toEqual(snapshot(b));
      for (const ms of [30_000, 45 * 60_000, 26 * HOUR]) [a, b, c].forEach((s) => s.control.advanceClock(ms));
      expect(snapshot(a)).toEqual(snapshot(b));
      expect(a.control.now()).toBe(START + 30_000 + 45 * 60_000 + 26 * HOUR);
      expect(a.control.iccs()).not.toEqual(c.control.iccs());
    } finally {
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });

  it('evolves presence, consumption, location, IMEIs and life cycles, and resets daily counters at midnight UTC', async () => {
    const sim = await simulator({ groups: 1, simsPerGroup: 200, seed: 3, rates: { imeiChange: 0.5, lifeCycle: 0.5 } });
    try {
      const before = snapshot(sim);
      sim.control.advanceClock(3 * HOUR + 59 * 60_000); // 23:59
      const evening = snapshot(sim);
      const changed = (pick: (x: (typeof before)[0]) => unknown) =>
        before.filter((x, k) => JSON.stringify(pick(x)) !== JSON.stringify(pick(evening[k]))).length;
      expect(changed((x) => x.presence)).toBeGreaterThan(50);
      expect(changed((x) => x.sim.automaticLocation?.coordinates)).toBeGreaterThan(20);
      expect(changed((x) => x.sim.imei)).toBeGreaterThan(50);
      expect(changed((x) => x.sim.lifeCycleStatus)).toBeGreaterThan(50);
      const data = (x: (typeof before)[0]) => Number(x.sim.consumptionDaily?.data?.value);
      before.forEach((x, k) => expect(data(evening[k])).toBeGreaterThanOrEqual(data(x)));
      expect(changed(data)).toBeGreaterThan(20);
      before.forEach((x, k) => {
        const [from, to] = [x.sim.lifeCycleStatus as string, evening[k].sim.lifeCycleStatus as string];
        expect(reachable(from).has(to)).toBe(true);
        const coords = evening[k].sim.automaticLocation?.coordinates;
        if (coords) expect(Math.abs(Number(coords.latitude))).toBeLessThanOrEqual(90);
        if (evening[k].sim.imei) expect(luhnValid(evening[k].sim.imei as string)).toBe(true);
      });
      sim.control.advanceClock(60_000); // midnight
      const midnight = snapshot(sim);
      for (const x of midnight) {
        expect(x.sim.consumptionDaily).toMatchObject({
          voice: { value: '0' },
          sms: { value: '0' },
          data: { value: '0' },
        });
      }
      expect(midnight.some((x) => Number(x.sim.consumptionMonthly?.data?.value) > 0)).toBe(true);
    } finally {
      await sim.close();
    }
  });

  it('changes the connectivity hints whenever presence changes', async () => {
    const sim = await simulator({ groups: 1, simsPerGroup: 200, seed: 5 });
    try {
      const before = snapshot(sim);
      sim.control.advanceClock(2 * HOUR);
      const after = snapshot(sim);
      let presenceChanges = 0;
      before.forEach((x, k) => {
        if (JSON.stringify(x.presence) === JSON.stringify(after[k].presence)) return;
        presenceChanges++;
        expect(connectivityHints(after[k].sim)).not.toBe(connectivityHints(x.sim));
      });
      expect(presenceChanges).toBeGreaterThan(50);
    } finally {
      await sim.close();
    }
  });
});

describe('Kite simulator control and writes', () => {
  let sim: KiteSimulator;
  beforeAll(async () => {
    sim = await simulator({ groups: 2, simsPerGroup: 10 });
  });
  afterAll(() => sim.close());

  it("serves the seed's example SIM so that the client and mapping give exactly the seed's record", async () => {
    const seed = JSON.parse(readFileSync(path.join(__dirname, '../fixtures/kite/seed-sim.json'), 'utf8')) as {
      sim: KiteSim;
      presence: KitePresence;
      record: Record<string, unknown>;
    };
    const s = seed.sim;
    const icc = sim.control.iccs()[2];
    sim.control.setSim(icc, {
      ...Object.fromEntries(
        (['icc', 'alias', 'imei', 'commModuleModel', 'commModuleManufacturer', 'lifeCycleStatus', 'activationDate',
          'country', 'operator', 'apn', 'automaticLocation', 'consumptionDaily'] as const).map((k) => [k, s[k]])
      ), // prettier-ignore
      ip: seed.presence.ip,
      presence: { level: 'GPRS', cause: 'ACCOUNTING_RADIUS_START', timeStamp: seed.presence.timeStamp },
    });
    const client = clientOf(sim);
    const listed = (await allSims(client)).find((x) => x.icc === s.icc) as KiteSim;
    const result = mapSim(listed, await client.getPresence(s.icc as string));
    client.close();
    expect(result).toEqual({ ok: true, record: seed.record });
  });

  it.each(Object.keys(BROKEN_KINDS) as BrokenKind[])('breaks a SIM with %s, and resetSim repairs it', (kind) => {
    const icc = sim.control.iccs()[5];
    const reason = sim.control.breakSim(icc, kind);
    expect(reason).toBe(BROKEN_KINDS[kind].reason);
    expect(mapSim(sim.control.getSim(icc))).toEqual({ ok: false, reason });
    sim.control.resetSim(icc);
    expect(mapSim(sim.control.getSim(icc))).toMatchObject({ ok: true });
  });

  it('moves SIMs in and out of groups', () => {
    const [a, b] = sim.control.iccs('group-1');
    sim.control.moveToGroup([a, b], 'group-new');
    expect(sim.control.getSim(a).supervisionGroup).toBe('group-new');
    expect(sim.control.groups()).toMatchObject({ 'group-1': 8, 'group-new': 2 });
    sim.control.moveToGroup([a], null);
    expect(sim.control.getSim(a)).not.toHaveProperty('supervisionGroup');
    sim.control.moveToGroup([a, b], 'group-1');
    expect(() => sim.control.moveToGroup(['123'], 'group-1')).toThrow(/not found/);
  });

  it('offers the control API over HTTPS', async () => {
    const icc = sim.control.iccs()[0];
    const now = sim.control.now();
    expect(await request(sim, 'POST', '/_sim/clock/advance', { by: '1h' })).toMatchObject({ status: 200 });
    expect(sim.control.now()).toBe(now + HOUR);
    expect(await request(sim, 'PATCH', `/_sim/sims/${icc}`, { alias: 'pump-7' })).toMatchObject({ status: 204 });
    expect((await request(sim, 'GET', `/_sim/sims/${icc}`)).json).toMatchObject({ sim: { alias: 'pump-7' } });
    const info = await request(sim, 'GET', '/_sim/info');
    expect(info.json).toMatchObject({ groups: { 'group-1': 10, 'group-2': 10 } });
    await request(sim, 'PUT', '/_sim/faults', { sequence: ['overload'] });
    const faulted = await request(sim, 'GET', '/services/REST/GlobalM2M/Inventory/v13/r12/sim');
    expect(faulted).toMatchObject({ status: 503, json: { ServerException: { exceptionCategory: 'SVR', exceptionId: '1006' } } }); // prettier-ignore
    expect(await request(sim, 'POST', '/_sim/nothing')).toMatchObject({ status: 404 });
  });

  it("applies Kite's PUT with its life-cycle transitions", async () => {
    const icc = sim.control.iccs()[1];
    const put = (body: unknown) =>
      request(sim, 'PUT', `/services/REST/GlobalM2M/Inventory/v13/r12/sim/icc:${icc}`, body);
    sim.control.setSim(icc, { lifeCycleStatus: 'ACTIVE' });
    expect(await put({ lifeCycleStatus: 'DEACTIVATED' })).toMatchObject({ status: 204 });
    expect(sim.control.getSim(icc).lifeCycleStatus).toBe('DEACTIVATED');
    const refused = await put({ lifeCycleStatus: 'TEST' });
    expect(refused).toMatchObject({ status: 400, json: { ClientException: { exceptionCategory: 'SVC', exceptionId: '1021' } } }); // prettier-ignore
    expect(await put({ alias: 'gateway-9' })).toMatchObject({ status: 204 });
    expect(sim.control.getSim(icc).alias).toBe('gateway-9');
    expect(await put({ imsi: '1' })).toMatchObject({ status: 400 });
  });

  it('answers Kite faults for bad paging parameters and unknown SIMs', async () => {
    const base = '/services/REST/GlobalM2M/Inventory';
    expect(await request(sim, 'GET', `${base}/v6/r12/sim?maxBatchSize=101`)).toMatchObject({ status: 400 });
    expect(await request(sim, 'GET', `${base}/v13/r12/sim?maxBatchSize=1000`)).toMatchObject({ status: 200 });
    const missing = await request(sim, 'GET', `${base}/v13/r12/sim/icc:8934000000000000000/presence`);
    expect(missing).toMatchObject({ status: 404, json: { ClientException: { exceptionId: '1006' } } });
  });
});
