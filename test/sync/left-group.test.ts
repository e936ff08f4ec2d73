/**
 * A SIM leaving the group, on the real workflow, Temporal server and Redis, with the Azure target against the IoT
 * Hub double (module mode), the AWS target against moto and the MQTT target against Mosquitto, all told
 * (`leftGroupNotice`), and a recording target that is not: the told targets' twin, shadow and retained state say
 * `monitoring: "off"` (the stale record is never left behind as if current) and they get a `leftGroup` event,
 * though the group's events are off; a SIM that joins again reads `monitoring: "on"`. The notice waits in Redis
 * while a target cannot take it, and goes out once.
 */
import { GetThingShadowCommand, IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import mqtt, { type MqttClient } from 'mqtt';
import type { SimEvent } from '../../record';
import { createLogger } from '../../shared/log';
import { createAzureTarget, parseAzureTargetConfig } from '../../targets/azure';
import { AwsIotTarget } from '../../targets/aws';
import { parseTargetConfig, type AwsTargetConfig, type MqttTargetConfig } from '../../targets/config';
import { MqttTarget } from '../../targets/mqtt';
import type { Target } from '../../targets/target';
import { syncNowSignal } from '../../workflows/definitions';
import { AzureIotHubDouble } from '../azure-double';
import { startMoto, type MotoServer } from '../setup/moto';
import { testStack, uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { waitUntil } from '../support/wait-until';

const REGION = 'eu-west-1';
const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing-secret-key' };
const logger = createLogger({}, { level: 'error' });
const kite = new MemoryKite(25);
const quiet = new RecordingTarget('quiet');
let hub: AzureIotHubDouble;
let moto: MotoServer;
let data: IoTDataPlaneClient;
let subscriber: MqttClient;
const targets: Target[] = [];
let harness: SyncHarness;
/** The latest retained state per SIM, and every event, as an MQTT subscriber sees them. */
const mqttState = new Map<string, Record<string, unknown>>();
const mqttEvents: SimEvent[] = [];

beforeAll(async () => {
  hub = await AzureIotHubDouble.start();
  moto = await startMoto();
  const peer = { region: REGION, endpoint: moto.url, credentials: { ...CREDENTIALS } };
  data = new IoTDataPlaneClient(peer);
  const azureConfig = parseAzureTargetConfig(
    {
      connectionString: hub.serviceConnectionString,
      serviceUrl: hub.serviceUrl,
      deviceHost: hub.deviceHost,
      ca: hub.ca,
      leftGroupNotice: true,
    },
    'azure'
  );
  targets.push(
    createAzureTarget(azureConfig, { logger }),
    new AwsIotTarget(
      parseTargetConfig(
        { type: 'aws', region: REGION, endpoint: moto.url, controlEndpoint: moto.url, credentials: CREDENTIALS },
        'aws'
      ) as AwsTargetConfig,
      { logger }
    ),
    new MqttTarget(parseTargetConfig({ type: 'mqtt', url: testStack.mqttUrl }, 'mqtt') as MqttTargetConfig, {
      logger,
    }),
    quiet
  );
  harness = await startSyncHarness({ kite, targets, batchSize: 20, leftGroupNotice: ['azure', 'aws', 'mqtt'] });
  subscriber = await mqtt.connectAsync(testStack.mqttUrl, { reconnectPeriod: 0 });
  subscriber.on('message', (topic, payload) => {
    if (!payload.length) return;
    const body = JSON.parse(payload.toString()) as Record<string, unknown>;
    if (topic.endsWith('/reported')) mqttState.set(topic.split('/')[2], body);
    if (topic.endsWith('/events')) mqttEvents.push(body as unknown as SimEvent);
  });
  await subscriber.subscribeAsync(['kite/+/+/reported', 'kite/+/+/events'], { qos: 1 });
}, 120_000);

afterAll(async () => {
  await subscriber?.endAsync(true);
  await harness?.close();
  await Promise.all(targets.map((t) => t.close()));
  data?.destroy();
  await moto?.stop();
  await hub?.stop();
});

async function shadow(thingName: string): Promise<Record<string, unknown>> {
  const res = await data.send(new GetThingShadowCommand({ thingName }));
  return JSON.parse(new TextDecoder().decode(res.payload)).state.reported;
}

const leftGroupMessages = (iccid: string) =>
  hub.d2c.filter((m) => m.deviceId === iccid && m.properties.kiteEvent === 'leftGroup');

test('a SIM that leaves is shown monitoring "off" on told targets, with a leftGroup event, once; on again when it returns', async () => {
  const group = uniqueName('left');
  const iccs = kite.addSims(group, 6, 60_000);
  const [leaving, stays] = iccs;
  const handle = await harness.start(group);
  const cycle = async (n: number) => {
    await handle.signal(syncNowSignal);
    return harness.waitForCycles(handle, n, 60_000);
  };
  await harness.waitForCycles(handle, 1, 60_000);
  // A first publish says the SIM is monitored, on told targets only.
  expect(hub.reported(leaving, 'kite')).toMatchObject({ iccid: leaving, alias: 'sensor-60000', monitoring: 'on' });
  expect(await shadow(leaving)).toMatchObject({ iccid: leaving, monitoring: 'on' });
  await waitUntil(() => mqttState.get(leaving)?.monitoring === 'on', 'the retained state says on');
  expect(quiet.drain().get(leaving)).toEqual([expect.not.objectContaining({ monitoring: expect.anything() })]);

  // The SIM leaves.
  kite.update(leaving, { supervisionGroup: 'elsewhere' });
  const status = await cycle(2);
  expect(status.lastCycle).toMatchObject({ left: 1, outcome: 'completed' });
  // Twin and shadow keep the last record, marked off; the retained state is the notice, not the stale record.
  expect(hub.reported(leaving, 'kite')).toMatchObject({ iccid: leaving, alias: 'sensor-60000', monitoring: 'off' });
  expect(await shadow(leaving)).toMatchObject({ iccid: leaving, imei: '863781010957232', monitoring: 'off' });
  await waitUntil(() => mqttState.get(leaving)?.monitoring === 'off', 'the retained state says off');
  expect(mqttState.get(leaving)).toEqual({ iccid: leaving, monitoring: 'off' });
  expect(hub.reported(stays, 'kite')).toMatchObject({ monitoring: 'on' });
  // One leftGroup event per told target (the group's events are off: the notice brings it).
  expect(leftGroupMessages(leaving)).toHaveLength(1);
  await waitUntil(() => mqttEvents.some((e) => e.iccid === leaving), 'the MQTT leftGroup event');
  expect(mqttEvents.filter((e) => e.iccid === leaving)).toEqual([
    expect.objectContaining({ type: 'leftGroup', group, before: group, after: null, alias: 'sensor-60000' }),
  ]);
  expect(JSON.parse(leftGroupMessages(leaving)[0].body)).toMatchObject({ type: 'leftGroup', iccid: leaving });
  // The target that is not told hears nothing.
  expect(quiet.drain().size).toBe(0);
  expect(quiet.drainEvents()).toEqual([]);
  expect(await harness.store.eventsPendingCount(group, 'azure')).toBe(0);

  // Nothing more while it stays away.
  await cycle(3);
  expect(leftGroupMessages(leaving)).toHaveLength(1);

  // It joins again: published in full, monitored again.
  kite.update(leaving, { supervisionGroup: group });
  await cycle(4);
  expect(hub.reported(leaving, 'kite')).toMatchObject({ iccid: leaving, monitoring: 'on' });
  expect(await shadow(leaving)).toMatchObject({ monitoring: 'on' });
  await waitUntil(() => mqttState.get(leaving)?.monitoring === 'on', 'the retained state says on again');
  expect(mqttState.get(leaving)).toMatchObject({ iccid: leaving, alias: 'sensor-60000', imei: '863781010957232' });
  await handle.terminate();
}, 180_000);

test('the notice waits in Redis while a told target cannot take it, and goes out once it can', async () => {
  const told = new RecordingTarget('told');
  const waiting = await startSyncHarness({ kite, targets: [told], leftGroupNotice: ['told'] });
  try {
    const group = uniqueName('left-wait');
    const [leaving] = kite.addSims(group, 3, 61_000);
    const handle = await waiting.start(group);
    await waiting.waitForCycles(handle, 1);
    expect(told.drain().get(leaving)).toEqual([expect.objectContaining({ iccid: leaving, monitoring: 'on' })]);

    told.throttled.add(leaving); // the notice is a publish of the SIM's state: throttled, it stays queued
    kite.update(leaving, { supervisionGroup: 'elsewhere' });
    await handle.signal(syncNowSignal);
    await waitUntil(async () => told.calls >= 3, 'the notice is tried and refused', 30_000);
    expect(await waiting.store.eventsPendingCount(group, 'told')).toBe(1);
    expect(told.drainEvents()).toEqual([]); // its event waits with it
    told.throttled.delete(leaving);
    await waiting.waitForCycles(handle, 2, 90_000);
    expect(told.drain().get(leaving)).toEqual([{ monitoring: 'off' }]);
    expect(told.drainEvents().map((e) => ({ type: e.type, iccid: e.iccid }))).toEqual([
      { type: 'leftGroup', iccid: leaving },
    ]);
    expect(await waiting.store.eventsPendingCount(group, 'told')).toBe(0);
    await handle.terminate();
  } finally {
    await waiting.close();
  }
}, 150_000);
