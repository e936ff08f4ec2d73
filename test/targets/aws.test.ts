/**
 * The AWS IoT target against moto's server behind a strict front (`strict-aws.ts`) that enforces what moto lacks:
 * the 8 KB merged shadow (413), 20 requests/s and 10 in flight per thing (429), CreateThing's 409 for other
 * attributes. Things are created, shadows read back and compared with the records; throttling and server errors
 * come from a proxy in front of that which answers with real 429/503.
 */
import { DescribeThingCommand, IoTClient } from '@aws-sdk/client-iot';
import { GetThingShadowCommand, IoTDataPlaneClient, UpdateThingShadowCommand } from '@aws-sdk/client-iot-data-plane';
import { AwsIotTarget, SHADOW_STATE_LIMIT_BYTES, type AwsTargetDeps } from '../../targets/aws';
import { localBudgets, type Budgets } from '../../shared/limits';
import { parseTargetConfig, type AwsTargetConfig } from '../../targets/config';
import type { PublishOutcome } from '../../targets/target';
import { startMoto, type MotoServer } from '../setup/moto';
import { isShadowRequest, startFaultProxy, type FaultProxy } from './fault-proxy';
import type { SimEvent } from '../../record';
import type { EventItem } from '../../targets/target';
import { startStrictAwsPeer, type StrictAwsPeer } from './strict-aws';
import { fullItem, merged, nextIccid, patchItem, quietLogger, sampleRecord } from './fixtures';

const REGION = 'eu-west-1';
const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing-secret-key' };

let moto: MotoServer;
let strict: StrictAwsPeer;
let iot: IoTClient;
let data: IoTDataPlaneClient;
const targets: AwsIotTarget[] = [];

beforeAll(async () => {
  moto = await startMoto();
  strict = await startStrictAwsPeer(moto.url);
  const peer = { region: REGION, endpoint: moto.url, credentials: { ...CREDENTIALS } };
  iot = new IoTClient(peer);
  data = new IoTDataPlaneClient(peer);
});

afterAll(async () => {
  await Promise.all(targets.map((t) => t.close()));
  iot?.destroy();
  data?.destroy();
  await strict?.close();
  await moto?.stop();
});

function awsTarget(
  overrides: Record<string, unknown> = {},
  endpoint = strict.url,
  deps: AwsTargetDeps = {}
): AwsIotTarget {
  const raw = {
    type: 'aws',
    region: REGION,
    endpoint,
    controlEndpoint: endpoint,
    credentials: CREDENTIALS,
    requestsPerSecond: 1000,
    ...overrides,
  };
  const config = parseTargetConfig(raw, 'aws-test') as AwsTargetConfig;
  const target = new AwsIotTarget(config, { logger: quietLogger(), ...deps });
  targets.push(target);
  return target;
}

async function reported(thingName: string, shadowName?: string): Promise<Record<string, unknown>> {
  const res = await data.send(new GetThingShadowCommand({ thingName, shadowName }));
  return JSON.parse(new TextDecoder().decode(res.payload)).state.reported;
}

async function shadowStatus(thingName: string, shadowName?: string): Promise<number | undefined> {
  try {
    await data.send(new GetThingShadowCommand({ thingName, shadowName }));
    return 200;
  } catch (err) {
    return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  }
}

const ok = (iccid: string): PublishOutcome => ({ iccid, status: 'ok' });

describe('AWS IoT target (moto)', () => {
  it('creates things with identity attributes and publishes every key on first publish', async () => {
    const records = [sampleRecord(), sampleRecord(), sampleRecord(nextIccid(), { alias: undefined, ip: undefined })];
    const outcomes = await awsTarget().publish(records.map((r) => fullItem(r)));

    expect(outcomes).toEqual(records.map((r) => ok(r.iccid)));
    for (const record of records) {
      const expected = Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
      expect(await reported(record.iccid)).toEqual(expected);
    }
    const thing = await iot.send(new DescribeThingCommand({ thingName: records[0].iccid }));
    // Spaces are not allowed in attribute values: the alias keeps its text with `_`.
    expect(thing.attributes).toEqual({
      iccid: records[0].iccid,
      imei: records[0].imei,
      alias: records[0].alias!.replace(' ', '_'),
    });
  });

  it('applies a change patch: changed keys merge, a null removes the key', async () => {
    const target = awsTarget();
    const record = sampleRecord();
    await target.publish([fullItem(record)]);
    const patch = { ip: null, dailyData: 250, presenceLevel: 'GPRS' };

    expect(await target.publish([patchItem(record.iccid, patch)])).toEqual([ok(record.iccid)]);
    const shadow = await reported(record.iccid);
    expect(shadow).toEqual(merged(record, patch));
    expect(shadow).not.toHaveProperty('ip');
  });

  it('sends several changes of one SIM in a call in order', async () => {
    const record = sampleRecord();
    const items = [fullItem(record), ...[2, 3, 4].map((n) => patchItem(record.iccid, { ip: `10.0.0.${n}` }))];

    const outcomes = await awsTarget().publish(items);
    expect(outcomes).toEqual(items.map((i) => ok(i.iccid)));
    expect(await reported(record.iccid)).toEqual({ ...record, ip: '10.0.0.4' });
  });

  it('writes a named shadow and leaves the classic shadow alone', async () => {
    const record = sampleRecord();
    const outcomes = await awsTarget({ shadowName: 'connectivity' }).publish([fullItem(record)]);

    expect(outcomes).toEqual([ok(record.iccid)]);
    expect(await reported(record.iccid, 'connectivity')).toEqual(record);
    expect(await shadowStatus(record.iccid)).toBe(404);
  });

  it('uses the item deviceId as the thing name', async () => {
    const record = sampleRecord();
    const outcomes = await awsTarget().publish([fullItem(record, `sim-${record.iccid}`)]);

    expect(outcomes).toEqual([ok(record.iccid)]);
    expect(await reported(`sim-${record.iccid}`)).toEqual(record);
  });

  it('fails a SIM over 8 KB as permanent without sending it, and publishes the others', async () => {
    const big = sampleRecord(nextIccid(), { alias: 'x'.repeat(SHADOW_STATE_LIMIT_BYTES) });
    const small = sampleRecord();
    const [bigOutcome, smallOutcome] = await awsTarget().publish([fullItem(big), fullItem(small)]);

    expect(bigOutcome).toMatchObject({ iccid: big.iccid, status: 'permanent' });
    expect((bigOutcome as { reason: string }).reason).toMatch(/over the 8192-byte shadow limit/);
    expect(smallOutcome).toEqual(ok(small.iccid));
    expect(await shadowStatus(big.iccid)).toBe(404);
  });

  it('fails a SIM whose merged shadow would exceed 8 KB (AWS 413) with a clear reason, and publishes the others', async () => {
    const target = awsTarget();
    const grown = sampleRecord(nextIccid(), { alias: 'a'.repeat(5_000) });
    const other = sampleRecord();
    await target.publish([fullItem(grown)]);
    const patch = { commsModModel: 'm'.repeat(4_000) }; // under 8 KB itself; the merged document is over
    const outcomes = await target.publish([patchItem(grown.iccid, patch), fullItem(other)]);

    expect(outcomes[0]).toMatchObject({ iccid: grown.iccid, status: 'permanent' });
    expect((outcomes[0] as { reason: string }).reason).toMatch(/merged shadow would exceed 8 KB.*413 RequestEntityTooLargeException/); // prettier-ignore
    expect(outcomes[1]).toEqual(ok(other.iccid));
    expect(await reported(grown.iccid)).toEqual(grown); // AWS kept the shadow as it was
    expect(strict.refused).toContainEqual(expect.objectContaining({ status: 413, thing: grown.iccid }));
  });

  it('keeps the shadow when a thing exists with other attributes (CreateThing 409), and publishes', async () => {
    const record = sampleRecord();
    await awsTarget().publish([fullItem(record)]);
    // A new worker (no memory of created things) publishes the SIM in full again after its alias changed.
    const renamed = { ...record, alias: 'renamed', ip: '10.1.2.3' };
    expect(await awsTarget().publish([fullItem(renamed)])).toEqual([ok(record.iccid)]);

    expect(strict.refused).toContainEqual(expect.objectContaining({ status: 409, thing: record.iccid }));
    expect(await reported(record.iccid)).toEqual(renamed);
    const thing = await iot.send(new DescribeThingCommand({ thingName: record.iccid }));
    expect(thing.attributes?.alias).toBe(record.alias!.replace(' ', '_')); // AWS did not change it
  });

  it('answers 429 beyond 10 in flight or 20 requests/s per thing', async () => {
    const record = sampleRecord();
    await awsTarget().publish([fullItem(record)]);
    // Another writer of the same thing (a device, a second tool) sends 30 updates at once.
    const other = new IoTDataPlaneClient({ region: REGION, endpoint: strict.url, credentials: { ...CREDENTIALS }, maxAttempts: 1 }); // prettier-ignore
    const statuses = await Promise.all(
      Array.from(
        { length: 30 },
        (_, n) =>
        other
          .send(new UpdateThingShadowCommand({ thingName: record.iccid, payload: JSON.stringify({ state: { reported: { dailySMS: n } } }) })) // prettier-ignore
          .then(() => 200)
          .catch((e: { $metadata?: { httpStatusCode?: number }; name?: string }) => `${e.$metadata?.httpStatusCode} ${e.name}`) // prettier-ignore
      )
    );
    other.destroy();

    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(20);
    expect(statuses.filter((s) => s === '429 ThrottlingException').length).toBeGreaterThanOrEqual(10);
  });

  it('reports a per-thing 429 as throttled, for the next attempt', async () => {
    const slow = await startStrictAwsPeer(moto.url, { perThingPerSecond: 1 });
    try {
      const record = sampleRecord();
      const target = awsTarget({}, slow.url);
      await target.publish([fullItem(record)]);
      const [outcome] = await target.publish([patchItem(record.iccid, { ip: '10.0.0.77' })]); // within the second

      expect(outcome).toMatchObject({ iccid: record.iccid, status: 'throttled', retryAfterMs: expect.any(Number) });
      expect((outcome as { reason: string }).reason).toMatch(/429 ThrottlingException/);
    } finally {
      await slow.close();
    }
  });

  it('creates a missing thing on 404 and retries once, for a change patch', async () => {
    const iccid = nextIccid(); // never published, so no thing exists: moto answers 404
    const outcomes = await awsTarget().publish([patchItem(iccid, { ip: '10.9.9.9' })]);

    expect(outcomes).toEqual([ok(iccid)]);
    expect(await reported(iccid)).toEqual({ ip: '10.9.9.9' });
  });

  it('reports a missing thing as permanent when createThings is off (where shadows need a registered thing)', async () => {
    const iccid = nextIccid(); // moto itself answers 404; whether AWS does is not confirmed (clouds.md §2.4)
    const [outcome] = await awsTarget({ createThings: false }, moto.url).publish([fullItem(sampleRecord(iccid))]);

    expect(outcome).toMatchObject({ iccid, status: 'permanent' });
    expect((outcome as { reason: string }).reason).toMatch(/no such thing and createThings is off/);
  });

  it('refuses a device id that is not a valid thing name', async () => {
    const record = sampleRecord();
    const [outcome] = await awsTarget().publish([fullItem(record, 'truck 12')]);

    expect(outcome).toMatchObject({ status: 'permanent', reason: expect.stringMatching(/not valid for AWS IoT/) });
  });

  it('answers every item when cancelled, without sending', async () => {
    const records = [sampleRecord(), sampleRecord()];
    const outcomes = await awsTarget().publish(
      records.map((r) => fullItem(r)),
      AbortSignal.abort()
    );

    expect(outcomes.map((o) => [o.iccid, o.status])).toEqual(records.map((r) => [r.iccid, 'retryable']));
    expect(await shadowStatus(records[0].iccid)).toBe(404);
  });

  describe('behind a fault-injecting proxy', () => {
    let proxy: FaultProxy;
    beforeEach(async () => {
      proxy = await startFaultProxy(strict.url);
    });
    afterEach(() => proxy.close());

    it('publishes each connectivity event with iot-data Publish, QoS 1, on kite/{group}/{iccid}/events', async () => {
      const target = awsTarget({}, proxy.url);
      const iccid = nextIccid();
      const event = (type: SimEvent['type']): SimEvent => ({
        id: `${iccid}-${type}`,
        type,
        group: 'fleet',
        iccid,
        before: 'a',
        after: 'b',
        at: 1_764_000_000_000,
      });
      const items: EventItem[] = [{ iccid, deviceId: iccid, events: [event('imeiChanged'), event('leftGroup')] }];
      expect(await target.publishEvents(items, undefined, { group: 'fleet' })).toEqual([ok(iccid)]);
      const publishes = proxy.seen.filter((r) => r.path.startsWith('/topics/'));
      expect(publishes).toHaveLength(2);
      for (const r of publishes) {
        expect(r.method).toBe('POST');
        const url = new URL(r.path, 'http://x');
        expect(decodeURIComponent(url.pathname)).toBe(`/topics/kite/fleet/${iccid}/events`);
        expect(url.searchParams.get('qos')).toBe('1');
      }
    });

    /** Answers the first `n` shadow requests with `status`, forwards the rest to moto. */
    function failShadowRequests(n: number, status: number, headers?: Record<string, string>) {
      let failed = 0;
      proxy.inject = (req) => {
        if (!isShadowRequest(req) || failed >= n) return undefined;
        failed++;
        const type =
          status === 429
            ? 'ThrottlingException'
            : status === 413
              ? 'RequestEntityTooLargeException'
              : 'ServiceUnavailableException';
        return {
          status,
          headers: { 'x-amzn-errortype': type, ...headers },
          body: JSON.stringify({ message: `injected ${status}` }),
        };
      };
    }
    const shadowRequests = () => proxy.seen.filter((r) => /\/shadow/.test(r.path)).length;

    it('by default sends a shadow update once per call: a 429 or a 503 is left to the next attempt', async () => {
      failShadowRequests(2, 429, { 'retry-after': '3' });
      const target = awsTarget({}, proxy.url);
      const record = sampleRecord();

      expect(await target.publish([fullItem(record)])).toEqual([
        { iccid: record.iccid, status: 'throttled', retryAfterMs: 3000, reason: expect.stringMatching(/429/) },
      ]);
      expect(shadowRequests()).toBe(1);
      expect(await target.publish([fullItem(record)])).toMatchObject([{ status: 'throttled' }]);
      expect(shadowRequests()).toBe(2);
      expect(await target.publish([fullItem(record)])).toEqual([ok(record.iccid)]);
      expect(shadowRequests()).toBe(3);
    });

    it('succeeds when a 429 clears within the SDK retries', async () => {
      failShadowRequests(1, 429);
      const record = sampleRecord();
      const outcomes = await awsTarget({ maxAttempts: 3 }, proxy.url).publish([fullItem(record)]);

      expect(outcomes).toEqual([ok(record.iccid)]);
      expect(shadowRequests()).toBe(2);
      expect(await reported(record.iccid)).toEqual(record);
    });

    it('maps persistent 429 to throttled, with the advertised Retry-After', async () => {
      failShadowRequests(Infinity, 429, { 'retry-after': '1' });
      const record = sampleRecord();
      const [outcome] = await awsTarget({ maxAttempts: 2 }, proxy.url).publish([fullItem(record)]);

      expect(outcome).toMatchObject({ iccid: record.iccid, status: 'throttled', retryAfterMs: 1000 });
      expect((outcome as { reason: string }).reason).toMatch(/throttled after 2 attempt/);
      expect(shadowRequests()).toBe(2);
    });

    it('maps persistent 5xx to retryable after the SDK retries', async () => {
      failShadowRequests(Infinity, 503);
      const record = sampleRecord();
      const [outcome] = await awsTarget({ maxAttempts: 2 }, proxy.url).publish([fullItem(record)]);

      expect(outcome).toMatchObject({ iccid: record.iccid, status: 'retryable' });
      expect((outcome as { reason: string }).reason).toMatch(/failed after 2 attempt.*503 ServiceUnavailableException/);
      expect(shadowRequests()).toBe(2);
    });

    it("takes a token of the account's budget for every request, the SDK's own retries included", async () => {
      failShadowRequests(2, 503);
      const taken = new Map<string, number>();
      const local = localBudgets();
      const budgets: Budgets = {
        rate(peer, limit) {
          const budget = local.rate(peer, limit);
          const take = budget.take.bind(budget);
          budget.take = (n = 1, signal) => {
            const kind = peer.slice(peer.lastIndexOf(':') + 1);
            taken.set(kind, (taken.get(kind) ?? 0) + n);
            return take(n, signal);
          };
          return budget;
        },
        daily: (peer, limit) => local.daily(peer, limit),
      };
      const record = sampleRecord();
      const target = awsTarget({ maxAttempts: 3 }, proxy.url, { budgets });

      expect(await target.publish([fullItem(record)])).toEqual([ok(record.iccid)]);
      expect(shadowRequests()).toBe(3);
      const creates = proxy.seen.filter((r) => r.path === `/things/${record.iccid}`).length;
      expect(creates).toBe(1);
      expect(Object.fromEntries(taken)).toEqual({ shadow: 3, 'create-thing': 1 });
    });

    it('creates each thing once per process, even when a SIM is published in full again', async () => {
      const target = awsTarget({}, proxy.url);
      const record = sampleRecord();
      await target.publish([fullItem(record)]);
      await target.publish([fullItem({ ...record, ip: '10.0.0.99' })]);

      const creates = proxy.seen.filter((r) => r.path === `/things/${record.iccid}`);
      expect(creates).toHaveLength(1);
      expect(shadowRequests()).toBe(2);
      expect(await reported(record.iccid)).toEqual({ ...record, ip: '10.0.0.99' });
    });

    it('maps 413 from AWS (merged document too large) to permanent, without retrying', async () => {
      failShadowRequests(Infinity, 413);
      const record = sampleRecord();
      const [outcome] = await awsTarget({ maxAttempts: 3 }, proxy.url).publish([fullItem(record)]);

      expect(outcome).toMatchObject({ iccid: record.iccid, status: 'permanent' });
      expect((outcome as { reason: string }).reason).toMatch(/exceed 8 KB/);
      expect(shadowRequests()).toBe(1);
    });
  });
});
