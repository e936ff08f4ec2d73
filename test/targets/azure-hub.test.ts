/**
 * The Azure target against a double that behaves like an S1 hub: the customer's real devices stay connected in
 * module mode, reported mode never takes a foreign device over, a restarted worker needs no registry lookup,
 * throttling by closed connections makes the connector back off, an exhausted daily quota pauses the target
 * until the next UTC day, and the smaller rules (device ids, bulk 400s, disabled devices).
 */
import { AzureIotHubDouble, type AzureDoubleOptions } from '../azure-double';
import { createAzureTarget, parseAzureTargetConfig, type AzureTargetDeps } from '../../targets/azure';
import { applyPatch } from '../../record';
import type { PublishItem, PublishOutcome, Target } from '../../targets/target';
import { createLogger } from '../../shared/log';
import Redis from 'ioredis';
import { redisBudgets } from '../../shared/limits';
import { testStack, uniqueName } from '../setup/stack';

const hubs: AzureIotHubDouble[] = [];
const targets: Target[] = [];

const redisClients: Redis[] = [];

afterAll(async () => {
  redisClients.forEach((c) => c.disconnect());
  await Promise.all(targets.map((t) => t.close()));
  await Promise.all(hubs.map((h) => h.stop()));
});

async function startHub(options: AzureDoubleOptions = {}): Promise<AzureIotHubDouble> {
  const hub = await AzureIotHubDouble.start(options);
  hubs.push(hub);
  return hub;
}

function target(hub: AzureIotHubDouble, extra: Record<string, unknown> = {}, deps: AzureTargetDeps = {}): Target {
  const raw = {
    connectionString: hub.serviceConnectionString,
    serviceUrl: hub.serviceUrl,
    deviceHost: hub.deviceHost,
    ca: hub.ca,
    operationTimeoutMs: 10_000,
    ...extra,
  };
  const t = createAzureTarget(parseAzureTargetConfig(raw, 'azure'), {
    logger: createLogger({}, { level: 'error' }),
    ...deps,
  });
  targets.push(t);
  return t;
}

let seq = 0;
const newId = () => `89883${String(process.pid).slice(-4)}${String(++seq).padStart(6, '0')}`;

function item(deviceId: string, patch: PublishItem['patch'], full = true): PublishItem {
  return { iccid: deviceId, deviceId, patch, full, state: applyPatch(undefined, patch) };
}

const statuses = (out: PublishOutcome[]) => out.map((o) => o.status);

describe('module mode (the default)', () => {
  test('the record goes to the module twin; a real device holding its id is never disconnected', async () => {
    const hub = await startHub();
    const [owned, missing] = [newId(), newId()];
    const device = await hub.startRealDevice(owned);
    const t = target(hub);
    const first = await t.publish([
      item(owned, { iccid: owned, presenceLevel: 'ONLINE' }),
      item(missing, { iccid: missing }),
    ]);
    expect(first).toEqual([
      { iccid: owned, status: 'ok' },
      { iccid: missing, status: 'ok' },
    ]);
    for (let i = 0; i < 3; i++) {
      expect(statuses(await t.publish([item(owned, { dailySMS: i }, false)]))).toEqual(['ok']);
    }
    expect(hub.reported(owned, 'kite')).toEqual({ iccid: owned, presenceLevel: 'ONLINE', dailySMS: 2 });
    // The customer's device: its twin untouched, its connection never dropped.
    expect(hub.reported(owned)).toEqual({});
    expect(hub.twin(owned)!.tags).toEqual({});
    expect(hub.kicks(owned)).toBe(0);
    expect(device.disconnects).toBe(0);
    expect(device.connected).toBe(true);
    expect(hub.connectionsOpened(owned)).toBe(1);
    expect(hub.connectionsOpened(`${owned}/kite`)).toBe(4);
    // The missing device was created, with the module.
    expect(hub.device(missing)).toBeDefined();
    expect(hub.module(missing, 'kite')).toMatchObject({ managedBy: 'kite-cloud-connector' });
    expect(hub.reported(missing, 'kite')).toEqual({ iccid: missing });
    // One billed message per update, no twin GET.
    expect(hub.twinLog.every((e) => e.op === 'PATCH' && e.billed === 1)).toBe(true);
  });

  test('a restarted worker makes 0 registry calls when the policy has DeviceConnect', async () => {
    const hub = await startHub();
    const ids = [newId(), newId(), newId()];
    await target(hub).publish(ids.map((id) => item(id, { iccid: id })));
    const mark = hub.restLog.length;
    const restarted = target(hub);
    expect(statuses(await restarted.publish(ids.map((id) => item(id, { ip: '10.0.0.2' }, false))))).toEqual([
      'ok',
      'ok',
      'ok',
    ]);
    expect(hub.restLog.slice(mark)).toEqual([]);
    for (const id of ids) expect(hub.reported(id, 'kite')).toEqual({ iccid: id, ip: '10.0.0.2' });
  });

  test('a module deleted in the hub is created again when its connection is refused', async () => {
    const hub = await startHub();
    const id = newId();
    const t = target(hub);
    await t.publish([item(id, { iccid: id })]);
    hub.registry.modules.delete(`${id}/kite`);
    hub.registry.twins.delete(`${id}/kite`);
    expect(await t.publish([item(id, { ip: '1' }, false)])).toEqual([{ iccid: id, status: 'ok' }]);
    expect(hub.reported(id, 'kite')).toEqual({ ip: '1' });
  });
});

describe('two workers on one hub', () => {
  /** A worker's budgets: its own Redis connection, the worker's key prefix (one per test run). */
  const workerBudgets = (prefix: string) => {
    const redis = new Redis(testStack.redisUrl, { maxRetriesPerRequest: 3 });
    redisClients.push(redis);
    return redisBudgets(redis, { prefix });
  };

  test("stay within the hub's twin-update and identity budgets, as counted by the double", async () => {
    const hub = await startHub({ mqttThrottle: 'close' });
    const prefix = uniqueName('azure-budgets');
    const [a, b] = [
      target(hub, {}, { budgets: workerBudgets(prefix) }),
      target(hub, {}, { budgets: workerBudgets(prefix) }),
    ];
    // Existing modules: 150 updates per worker, 300 in all against 50/s.
    const ids = Array.from({ length: 300 }, newId);
    for (const id of ids) {
      hub.registry.create(id);
      hub.registry.createModule(id, 'kite');
    }
    const started = Date.now();
    const outs = await Promise.all([
      a.publish(ids.slice(0, 150).map((id) => item(id, { ip: '1' }, false))),
      b.publish(ids.slice(150).map((id) => item(id, { ip: '1' }, false))),
    ]);
    const elapsedS = (Date.now() - started) / 1000;
    const ok = outs.flat().filter((o) => o.status === 'ok').length;
    expect(ok).toBeGreaterThan(0);
    expect(hub.throttledCount('twinUpdate')).toBe(0);
    // Paced at 95 % of 50/s with a burst of 2 (shared by both workers): never more than the hub allows.
    expect(hub.acceptedCount('twinUpdate')).toBeLessThanOrEqual(50 + Math.ceil(elapsedS * 50));
    expect(hub.maxInWindow('twinUpdate', 1_000)).toBeLessThanOrEqual(100);
    // New SIMs: each worker has 60, needing ~2 identity operations each; the hub allows 100/min.
    const fresh = Array.from({ length: 120 }, newId);
    const identityStarted = Date.now();
    const created = await Promise.all([
      a.publish(fresh.slice(0, 60).map((id) => item(id, { iccid: id }))),
      b.publish(fresh.slice(60).map((id) => item(id, { iccid: id }))),
    ]);
    const minutes = (Date.now() - identityStarted) / 60_000;
    expect(created.flat().some((o) => o.status === 'throttled')).toBe(true);
    expect(hub.throttledCount('identity')).toBe(0);
    expect(hub.acceptedCount('identity')).toBeLessThanOrEqual(100 + Math.ceil(minutes * 100));
  });
});

describe('reported mode', () => {
  test('refuses to take over a device it did not create: permanent, with what to do, and no connection', async () => {
    const hub = await startHub();
    const [foreign, ours] = [newId(), newId()];
    const device = await hub.startRealDevice(foreign);
    const t = target(hub, { mode: 'reported' });
    const out = await t.publish([item(foreign, { iccid: foreign }), item(ours, { iccid: ours })]);
    expect(out[0]).toMatchObject({ iccid: foreign, status: 'permanent' });
    expect(out[0].status === 'permanent' && out[0].reason).toMatch(/not created by the connector.*mode "module"/);
    expect(out[1]).toEqual({ iccid: ours, status: 'ok' });
    expect(hub.connectionsOpened(foreign)).toBe(1); // the real device's own
    expect(hub.kicks(foreign)).toBe(0);
    expect(device.disconnects).toBe(0);
    expect(hub.reported(foreign)).toEqual({});
    // Its own device, after a restart, is recognised by the tag.
    expect(statuses(await target(hub, { mode: 'reported' }).publish([item(ours, { iccid: ours, ip: '1' })]))).toEqual([
      'ok',
    ]);
  });
});

describe('throttling', () => {
  test('closed connections make the connector back off: the hub budget pauses ≥ 10 s for every device', async () => {
    // The connector believes in 1,000 updates/s; the hub allows 5 and closes connections beyond.
    const hub = await startHub({ limits: { twinUpdatesPerSecond: 5 }, mqttThrottle: 'close' });
    const ids = Array.from({ length: 40 }, newId);
    hub.setThrottling(false);
    const t = target(hub, { twinUpdatesPerSecond: 1_000, maxConnections: 40 });
    expect(statuses(await t.publish(ids.map((id) => item(id, { iccid: id }))))).toEqual(ids.map(() => 'ok'));
    hub.setThrottling(true);
    const out = await t.publish(ids.map((id) => item(id, { ip: '1' }, false)));
    const throttled = out.filter((o) => o.status === 'throttled');
    expect(throttled.length).toBeGreaterThan(0);
    // Each says how much of the (≥ 10 s) pause is left.
    expect(throttled.filter((o) => o.status === 'throttled' && o.retryAfterMs < 5_000)).toEqual([]);
    // Paused: the next publish sends nothing at all, and one success later would not end the pause.
    const attempts = hub.acceptedCount('connection') + hub.throttledCount('connection');
    const again = await t.publish(ids.slice(0, 5).map((id) => item(id, { ip: '2' }, false)));
    expect(statuses(again)).toEqual(['throttled', 'throttled', 'throttled', 'throttled', 'throttled']);
    expect(hub.acceptedCount('connection') + hub.throttledCount('connection')).toBe(attempts);
  });

  test('slow CONNACKs (traffic shaping) count as throttling too', async () => {
    const hub = await startHub({ limits: { newConnectionsPerSecond: 2 }, mqttThrottle: 'delay' });
    const ids = Array.from({ length: 12 }, newId);
    hub.setThrottling(false);
    const t = target(
      hub,
      { connectionsPerSecond: 1_000, maxConnections: 12 },
      { throttleSignals: { slowConnackMs: 1_000 } }
    );
    await t.publish(ids.map((id) => item(id, { iccid: id })));
    hub.setThrottling(true);
    const out = await t.publish(ids.map((id) => item(id, { ip: '1' }, false)));
    // The first CONNACKs are fast, the later ones wait seconds: once three are slow, the rest are held back.
    expect(out.some((o) => o.status === 'throttled')).toBe(true);
  });
});

describe('daily message quota', () => {
  test('an exhausted quota pauses the target until 00:00 UTC; the next UTC day resumes it, nothing lost', async () => {
    const hub = await startHub({ limits: { dailyMessages: 4 } });
    const ids = Array.from({ length: 6 }, newId);
    const t = target(hub, { maxConnections: 1 }, { now: () => hub.clock.now() });
    const out = await t.publish(ids.map((id) => item(id, { iccid: id })));
    expect(statuses(out)).toEqual(['ok', 'ok', 'ok', 'ok', 'throttled', 'throttled']);
    for (const o of out.slice(4)) {
      expect(o.status === 'throttled' && o.reason).toMatch(/paused until \d{4}-\d\d-\d\dT00:00:00/);
      expect(o.status === 'throttled' && o.retryAfterMs).toBeGreaterThan(0);
      // The hub refused (its quota of 4), not the connector's own budget (400,000 by default): the pause says so.
      expect(o).toMatchObject({ pauseCause: 'hub-quota' });
      expect(o.status === 'throttled' && o.reason).toMatch(/403002 IotHubQuotaExceeded: the hub's own daily/);
    }
    // Until midnight nothing is sent: no connection, no registry call.
    const [rest, connections] = [hub.restLog.length, hub.acceptedCount('connection')];
    expect(statuses(await t.publish(ids.slice(4).map((id) => item(id, { iccid: id }))))).toEqual([
      'throttled',
      'throttled',
    ]);
    expect([hub.restLog.length, hub.acceptedCount('connection')]).toEqual([rest, connections]);
    hub.advanceToNextUtcDay();
    expect(statuses(await t.publish(ids.slice(4).map((id) => item(id, { iccid: id }))))).toEqual(['ok', 'ok']);
    for (const id of ids) expect(hub.reported(id, 'kite')).toEqual({ iccid: id });
  });

  test("the connector's own daily budget stops it before the hub's quota", async () => {
    const hub = await startHub();
    const ids = Array.from({ length: 3 }, newId);
    const t = target(hub, { dailyMessageBudget: 2, maxConnections: 1 });
    const out = await t.publish(ids.map((id) => item(id, { iccid: id })));
    expect(statuses(out)).toEqual(['ok', 'ok', 'throttled']);
    expect(out[2]).toMatchObject({ pauseCause: 'daily-budget' });
    expect(out[2].status === 'throttled' && out[2].reason).toMatch(
      /^the connector's daily message budget for hub localhost is spent \(dailyMessageBudget: 2 messages/
    );
    expect(hub.billedMessagesToday()).toBe(2);
  });
});

describe('identities', () => {
  test('an invalid device id fails alone, before any registry call', async () => {
    const hub = await startHub({ tier: 'S3' });
    const good = newId();
    const mark = hub.restLog.length;
    const out = await target(hub).publish([item('pump 7', { iccid: 'x' }), item(good, { iccid: good })]);
    expect(out[0]).toMatchObject({ status: 'permanent' });
    expect(out[0].status === 'permanent' && out[0].reason).toContain('is not a valid IoT Hub id');
    expect(out[1]).toEqual({ iccid: good, status: 'ok' });
    expect(hub.restLog.slice(mark).some((e) => decodeURIComponent(e.path).includes('pump 7'))).toBe(false);
  });

  /** The registry calls after `mark`: bulk creates with their answer, single creates by device id. */
  const creates = (hub: AzureIotHubDouble, mark: number) =>
    hub.restLog.slice(mark).flatMap((e) => {
      if (e.method === 'POST' && e.path === '/devices') return [`bulk ${e.bulkSize} → ${e.status}`];
      const single = /^\/devices\/([^/]+)$/.exec(e.path);
      return e.method === 'PUT' && single ? [`create ${decodeURIComponent(single[1])} → ${e.status}`] : [];
    });
  const refusal = { code: 'ArgumentInvalid', text: 'injected: the hub will not create this device' };

  test.each(['module', 'reported'])(
    "%s mode: a bulk 400 with a result fails the devices it names, with the hub's reason; the others are created",
    async (mode) => {
      const hub = await startHub({ tier: 'S3' });
      const [a, bad, c] = [newId(), newId(), newId()];
      hub.refuseDevice(bad, refusal);
      const mark = hub.restLog.length;
      const out = await target(hub, { mode }).publish([a, bad, c].map((id) => item(id, { iccid: id })));
      expect(statuses(out)).toEqual(['ok', 'permanent', 'ok']);
      expect(out[1].status === 'permanent' && out[1].reason).toBe(
        `the hub refused to create device ${bad} (bulk create: ArgumentInvalid: "${refusal.text}"); ` +
          'fix the device id or the hub'
      );
      // One bulk call did it: the hub created the others in it, so no device is created on its own.
      expect(creates(hub, mark)).toEqual(['bulk 3 → 400']);
      expect(hub.device(bad)).toBeUndefined();
      const twinOf = (id: string) => (mode === 'module' ? hub.reported(id, 'kite') : hub.reported(id));
      for (const id of [a, c]) expect(twinOf(id)).toEqual({ iccid: id });
    }
  );

  test.each(['module', 'reported'])(
    '%s mode: a bulk 400 without a result falls back to one device at a time; the one the hub refuses fails alone',
    async (mode) => {
      const hub = await startHub({ tier: 'S3' });
      const [a, bad, c] = [newId(), newId(), newId()];
      hub.refuseDevice(bad, refusal);
      hub.failBulk({ resultBody: false, times: 1 });
      const mark = hub.restLog.length;
      const out = await target(hub, { mode }).publish([a, bad, c].map((id) => item(id, { iccid: id })));
      expect(statuses(out)).toEqual(['ok', 'permanent', 'ok']);
      expect(out[1].status === 'permanent' && out[1].reason).toBe(
        `the hub refused to create device ${bad} (device create: HTTP 400 ArgumentInvalid: "${refusal.text}"); ` +
          'fix the device id or the hub'
      );
      expect(creates(hub, mark)).toEqual([
        'bulk 3 → 400',
        `create ${a} → 200`,
        `create ${bad} → 400`,
        `create ${c} → 200`,
      ]);
      expect(hub.device(bad)).toBeUndefined();
      if (mode === 'reported') {
        // Created one at a time, the connector's devices still carry its mark (so a restart does not refuse them).
        for (const id of [a, c]) expect(hub.twin(id)!.tags).toMatchObject({ kiteConnector: expect.anything() });
      }
      const twinOf = (id: string) => (mode === 'module' ? hub.reported(id, 'kite') : hub.reported(id));
      for (const id of [a, c]) expect(twinOf(id)).toEqual({ iccid: id });
      // Nothing else was refused: the permanent failure stays the one device's.
      expect(statuses(await target(hub, { mode }).publish([a, c].map((id) => item(id, { ip: '1' }, false))))).toEqual([
        'ok',
        'ok',
      ]);
    }
  );

  test('a disabled device is a permanent failure with its reason', async () => {
    const hub = await startHub();
    const id = newId();
    const t = target(hub);
    await t.publish([item(id, { iccid: id })]);
    hub.disableDevice(id, 'SIM reported stolen');
    const [out] = await t.publish([item(id, { ip: '1' }, false)]);
    expect(out).toMatchObject({ status: 'permanent' });
    expect(out.status === 'permanent' && out.reason).toMatch(/disabled.*SIM reported stolen/);
  });

  test('a policy without the rights of the mode: retryable (nothing lost), and the reason names them', async () => {
    const hub = await startHub();
    const t = target(hub, { connectionString: hub.connectionStringFor('device') });
    const [out] = await t.publish([item(newId(), { iccid: 'x' })]);
    expect(out).toMatchObject({ status: 'retryable' });
    expect(out.status === 'retryable' && out.reason).toContain(
      "policy 'device' was refused; mode 'module' needs a policy with RegistryReadWrite and DeviceConnect"
    );
  });
});
