/**
 * The MQTT target against Mosquitto: a real subscriber checks retained payloads, topics and QoS; a broker of
 * the test's own is stopped and restarted to check connection loss and reconnection.
 */
import net from 'node:net';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { parseTargetConfig, type MqttTargetConfig } from '../../targets/config';
import type { SimEvent } from '../../record';
import { MqttTarget } from '../../targets/mqtt';
import type { EventItem } from '../../targets/target';
import { freePort, startMosquitto, stop } from '../setup/processes';
import { testStack, uniqueName } from '../setup/stack';
import { fullItem, merged, patchItem, quietLogger, sampleRecord } from './fixtures';
import { waitUntil } from '../support/wait-until';

interface Received {
  topic: string;
  payload: unknown;
  retain: boolean;
  qos: number;
  contentType?: string;
}

const targets: MqttTarget[] = [];
const clients: MqttClient[] = [];

afterAll(async () => {
  await Promise.all(targets.map((t) => t.close()));
  await Promise.all(clients.map((c) => c.endAsync(true)));
});

function mqttTarget(overrides: Record<string, unknown> = {}): MqttTarget {
  const raw = { type: 'mqtt', url: testStack.mqttUrl, ...overrides };
  const target = new MqttTarget(parseTargetConfig(raw, 'mqtt-test') as MqttTargetConfig, { logger: quietLogger() });
  targets.push(target);
  return target;
}

/** Subscribes with QoS 1 and collects messages; resolves once the subscription is acknowledged. */
async function subscriber(filter: string, protocolVersion: 4 | 5 = 4) {
  const client = await mqtt.connectAsync(testStack.mqttUrl, { protocolVersion, reconnectPeriod: 0 });
  clients.push(client);
  const messages: Received[] = [];
  client.on('message', (topic, payload, packet: IPublishPacket) => {
    const body = payload.length ? JSON.parse(payload.toString()) : '';
    const contentType = packet.properties?.contentType;
    messages.push({ topic, payload: body, retain: packet.retain, qos: packet.qos, contentType });
  });
  await client.subscribeAsync(filter, { qos: 1 });
  /** Waits until `count` messages have arrived (fails the test on timeout). */
  const waitFor = async (count: number, timeoutMs = 5000) => {
    const deadline = Date.now() + timeoutMs;
    while (messages.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(messages.length).toBeGreaterThanOrEqual(count);
    return messages;
  };
  return { client, messages, waitFor };
}

/** Clears retained messages the test left on the shared broker. */
async function clearRetained(topics: string[]) {
  const client = await mqtt.connectAsync(testStack.mqttUrl, { reconnectPeriod: 0 });
  await Promise.all(topics.map((t) => client.publishAsync(t, '', { qos: 1, retain: true })));
  await client.endAsync();
}

describe('MQTT target (Mosquitto)', () => {
  it("retains each SIM's full state on its state topic and sends the patch, not retained, on its changes topic", async () => {
    const group = uniqueName('grp');
    const target = mqttTarget();
    const [a, b] = [sampleRecord(), sampleRecord()];
    const stateOf = (iccid: string) => `kite/${group}/${iccid}/reported`;
    const changesOf = (iccid: string) => `kite/${group}/${iccid}/changes`;
    const changes = await subscriber(`kite/${group}/+/changes`);

    const first = await target.publish([fullItem(a), fullItem(b)], undefined, { group });
    expect(first).toEqual([
      { iccid: a.iccid, status: 'ok' },
      { iccid: b.iccid, status: 'ok' },
    ]);
    const late = await subscriber(`kite/${group}/+/reported`);
    const retained = await late.waitFor(2);
    expect(retained.map((m) => m.topic).sort()).toEqual([stateOf(a.iccid), stateOf(b.iccid)].sort());
    for (const m of retained) {
      expect(m).toMatchObject({ retain: true, qos: 1 });
      expect(m.payload).toEqual(m.topic === stateOf(a.iccid) ? a : b);
    }
    expect((await changes.waitFor(2)).map((m) => m.topic).sort()).toEqual(
      [changesOf(a.iccid), changesOf(b.iccid)].sort()
    );

    const change = { ip: null, presenceLevel: 'GPRS' };
    const item = patchItem(a.iccid, change, a.iccid, a);
    expect(await target.publish([item], undefined, { group })).toEqual([{ iccid: a.iccid, status: 'ok' }]);
    const [patch] = (await changes.waitFor(3)).slice(2);
    expect(patch).toMatchObject({ topic: changesOf(a.iccid), payload: change, qos: 1, retain: false });
    const [live] = (await late.waitFor(3)).slice(2);
    expect(live).toMatchObject({ topic: stateOf(a.iccid), payload: merged(a, change), qos: 1 });

    const later = await subscriber(`kite/${group}/${a.iccid}/+`);
    const [state] = await later.waitFor(1);
    expect(state).toMatchObject({ topic: stateOf(a.iccid), payload: merged(a, change), retain: true });
    expect(Object.values(state.payload as object)).not.toContain(null);
    expect(later.messages).toHaveLength(1); // the changes topic keeps nothing for a late subscriber
    await clearRetained([stateOf(a.iccid), stateOf(b.iccid)]);
  });

  it('sends each connectivity event as one QoS 1 message, not retained, on the events topic', async () => {
    const group = uniqueName('grp');
    const target = mqttTarget();
    const sub = await subscriber(`kite/${group}/+/events`);
    const event = (iccid: string, type: SimEvent['type']): SimEvent => ({
      id: `${iccid}-${type}`,
      type,
      group,
      iccid,
      before: 'a',
      after: 'b',
      at: 1_764_000_000_000,
    });
    const items: EventItem[] = [
      { iccid: '11', deviceId: '11', events: [event('11', 'imeiChanged'), event('11', 'countryChanged')] },
      { iccid: '22', deviceId: '22', events: [event('22', 'presenceLost')] },
    ];
    expect(await target.publishEvents(items, undefined, { group })).toEqual([
      { iccid: '11', status: 'ok' },
      { iccid: '22', status: 'ok' },
    ]);
    const got = await sub.waitFor(3);
    expect(got.map(({ topic, payload, qos, retain }) => ({ topic, payload, qos, retain }))).toEqual(
      expect.arrayContaining([
        { topic: `kite/${group}/11/events`, payload: event('11', 'imeiChanged'), qos: 1, retain: false },
        { topic: `kite/${group}/11/events`, payload: event('11', 'countryChanged'), qos: 1, retain: false },
        { topic: `kite/${group}/22/events`, payload: event('22', 'presenceLost'), qos: 1, retain: false },
      ])
    );
    // Not retained: a late subscriber's first message is one published after it subscribed.
    const late = await subscriber(`kite/${group}/+/events`);
    await late.client.publishAsync(`kite/${group}/sentinel/events`, '{}', { qos: 1 });
    expect((await late.waitFor(1)).map((m) => m.topic)).toEqual([`kite/${group}/sentinel/events`]);
  });

  it('keeps several changes of one SIM in a call in order, so the retained state is the newest', async () => {
    const group = uniqueName('grp');
    const record = sampleRecord();
    const topic = `kite/${group}/${record.iccid}/reported`;
    let state = record;
    const items = [fullItem(record)];
    for (const n of [2, 3, 4]) {
      items.push(patchItem(record.iccid, { ip: `10.0.0.${n}` }, record.iccid, state));
      state = items[items.length - 1].state;
    }
    const sub = await subscriber(topic);

    await mqttTarget().publish(items, undefined, { group });
    expect((await sub.waitFor(4)).map((m) => m.payload)).toEqual(items.map((i) => i.state));
    const late = await subscriber(topic);
    expect((await late.waitFor(1))[0]).toMatchObject({ payload: { ...record, ip: '10.0.0.4' }, retain: true });
    await clearRetained([topic]);
  });

  it('fills {deviceId} in a custom topic template and sets the JSON content type on MQTT 5', async () => {
    const prefix = uniqueName('fleet');
    const target = mqttTarget({
      stateTopicTemplate: `${prefix}/{deviceId}/state`,
      changesTopicTemplate: `${prefix}/{deviceId}/delta`,
      protocolVersion: 5,
    });
    const record = sampleRecord();
    const sub = await subscriber(`${prefix}/#`, 5);

    expect(await target.publish([fullItem(record, `truck-${record.iccid}`)])).toEqual([
      { iccid: record.iccid, status: 'ok' },
    ]);
    const messages = await sub.waitFor(2);
    expect(messages.map((m) => m.topic).sort()).toEqual(
      [`${prefix}/truck-${record.iccid}/delta`, `${prefix}/truck-${record.iccid}/state`].sort()
    );
    for (const message of messages) {
      expect(message).toMatchObject({ payload: record, qos: 1 });
      expect(message.contentType).toBe('application/json');
    }
    await clearRetained([`${prefix}/truck-${record.iccid}/state`]);
  });

  it('fails a SIM whose topic cannot be built, and publishes the rest', async () => {
    const target = mqttTarget({ stateTopicTemplate: 'kite/{group}/{deviceId}' });
    const [good, slash] = [sampleRecord(), sampleRecord()];
    const group = uniqueName('grp');

    const outcomes = await target.publish([fullItem(good), fullItem(slash, 'a/b')], undefined, { group });
    expect(outcomes[0]).toEqual({ iccid: good.iccid, status: 'ok' });
    expect(outcomes[1]).toMatchObject({ status: 'permanent', reason: expect.stringMatching(/contains \/, \+, #/) });

    const [noGroup] = await target.publish([fullItem(good)]);
    expect(noGroup).toMatchObject({ status: 'permanent', reason: expect.stringMatching(/no group context/) });
    await clearRetained([`kite/${group}/${good.iccid}`]);
  });

  it('answers retryable when the broker is unreachable, and recovers when it comes back', async () => {
    const port = await freePort();
    const target = mqttTarget({ url: `mqtt://127.0.0.1:${port}`, timeoutMs: 2000 });
    const record = sampleRecord();
    const group = uniqueName('grp');

    const [down] = await target.publish([fullItem(record)], undefined, { group });
    expect(down).toMatchObject({ status: 'retryable', reason: expect.stringMatching(/cannot connect.*ECONNREFUSED/) });

    let broker = await startMosquitto(port);
    try {
      expect(await target.publish([fullItem(record)], undefined, { group })).toEqual([
        { iccid: record.iccid, status: 'ok' },
      ]);
      await stop(broker);
      await new Promise((r) => setTimeout(r, 100)); // let the client see the close
      const [lost] = await target.publish([fullItem(record)], undefined, { group });
      expect(lost.status).toBe('retryable');

      broker = await startMosquitto(port);
      expect(await target.publish([fullItem(record)], undefined, { group })).toEqual([
        { iccid: record.iccid, status: 'ok' },
      ]);
    } finally {
      await target.close();
      await stop(broker);
    }
  });

  it('drops the connection when a PUBACK does not come, so the message cannot be replayed later', async () => {
    // A minimal broker on the wire: it accepts the connection (CONNACK) but never acknowledges a publish.
    const sockets: net.Socket[] = [];
    const closed: net.Socket[] = [];
    const server = net.createServer((socket) => {
      sockets.push(socket);
      socket.once('data', () => socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00])));
      socket.on('close', () => closed.push(socket));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const target = mqttTarget({ url: `mqtt://127.0.0.1:${port}`, timeoutMs: 300 });
    const record = sampleRecord();
    try {
      const [outcome] = await target.publish([fullItem(record)], undefined, { group: 'g' });
      expect(outcome).toMatchObject({ status: 'retryable', reason: expect.stringMatching(/no PUBACK in time/) });
      await waitUntil(() => closed.length === 1, 'the broker sees the connection closed', 5_000);

      await target.publish([fullItem(record)], undefined, { group: 'g' });
      expect(sockets).toHaveLength(2); // a fresh connection, not the old queue
    } finally {
      await target.close();
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => server.close(r));
    }
  });
});
