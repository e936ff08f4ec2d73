/**
 * The Azure IoT Hub double behaves like a hub of its tier: throttles, billed messages and the daily quota,
 * latency, shared access policies, module identities, device-id rules, bulk failures, disabled devices, and the
 * one-connection-per-identity rule that kicks a real device off. Driven with plain HTTPS and mqtt.js, not with the
 * connector, so the double is checked on its own.
 */
import https from 'node:https';
import mqtt, { type MqttClient } from 'mqtt';
import { AzureIotHubDouble, type AzureDoubleOptions } from '.';
import { API_VERSION } from './rest';
import { makeSas } from './sas';
import { waitUntil } from '../support/wait-until';

const hubs: AzureIotHubDouble[] = [];
const clients: MqttClient[] = [];

async function startHub(options: AzureDoubleOptions = {}): Promise<AzureIotHubDouble> {
  const hub = await AzureIotHubDouble.start(options);
  hubs.push(hub);
  return hub;
}

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await Promise.all(hubs.map((h) => h.stop()));
});

interface Reply {
  status: number;
  body: unknown;
  text: string;
}

/** One REST call signed with a policy's key (as the service SDK signs: sr = the hub host). */
function rest(
  hub: AzureIotHubDouble,
  method: string,
  path: string,
  body?: unknown,
  policy = 'iothubowner'
): Promise<Reply> {
  const key = hub.policies.get(policy)!.key;
  const url = new URL(`${path}${path.includes('?') ? '&' : '?'}api-version=${API_VERSION}`, hub.serviceUrl);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: hub.ca,
        servername: 'localhost',
        headers: {
          Authorization: makeSas(hub.hubHost, key, 3600, policy),
          'Content-Type': 'application/json',
          ...(method === 'PATCH' || (method === 'PUT' && path.includes('/twins/')) ? { 'If-Match': '"*"' } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
      }
    );
    req.on('error', reject);
    req.end(payload);
  });
}

interface DeviceClientOptions {
  deviceId: string;
  moduleId?: string;
  /** A SAS token; default: signed with the identity's own primary key. */
  password?: string;
}

/** A device or module connection, or the reason it failed: `refused` (CONNACK ≠ 0) or `closed`. */
async function connectAs(
  hub: AzureIotHubDouble,
  opts: DeviceClientOptions
): Promise<{ ok: true; client: MqttClient } | { ok: false; why: string }> {
  const [host, port] = hub.deviceHost.split(':');
  const clientId = opts.moduleId ? `${opts.deviceId}/${opts.moduleId}` : opts.deviceId;
  const resource = `${hub.deviceHost}/devices/${opts.deviceId}${opts.moduleId ? `/modules/${opts.moduleId}` : ''}`;
  const identity = opts.moduleId ? hub.module(opts.deviceId, opts.moduleId) : hub.device(opts.deviceId);
  const password = opts.password ?? makeSas(resource, identity!.authentication.symmetricKey.primaryKey);
  const client = mqtt.connect({
    protocol: 'mqtts',
    host,
    port: Number(port),
    ca: hub.ca,
    clientId,
    username: `${hub.deviceHost}/${clientId}/?api-version=${API_VERSION}`,
    password,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 30_000,
  });
  clients.push(client);
  client.on('error', () => undefined);
  return new Promise((resolve) => {
    client.once('connect', () => resolve({ ok: true, client }));
    client.once('error', (err) => resolve({ ok: false, why: `refused: ${err.message}` }));
    client.once('close', () => resolve({ ok: false, why: 'closed' }));
  });
}

let rid = 0;
/** One twin request; resolves with the response status, or `closed` when the hub dropped the connection. */
async function twinRequest(client: MqttClient, op: 'GET' | 'PATCH', body?: unknown): Promise<number | 'closed'> {
  await client.subscribeAsync('$iothub/twin/res/#');
  const id = String(++rid);
  return new Promise((resolve) => {
    const onMessage = (topic: string) => {
      const m = /^\$iothub\/twin\/res\/(\d+)\/\?\$rid=(\d+)/.exec(topic);
      if (m && m[2] === id) {
        client.off('message', onMessage);
        resolve(Number(m[1]));
      }
    };
    client.on('message', onMessage);
    client.once('close', () => resolve('closed'));
    const topic = op === 'GET' ? `$iothub/twin/GET/?$rid=${id}` : `$iothub/twin/PATCH/properties/reported/?$rid=${id}`;
    client.publish(topic, body === undefined ? '' : JSON.stringify(body));
  });
}

let seq = 0;
const newId = () => `dbl-${process.pid}-${++seq}`;

describe('throttles of an S1 hub', () => {
  test('identity operations: 100/min, a bulk call counts each device, then 429 with the throttling body', async () => {
    const hub = await startHub();
    const started = Date.now();
    const bulk = (n: number) => Array.from({ length: n }, () => ({ id: newId(), importMode: 'create' }));
    expect((await rest(hub, 'POST', '/devices', bulk(60))).status).toBe(200);
    const refused = await rest(hub, 'POST', '/devices', bulk(60));
    expect(refused.status).toBe(429);
    expect(refused.text).toContain('ErrorCode:ThrottlingException;');
    // About 40 tokens remain (plus what refills meanwhile): single operations pass until they are spent.
    const id = newId();
    let status = 0;
    for (let i = 0; i < 80 && status !== 429; i++) status = (await rest(hub, 'GET', `/devices/${id}`)).status;
    expect(status).toBe(429);
    const refilled = ((Date.now() - started) * 100) / 60_000;
    expect(hub.acceptedCount('identity')).toBeGreaterThanOrEqual(100);
    expect(hub.acceptedCount('identity')).toBeLessThanOrEqual(100 + Math.ceil(refilled));
  });

  test('twin updates over MQTT: past 50/s the hub closes the connection (close mode)', async () => {
    const hub = await startHub();
    const ids = Array.from({ length: 60 }, newId);
    for (const id of ids) hub.registry.create(id);
    const outcomes = await Promise.all(
      ids.map(async (deviceId) => {
        const c = await connectAs(hub, { deviceId });
        return c.ok ? twinRequest(c.client, 'PATCH', { n: 1 }) : c.why;
      })
    );
    expect(outcomes.filter((o) => o === 204).length).toBeLessThanOrEqual(60);
    expect(outcomes.filter((o) => o === 204).length).toBeGreaterThanOrEqual(50);
    expect(outcomes.filter((o) => o !== 204).every((o) => o === 'closed')).toBe(true);
    expect(hub.twinLog.filter((e) => e.status === 'throttled').length).toBe(outcomes.filter((o) => o !== 204).length);
    // Never more accepted than the budget allows: 50 at once, then 50/s.
    expect(hub.maxInWindow('twinUpdate', 1_000)).toBeLessThanOrEqual(100);
  });

  test('new connections: in delay mode the CONNACK waits for the budget instead', async () => {
    const hub = await startHub({ mqttThrottle: 'delay', limits: { newConnectionsPerSecond: 2 } });
    const ids = [newId(), newId(), newId(), newId()];
    for (const id of ids) hub.registry.create(id);
    const started = Date.now();
    const results = await Promise.all(ids.map((deviceId) => connectAs(hub, { deviceId })));
    expect(results.every((r) => r.ok)).toBe(true);
    // Two at once (the burst), the other two are held back until the budget refills (2/s).
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(hub.throttledCount('connection')).toBe(2);
  });
});

describe('billed messages and the daily quota', () => {
  test('GET and PATCH cost ceil(size / 4 KB), at least 1; past the quota REST 403002 and MQTT accept-then-close', async () => {
    const hub = await startHub({ limits: { dailyMessages: 4 } });
    const id = newId();
    hub.registry.create(id);
    const c = await connectAs(hub, { deviceId: id });
    if (!c.ok) throw new Error(c.why);
    expect(await twinRequest(c.client, 'GET')).toBe(200);
    expect(hub.billedMessagesToday()).toBe(1);
    expect(await twinRequest(c.client, 'PATCH', { big: 'x'.repeat(5_000) })).toBe(204);
    expect(hub.billedMessagesToday()).toBe(3);
    expect(hub.twinLog.map((e) => e.billed)).toEqual([1, 2]);
    expect(await twinRequest(c.client, 'PATCH', { big: null })).toBe(204);
    expect(hub.billedMessagesToday()).toBe(4);
    // Spent: the next request closes the connection, REST answers 403002, a new CONNECT is accepted then closed.
    expect(await twinRequest(c.client, 'PATCH', { a: 1 })).toBe('closed');
    const r = await rest(hub, 'GET', `/twins/${id}`);
    expect(r.status).toBe(403);
    expect(r.text).toContain('ErrorCode:IotHubQuotaExceeded;');
    const again = await connectAs(hub, { deviceId: id });
    expect(again.ok).toBe(true);
    if (again.ok) await waitUntil(() => !again.client.connected, 'the hub closes the connection');
    expect(hub.refusedConnections.at(-1)).toEqual({ identity: id, why: 'quota' });
    // The next UTC day resets the quota.
    hub.advanceToNextUtcDay();
    expect(hub.billedMessagesToday()).toBe(0);
    const next = await connectAs(hub, { deviceId: id });
    if (!next.ok) throw new Error(next.why);
    expect(await twinRequest(next.client, 'PATCH', { a: 2 })).toBe(204);
    expect(hub.reported(id)).toEqual({ a: 2 });
  });

  test('latency per operation delays the answer', async () => {
    const hub = await startHub({ latencyMs: { twinUpdate: 200, identity: [100, 150] } });
    const id = newId();
    let started = Date.now();
    expect((await rest(hub, 'PUT', `/devices/${id}`, { deviceId: id })).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);
    const c = await connectAs(hub, { deviceId: id });
    if (!c.ok) throw new Error(c.why);
    await c.client.subscribeAsync('$iothub/twin/res/#');
    started = Date.now();
    expect(await twinRequest(c.client, 'PATCH', { a: 1 })).toBe(204);
    expect(Date.now() - started).toBeGreaterThanOrEqual(195);
  });
});

describe('shared access policies', () => {
  test('a policy with DeviceConnect signs for a device (sr={hub}/devices/{id}, skn); others are refused', async () => {
    const hub = await startHub();
    const id = newId();
    hub.registry.create(id);
    const sr = `${hub.deviceHost}/devices/${id}`;
    const withPolicy = (policy: string) => makeSas(sr, hub.policies.get(policy)!.key, 3600, policy);
    for (const policy of ['device', 'iothubowner']) {
      const c = await connectAs(hub, { deviceId: id, password: withPolicy(policy) });
      expect(c.ok).toBe(true);
    }
    const failures = hub.authFailures;
    for (const policy of ['service', 'registryReadWrite']) {
      expect(await connectAs(hub, { deviceId: id, password: withPolicy(policy) })).toMatchObject({ ok: false });
    }
    // Signed with the wrong key, or expired.
    const wrongKey = makeSas(sr, hub.policies.get('service')!.key, 3600, 'device');
    const expired = makeSas(sr, hub.policies.get('device')!.key, -10, 'device');
    expect(await connectAs(hub, { deviceId: id, password: wrongKey })).toMatchObject({ ok: false });
    expect(await connectAs(hub, { deviceId: id, password: expired })).toMatchObject({ ok: false });
    // A token for another device does not open this one.
    const other = makeSas(`${hub.deviceHost}/devices/${id}x`, hub.policies.get('device')!.key, 3600, 'device');
    expect(await connectAs(hub, { deviceId: id, password: other })).toMatchObject({ ok: false });
    expect(hub.authFailures).toBe(failures + 5);
  });

  test('REST needs RegistryRead, RegistryReadWrite or ServiceConnect by route', async () => {
    const hub = await startHub();
    const id = newId();
    expect((await rest(hub, 'PUT', `/devices/${id}`, { deviceId: id }, 'registryRead')).status).toBe(401);
    expect((await rest(hub, 'PUT', `/devices/${id}`, { deviceId: id }, 'registryReadWrite')).status).toBe(200);
    expect((await rest(hub, 'GET', `/devices/${id}`, undefined, 'registryRead')).status).toBe(200);
    expect((await rest(hub, 'GET', `/devices/${id}`, undefined, 'service')).status).toBe(401);
    expect((await rest(hub, 'PATCH', `/twins/${id}`, { tags: { a: 1 } }, 'registryReadWrite')).status).toBe(401);
    expect((await rest(hub, 'PATCH', `/twins/${id}`, { tags: { a: 1 } }, 'service')).status).toBe(200);
    expect((await rest(hub, 'GET', `/devices/${id}`, undefined, 'device')).status).toBe(401);
  });
});

describe('module identities', () => {
  test('a module has its own twin and connection; the real device on the same id is never kicked', async () => {
    const hub = await startHub();
    const id = newId();
    const device = await hub.startRealDevice(id);
    expect((await rest(hub, 'PUT', `/devices/${id}/modules/kite`, { deviceId: id, moduleId: 'kite' })).status).toBe(
      200
    );
    expect((await rest(hub, 'PUT', `/devices/${id}/modules/kite`, { deviceId: id, moduleId: 'kite' })).status).toBe(
      409
    );
    const listed = await rest(hub, 'GET', `/devices/${id}/modules`);
    expect(listed.body).toEqual([expect.objectContaining({ deviceId: id, moduleId: 'kite' })]);
    // Signed with the policy on behalf of the device, as the connector does.
    const password = makeSas(
      `${hub.deviceHost}/devices/${id}/modules/kite`,
      hub.policies.get('device')!.key,
      3600,
      'device'
    );
    const c = await connectAs(hub, { deviceId: id, moduleId: 'kite', password });
    if (!c.ok) throw new Error(c.why);
    expect(await twinRequest(c.client, 'PATCH', { iccid: id })).toBe(204);
    expect(hub.reported(id, 'kite')).toEqual({ iccid: id });
    expect(hub.reported(id)).toEqual({});
    expect(hub.twinLog.at(-1)).toMatchObject({ deviceId: id, moduleId: 'kite', op: 'PATCH', status: 204 });
    const twin = await rest(hub, 'GET', `/twins/${id}/modules/kite`);
    expect(twin.body).toMatchObject({ deviceId: id, moduleId: 'kite', properties: { reported: { iccid: id } } });
    expect(hub.kicks(id)).toBe(0);
    expect(device.disconnects).toBe(0);
    expect(device.connected).toBe(true);
  });

  test('at most 50 modules per device', async () => {
    const hub = await startHub({ tier: 'S3' });
    const id = newId();
    hub.registry.create(id);
    for (let i = 0; i < 50; i++) hub.registry.createModule(id, `m${i}`);
    const r = await rest(hub, 'PUT', `/devices/${id}/modules/one-more`, { deviceId: id, moduleId: 'one-more' });
    expect(r.status).toBe(403);
    expect(r.text).toContain('TooManyModulesOnDevice');
  });
});

describe('identities', () => {
  test('device ids: 1-128 characters of the documented set; one bad id fails a whole bulk call', async () => {
    const hub = await startHub({ tier: 'S3' });
    const good = `a-:.+%_#*?!(),=@;$'${newId()}`;
    expect((await rest(hub, 'PUT', `/devices/${encodeURIComponent(good)}`, { deviceId: good })).status).toBe(200);
    for (const bad of ['pump 7', 'x'.repeat(129), 'ü']) {
      const r = await rest(hub, 'PUT', `/devices/${encodeURIComponent(bad)}`, { deviceId: bad });
      expect(r.status).toBe(400);
      expect(r.text).toContain('ErrorCode:ArgumentInvalid;');
    }
    const ids = [newId(), 'pump 7', newId()];
    const r = await rest(
      hub,
      'POST',
      '/devices',
      ids.map((id) => ({ id, importMode: 'create' }))
    );
    expect(r.status).toBe(400);
    expect(r.body).not.toHaveProperty('isSuccessful');
    expect(hub.device(ids[0])).toBeUndefined();
  });

  test('bulk create: an existing device gives 400 with a result body; faults give 400 with or without one', async () => {
    const hub = await startHub({ tier: 'S3' });
    const [a, b, c] = [newId(), newId(), newId()];
    hub.registry.create(a);
    const r = await rest(
      hub,
      'POST',
      '/devices',
      [a, b].map((id) => ({ id, importMode: 'create' }))
    );
    expect(r).toMatchObject({
      status: 400,
      body: { isSuccessful: false, errors: [{ deviceId: a, errorCode: 'DeviceAlreadyExists' }] },
    });
    expect(hub.device(b)).toBeDefined();
    hub.failBulk({ resultBody: true, times: 1 });
    hub.failBulk({ resultBody: false, times: 1 });
    const withBody = await rest(hub, 'POST', '/devices', [{ id: c, importMode: 'create' }]);
    expect(withBody).toMatchObject({ status: 400, body: { isSuccessful: false, errors: [{ deviceId: c }] } });
    const without = await rest(hub, 'POST', '/devices', [{ id: c, importMode: 'create' }]);
    expect(without.status).toBe(400);
    expect(without.text).toContain('ErrorCode:ArgumentInvalid;');
    expect(hub.device(c)).toBeUndefined();
    // A device the hub refuses: named in a bulk result while the others are created; alone, a 400.
    const [d, e] = [newId(), newId()];
    hub.refuseDevice(d, { code: 'ArgumentInvalid', text: 'refused' });
    const named = await rest(
      hub,
      'POST',
      '/devices',
      [d, e].map((id) => ({ id, importMode: 'create' }))
    );
    expect(named).toMatchObject({
      status: 400,
      body: { isSuccessful: false, errors: [{ deviceId: d, errorCode: 'ArgumentInvalid', errorStatus: 'refused' }] },
    });
    expect([hub.device(d), hub.device(e)?.deviceId]).toEqual([undefined, e]);
    const alone = await rest(hub, 'PUT', `/devices/${d}`, { deviceId: d });
    expect(alone.status).toBe(400);
    expect(alone.text).toContain('ErrorCode:ArgumentInvalid;refused');
  });

  test('a disabled device is refused and shows its status', async () => {
    const hub = await startHub();
    const id = newId();
    hub.registry.create(id);
    hub.disableDevice(id, 'stolen');
    expect(await connectAs(hub, { deviceId: id })).toMatchObject({ ok: false });
    expect(hub.refusedConnections.at(-1)).toEqual({ identity: id, why: 'disabled' });
    expect((await rest(hub, 'GET', `/devices/${id}`)).body).toMatchObject({
      status: 'disabled',
      statusReason: 'stolen',
    });
  });

  test('a second connection on a device id kicks the real device, which reconnects (and kicks back)', async () => {
    const hub = await startHub();
    const id = newId();
    const device = await hub.startRealDevice(id);
    const c = await connectAs(hub, { deviceId: id });
    expect(c.ok).toBe(true);
    await waitUntil(() => device.disconnects === 1 && device.connected, 'the real device is kicked and reconnects');
    expect(hub.kicks(id)).toBeGreaterThanOrEqual(2);
    if (c.ok) await waitUntil(() => !c.client.connected, 'the intruder is kicked in turn');
  });
});
