/**
 * MQTT state and changes through the real workflow, Temporal server, Redis and Mosquitto: the retained message
 * on a SIM's state topic is its whole current record, so a subscriber that joins late sees every SIM in full;
 * each change's patch arrives on the SIM's changes topic, not retained.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { RECORD_KEYS, type SimRecord } from '../../record';
import { parseTargetConfig, type MqttTargetConfig } from '../../targets/config';
import { MqttTarget } from '../../targets/mqtt';
import { createLogger } from '../../shared/log';
import { syncNowSignal } from '../../workflows/definitions';
import { testStack, uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';

const kite = new MemoryKite(25);
const target = new MqttTarget(parseTargetConfig({ type: 'mqtt', url: testStack.mqttUrl }, 'mqtt') as MqttTargetConfig, {
  logger: createLogger({}, { level: 'warn' }),
});
const clients: MqttClient[] = [];
let harness: SyncHarness;

beforeAll(async () => {
  harness = await startSyncHarness({ kite, targets: [target], batchSize: 20 });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await harness?.close();
  await target.close();
});

/** Subscribes and keeps the latest message per topic, plus every message in order. */
async function subscribe(filter: string) {
  const client = await mqtt.connectAsync(testStack.mqttUrl, { reconnectPeriod: 0 });
  clients.push(client);
  const latest = new Map<string, { payload: Record<string, unknown>; retain: boolean }>();
  const all: { topic: string; payload: Record<string, unknown>; retain: boolean }[] = [];
  client.on('message', (topic, payload, packet) => {
    if (!payload.length) return;
    const message = {
      topic,
      payload: JSON.parse(payload.toString()) as Record<string, unknown>,
      retain: packet.retain,
    };
    latest.set(topic, message);
    all.push(message);
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return { latest, all };
}

test("a late subscriber gets every SIM's full state; changes go to the changes topic, not retained", async () => {
  const group = uniqueName('mqtt-state');
  const iccs = kite.addSims(group, 60, 7000);
  const handle = await harness.start(group);
  await harness.waitForCycles(handle, 1);

  const changes = await subscribe(`kite/${group}/+/changes`);
  const [a, b] = iccs;
  kite.update(a, { imei: '356938035643809' });
  kite.update(b, { alias: undefined });
  await handle.signal(syncNowSignal);
  const status = await harness.waitForCycles(handle, 2);
  expect(status.lastCycle?.targets.mqtt).toMatchObject({ changed: 2, published: 2, failed: 0 });

  await waitUntil(() => changes.latest.size === 2, 'both changes arrive on their changes topics');
  expect(changes.latest.get(`kite/${group}/${a}/changes`)).toMatchObject({
    payload: { imei: '356938035643809' },
    retain: false,
  });
  expect(changes.latest.get(`kite/${group}/${b}/changes`)).toMatchObject({ payload: { alias: null }, retain: false });

  const late = await subscribe(`kite/${group}/#`);
  await waitUntil(
    () => late.latest.size === iccs.length,
    `the late subscriber has a state for all ${iccs.length} SIMs`
  );
  const held = await harness.store.publishedRecords(group, 'mqtt', iccs);
  iccs.forEach((iccid, i) => {
    const message = late.latest.get(`kite/${group}/${iccid}/reported`);
    expect(message?.retain).toBe(true);
    const state = message!.payload;
    expect(Object.values(state)).not.toContain(null);
    expect(state).toEqual(JSON.parse(held[i]!) as SimRecord);
    const expectedKeys = iccid === b ? RECORD_KEYS.filter((k) => k !== 'alias') : RECORD_KEYS;
    expect(Object.keys(state).sort()).toEqual([...expectedKeys].sort());
  });
  expect(late.latest.get(`kite/${group}/${a}/reported`)?.payload.imei).toBe('356938035643809');
  expect(late.all.some((m) => m.topic.endsWith('/changes'))).toBe(false);

  await handle.terminate();
  const cleaner = await mqtt.connectAsync(testStack.mqttUrl, { reconnectPeriod: 0 });
  await Promise.all(iccs.map((i) => cleaner.publishAsync(`kite/${group}/${i}/reported`, '', { qos: 1, retain: true })));
  await cleaner.endAsync();
});
