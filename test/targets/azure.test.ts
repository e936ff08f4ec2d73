/**
 * The Azure IoT Hub target against the local double (test/azure-double): the real `azure-iothub` Registry over
 * HTTPS and the connector's MQTT twin client over TLS, with injected throttling and drops. The protocol, in
 * `reported` and `tags` mode; module mode, the hub's limits and the customer's devices are in azure-hub.test.ts.
 */
import { AzureIotHubDouble } from '../azure-double';
import { createAzureTarget, parseAzureTargetConfig } from '../../targets/azure';
import { azureBudgets } from '../../targets/azure/config';
import { applyPatch } from '../../record';
import type { SimEvent } from '../../record';
import type { EventItem, PublishItem, PublishOutcome, Target } from '../../targets/target';
import { createLogger } from '../../shared/log';

let hub: AzureIotHubDouble;
const logLines: string[] = [];
const allOutcomes: PublishOutcome[] = [];
const targets: Target[] = [];

beforeAll(async () => {
  // S3: these tests are about the protocol; the hub's S1 throttles and quota are in azure-hub.test.ts.
  hub = await AzureIotHubDouble.start({ tier: 'S3' });
});

afterEach(() => hub.clearFaults());

afterAll(async () => {
  await Promise.all(targets.map((t) => t.close()));
  await hub.stop();
});

function anyTarget(extra: Record<string, unknown> = {}): Target {
  const raw = {
    connectionString: hub.serviceConnectionString,
    serviceUrl: hub.serviceUrl,
    deviceHost: hub.deviceHost,
    ca: hub.ca,
    operationTimeoutMs: 5_000,
    ...extra,
  };
  const logger = createLogger({}, { level: 'debug', write: (line) => logLines.push(line) });
  const t = createAzureTarget(parseAzureTargetConfig(raw, 'azure'), { logger });
  targets.push(t);
  return t;
}

async function publish(t: Target, items: PublishItem[]): Promise<PublishOutcome[]> {
  const out = await t.publish(items);
  allOutcomes.push(...out);
  return out;
}

let seq = 0;
/** A fresh ICCID-like id per call so that tests never share devices. */
function newId(): string {
  return `89882${String(Date.now()).slice(-6)}${String(++seq).padStart(5, '0')}`;
}

function item(deviceId: string, patch: PublishItem['patch'], full = true): PublishItem {
  return { iccid: deviceId, deviceId, patch, full, state: applyPatch(undefined, patch) };
}

function bulkSizesSince(mark: number): number[] {
  return hub.restLog
    .slice(mark)
    .flatMap((e) => (e.method === 'POST' && e.path === '/devices' ? [e.bulkSize ?? 0] : []));
}

describe('reported mode', () => {
  const target = (extra: Record<string, unknown> = {}) => anyTarget({ mode: 'reported', ...extra });

  test('first publish creates the identities in bulk and the reported properties land exactly', async () => {
    const t = target();
    const ids = [newId(), newId(), newId()];
    const mark = hub.restLog.length;
    const out = await publish(
      t,
      ids.map((id, i) => item(id, { iccid: id, presenceLevel: 'ONLINE', dailySMS: i, Latitude: 48.1 }))
    );
    expect(out).toEqual(ids.map((id) => ({ iccid: id, status: 'ok' })));
    expect(bulkSizesSince(mark)).toEqual([3]);
    ids.forEach((id, i) => {
      expect(hub.reported(id)).toEqual({ iccid: id, presenceLevel: 'ONLINE', dailySMS: i, Latitude: 48.1 });
      expect(hub.twin(id)!.properties.reported.$version).toBe(2);
      // Marked as the connector's own device.
      expect(hub.twin(id)!.tags).toEqual({ kiteConnector: { createdBy: 'kite-cloud-connector' } });
    });
  });

  test('a later publish needs no identity operation, and each update is one PATCH without a twin GET', async () => {
    const t = target();
    const id = newId();
    const mark = hub.restLog.length;
    const twinMark = hub.twinLog.length;
    expect(await publish(t, [item(id, { iccid: id })])).toEqual([{ iccid: id, status: 'ok' }]);
    expect(await publish(t, [item(id, { ip: '10.0.0.1' }, false)])).toEqual([{ iccid: id, status: 'ok' }]);
    expect(hub.restLog.slice(mark).map((e) => `${e.method} ${e.path}`)).toEqual(['POST /devices']);
    expect(hub.twinLog.slice(twinMark).map((e) => `${e.op} ${e.status} ${e.billed}`)).toEqual([
      'PATCH 204 1',
      'PATCH 204 1',
    ]);
    expect(hub.reported(id)).toEqual({ iccid: id, ip: '10.0.0.1' });
  });

  test('250 new SIMs are created in bulk chunks of 100', async () => {
    const t = target({ identityOpsPerMinute: 100_000, twinUpdatesPerSecond: 10_000 });
    const ids = Array.from({ length: 250 }, newId);
    const mark = hub.restLog.length;
    const out = await publish(
      t,
      ids.map((id) => item(id, { iccid: id, presenceLevel: 'OFFLINE' }))
    );
    expect(out.filter((o) => o.status !== 'ok')).toEqual([]);
    expect(bulkSizesSince(mark)).toEqual([100, 100, 50]);
    expect(ids.every((id) => hub.reported(id)?.presenceLevel === 'OFFLINE')).toBe(true);
  });

  test('a later patch changes keys and null deletes them', async () => {
    const t = target();
    const id = newId();
    await publish(t, [item(id, { iccid: id, presenceLevel: 'ONLINE', ip: '10.1.1.1', apn: 'iot' })]);
    const out = await publish(t, [item(id, { presenceLevel: 'OFFLINE', ip: null, apn: null, dailyData: 12 }, false)]);
    expect(out).toEqual([{ iccid: id, status: 'ok' }]);
    expect(hub.reported(id)).toEqual({ iccid: id, presenceLevel: 'OFFLINE', dailyData: 12 });
    expect(hub.twin(id)!.properties.reported.$version).toBe(3);
  });

  test('after a restart an existing device needs no registry call: the token is signed with the policy', async () => {
    const id = newId();
    await publish(target(), [item(id, { iccid: id })]);
    const mark = hub.restLog.length;
    expect(await publish(target(), [item(id, { event: 'attach' }, false)])).toEqual([{ iccid: id, status: 'ok' }]);
    expect(hub.restLog.slice(mark)).toEqual([]);
    expect(hub.reported(id)).toEqual({ iccid: id, event: 'attach' });
  });

  test('never two connections for one device id, even when it appears twice in a batch and publishes overlap', async () => {
    const t = target({ maxConnections: 4 });
    const [a, b] = [newId(), newId()];
    await publish(t, [item(a, { iccid: a }), item(b, { iccid: b })]);
    const batch1 = [item(a, { dailySMS: 1 }, false), item(b, { dailySMS: 1 }, false), item(a, { dailySMS: 2 }, false)];
    const batch2 = [item(a, { dailySMS: 3, event: 'x' }, false), item(a, { event: null }, false)];
    const [out1, out2] = await Promise.all([publish(t, batch1), publish(t, batch2)]);
    expect([...out1, ...out2].every((o) => o.status === 'ok')).toBe(true);
    expect(hub.maxConcurrentConnections(a)).toBe(1);
    expect(hub.maxConcurrentConnections(b)).toBe(1);
    // Order per device is kept: batch 1's two patches share one connection, then batch 2's.
    expect(hub.reported(a)).toEqual({ iccid: a, dailySMS: 3 });
    expect(hub.connectionsOpened(a)).toBe(3);
  });

  test('res/429 with an errorCode body → throttled, nothing marked ok, and the twin class pauses', async () => {
    const t = target();
    const id = newId();
    await publish(t, [item(id, { iccid: id })]);
    hub.failTwin({ status: 429, body: 'errorCode', times: 1 });
    const [out] = await publish(t, [item(id, { presenceLevel: 'ONLINE' }, false)]);
    expect(out).toMatchObject({ iccid: id, status: 'throttled' });
    expect(out.status === 'throttled' && out.retryAfterMs).toBeGreaterThanOrEqual(10_000);
    expect(hub.reported(id)).toEqual({ iccid: id });
    // The pause applies to every device of the target: the next item is not even sent.
    const other = newId();
    const opened = hub.twinLog.length;
    const [next] = await publish(t, [item(other, { iccid: other })]);
    expect(next.status).toBe('throttled');
    expect(hub.twinLog.length).toBe(opened);
  });

  test('an empty-body res/429 (which the SDK alone reports as success) is still throttled', async () => {
    const t = target();
    const id = newId();
    await publish(t, [item(id, { iccid: id })]);
    hub.failTwin({ status: 429, body: 'empty', times: 1 });
    const [out] = await publish(t, [item(id, { presenceLevel: 'ONLINE' }, false)]);
    expect(out).toMatchObject({ iccid: id, status: 'throttled' });
    expect(hub.twinLog.at(-1)).toEqual({ deviceId: id, op: 'PATCH', status: 429 });
    expect(hub.reported(id)).toEqual({ iccid: id });
  });

  test('a 5xx twin response is retryable, a 400 is permanent', async () => {
    const t = target();
    const id = newId();
    await publish(t, [item(id, { iccid: id })]);
    hub.failTwin({ status: 503, body: 'empty', times: 1 });
    expect((await publish(t, [item(id, { ip: '1' }, false)]))[0].status).toBe('retryable');
    hub.failTwin({ status: 400, body: 'errorCode', times: 1 });
    expect((await publish(t, [item(id, { ip: '1' }, false)]))[0].status).toBe('permanent');
  });

  test('a dropped connection during the patch → retryable, and later items of that device are not sent', async () => {
    const t = target();
    const id = newId();
    await publish(t, [item(id, { iccid: id })]);
    hub.failTwin({ status: 0, times: 1 });
    const out = await publish(t, [item(id, { ip: '10.0.0.9' }, false), item(id, { ip: '10.0.0.10' }, false)]);
    expect(out.map((o) => o.status)).toEqual(['retryable', 'retryable']);
    expect(hub.reported(id)).toEqual({ iccid: id });
  });

  test('a policy without DeviceConnect: the connector falls back to each device key (one get per device)', async () => {
    const id = newId();
    await publish(target(), [item(id, { iccid: id })]);
    const t = target({ connectionString: hub.connectionStringFor('registryReadWrite') });
    const mark = hub.restLog.length;
    expect(await publish(t, [item(id, { ip: '2' }, false)])).toEqual([{ iccid: id, status: 'ok' }]);
    expect(await publish(t, [item(id, { ip: '3' }, false)])).toEqual([{ iccid: id, status: 'ok' }]);
    // The refused policy token is diagnosed once (the device exists and is enabled), then the key is read once.
    expect(hub.restLog.slice(mark).map((e) => `${e.method} ${e.path} ${e.status}`)).toEqual([
      `GET /devices/${id} 200`,
      `GET /devices/${id} 200`,
    ]);
    expect(hub.reported(id)).toEqual({ iccid: id, ip: '3' });
  });
});

describe('identity operations', () => {
  const target = (extra: Record<string, unknown> = {}) => anyTarget({ mode: 'reported', ...extra });

  test('429 on the bulk create → throttled for every new SIM, with the hub throttle backoff', async () => {
    const t = target();
    hub.failRest({ op: 'identity', times: 1 });
    const ids = [newId(), newId()];
    const out = await publish(
      t,
      ids.map((id) => item(id, { iccid: id }))
    );
    expect(out.map((o) => o.status)).toEqual(['throttled', 'throttled']);
    expect(out.every((o) => o.status === 'throttled' && o.retryAfterMs >= 10_000)).toBe(true);
    expect(ids.some((id) => hub.device(id))).toBe(false);
  });

  test('429 on a single create → throttled; Retry-After is honoured when longer', async () => {
    const t = target();
    hub.failRest({ op: 'identity', times: 1, retryAfterSeconds: 30 });
    const [out] = await publish(t, [item(newId(), { iccid: 'x' })]);
    expect(out).toMatchObject({ status: 'throttled', retryAfterMs: 30_000 });
    expect(out.status === 'throttled' && out.reason).toContain('429 ThrottlingBacklogTimeout');
  });

  test('the identity budget is client-side too: beyond it, items come back throttled without a request', async () => {
    const t = target({ identityOpsPerMinute: 3 }); // a client-side burst of 2 (90 % of 3)
    const ids = [newId(), newId(), newId(), newId()];
    const mark = hub.restLog.length;
    const out = await publish(
      t,
      ids.map((id) => item(id, { iccid: id }))
    );
    expect(out.map((o) => o.status)).toEqual(['ok', 'ok', 'throttled', 'throttled']);
    expect(bulkSizesSince(mark)).toEqual([2]);
  });

  test('a wrong service key → retryable (nothing lost) with a reason saying what the mode needs', async () => {
    const bad = hub.serviceConnectionString.replace(/SharedAccessKey=[^;]+/, 'SharedAccessKey=d3Jvbmcta2V5');
    const failures = hub.authFailures;
    const [out] = await publish(target({ connectionString: bad }), [item(newId(), { iccid: 'y' })]);
    expect(out).toMatchObject({ status: 'retryable' });
    expect(out.status === 'retryable' && out.reason).toContain(
      "mode 'reported' needs a policy with RegistryReadWrite, ServiceConnect and DeviceConnect"
    );
    expect(hub.authFailures).toBe(failures + 1);
  });
});

describe('tags mode', () => {
  const target = (extra: Record<string, unknown> = {}) => anyTarget({ mode: 'tags', ...extra });

  test('writes tags with PATCH /twins and If-Match, null deletes, reported untouched', async () => {
    const t = target();
    const id = newId();
    const mark = hub.restLog.length;
    expect(await publish(t, [item(id, { iccid: id, alias: 'pump-7', country: 'DE' })])).toEqual([
      { iccid: id, status: 'ok' },
    ]);
    expect(await publish(t, [item(id, { alias: null, operator: 'Telefonica' }, false)])).toEqual([
      { iccid: id, status: 'ok' },
    ]);
    const twin = hub.twin(id)!;
    expect(twin.tags).toEqual({ iccid: id, country: 'DE', operator: 'Telefonica' });
    expect(hub.reported(id)).toEqual({});
    const patches = hub.restLog.slice(mark).filter((e) => e.method === 'PATCH' && e.status === 200);
    expect(patches.map((e) => [e.path, e.ifMatch])).toEqual([
      [`/twins/${id}`, '"*"'],
      [`/twins/${id}`, '"*"'],
    ]);
    expect(hub.connectionsOpened(id)).toBe(0);
  });

  test('an existing device needs no identity operation at all, not even a lookup', async () => {
    const id = newId();
    hub.registry.create(id);
    const mark = hub.restLog.length;
    expect(await publish(target(), [item(id, { iccid: id })])).toEqual([{ iccid: id, status: 'ok' }]);
    expect(hub.restLog.slice(mark).map((e) => `${e.method} ${e.path}`)).toEqual([`PATCH /twins/${id}`]);
  });

  test('429 on the twin PATCH → throttled', async () => {
    const t = target();
    const id = newId();
    await publish(t, [item(id, { iccid: id })]);
    hub.failRest({ op: 'twin', times: 1 });
    expect((await publish(t, [item(id, { alias: 'a' }, false)]))[0]).toMatchObject({ status: 'throttled' });
    expect(hub.twin(id)!.tags).toEqual({ iccid: id });
  });
});

describe('connectivity events', () => {
  const event = (iccid: string, type: SimEvent['type'], after: string = 'b'): SimEvent => ({
    id: `${iccid}-${type}`,
    type,
    group: 'fleet',
    iccid,
    before: 'a',
    after,
    at: 1_764_000_000_000,
  });

  test("each event is one billed device-to-cloud message of the SIM's module, with kiteEvent=<type> to route on", async () => {
    const t = anyTarget();
    const id = newId();
    expect(await publish(t, [item(id, { iccid: id, imei: '356938035643809' })])).toEqual([{ iccid: id, status: 'ok' }]);
    const events: EventItem[] = [
      { iccid: id, deviceId: id, events: [event(id, 'imeiChanged'), event(id, 'countryChanged')] },
    ];
    expect(await t.publishEvents!(events)).toEqual([{ iccid: id, status: 'ok' }]);
    const received = hub.d2c.filter((m) => m.deviceId === id);
    expect(received).toEqual(
      events[0].events.map((e) => ({
        deviceId: id,
        moduleId: 'kite',
        properties: { kiteEvent: e.type, '$.mid': e.id, '$.ct': 'application/json', '$.ce': 'utf-8' },
        body: JSON.stringify(e),
        billed: 1,
      }))
    );
  });

  test('a message over 256 KB is refused by the hub (connection closed, no acknowledgement): not ok', async () => {
    const t = anyTarget();
    const id = newId();
    await publish(t, [item(id, { iccid: id })]);
    const [outcome] = await t.publishEvents!([
      { iccid: id, deviceId: id, events: [event(id, 'imeiChanged', 'x'.repeat(300_000))] },
    ]);
    expect(outcome.status).not.toBe('ok');
    expect(hub.d2c.filter((m) => m.deviceId === id)).toEqual([]);
  });

  test('tags mode has no device connection: events are refused for good, with what to change', async () => {
    const t = anyTarget({ mode: 'tags' });
    const id = newId();
    const [outcome] = await t.publishEvents!([{ iccid: id, deviceId: id, events: [event(id, 'imeiChanged')] }]);
    expect(outcome).toMatchObject({
      status: 'permanent',
      reason: expect.stringMatching(/use mode 'module' or 'reported'/),
    });
  });
});

describe('configuration', () => {
  test('defaults are the S1 budgets', () => {
    const config = parseAzureTargetConfig({ connectionString: hub.serviceConnectionString }, 'azure');
    expect(config).toMatchObject({ mode: 'module', moduleId: 'kite', tier: 'S1', units: 1, maxConnections: 32 });
    expect(azureBudgets(config)).toEqual({
      identityOpsPerMinute: 100,
      twinUpdatesPerSecond: 50,
      connectionsPerSecond: 100,
      dailyMessageBudget: 400_000,
      messageChunkBytes: 4096,
    });
    const s3 = parseAzureTargetConfig({ connectionString: hub.serviceConnectionString, tier: 'S3', units: 2 }, 'a');
    expect(azureBudgets(s3)).toMatchObject({ identityOpsPerMinute: 10_000, twinUpdatesPerSecond: 500 });
  });

  test('errors name the setting and never echo a secret', () => {
    const secret = 'c2VjcmV0LXNlY3JldA==';
    const bad = [
      { connectionString: `HostName=h;SharedAccessKey=${secret}` },
      { connectionString: hub.serviceConnectionString, mode: 'desired' },
      { connectionString: hub.serviceConnectionString, twinUpdatesPerSecond: 0 },
      { connectionString: hub.serviceConnectionString, serviceUrl: `http://x/?sig=${secret}` },
      { connectionString: hub.serviceConnectionString, bogus: secret },
      { connectionString: hub.serviceConnectionString, tier: 'B1' },
      { connectionString: hub.serviceConnectionString, tier: 'S3', units: 11 },
      { connectionString: hub.serviceConnectionString, moduleId: 'kite module' },
    ];
    const messages = bad.map((raw) => {
      try {
        parseAzureTargetConfig(raw, 'hub1');
        return 'accepted';
      } catch (err) {
        return (err as Error).message;
      }
    });
    expect(messages).toEqual([
      expect.stringContaining('targets.hub1.connectionString'),
      expect.stringContaining('targets.hub1.mode'),
      expect.stringContaining('targets.hub1.twinUpdatesPerSecond'),
      expect.stringContaining('targets.hub1.serviceUrl'),
      expect.stringContaining('targets.hub1.bogus'),
      expect.stringMatching(/targets\.hub1\.tier.*unknown tier "B1".*basic tiers have no device twins/),
      expect.stringMatching(/targets\.hub1\.units.*at most 10 units/),
      expect.stringContaining('targets.hub1.moduleId'),
    ]);
    for (const m of messages) expect(m).not.toContain(secret);
  });
});

test('no key, SAS or connection string in any reason or log line', () => {
  const secrets = [
    hub.policyKey,
    ...hub.deviceIds().map((id) => hub.device(id)!.authentication.symmetricKey.primaryKey),
  ];
  const text = JSON.stringify(allOutcomes) + '\n' + logLines.join('\n');
  expect(allOutcomes.length).toBeGreaterThan(250);
  expect(logLines.length).toBeGreaterThan(0);
  for (const secret of secrets) expect(text).not.toContain(secret);
  expect(text).not.toMatch(/SharedAccessSignature|SharedAccessKey=|sig=/);
});
