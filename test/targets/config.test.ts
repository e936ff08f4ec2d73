/** Target configuration, device ids, the factory and the null target. */
import { AwsIotTarget } from '../../targets/aws';
import { DeviceIdError, deviceIdFor } from '../../targets/device-id';
import {
  AWS_DEFAULTS,
  createTarget,
  NullTarget,
  parseTargetConfig,
  parseTargetConfigs,
  ConfigError,
  type NullTargetConfig,
} from '../../targets/index';
import { MqttTarget } from '../../targets/mqtt';
import { WebhookTarget } from '../../targets/webhook';
import { fullItem, patchItem, sampleRecord } from './fixtures';

const aws = { type: 'aws', region: 'eu-west-1' };
const webhook = { type: 'webhook', url: 'https://hooks.example.com/kite', secret: 'a-long-enough-secret' };
const azureConnectionString = 'HostName=hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5';

function problem(raw: unknown, name = 'aws-eu'): string {
  try {
    parseTargetConfig(raw, name);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('parseTargetConfig', () => {
  it('fills documented defaults', () => {
    expect(parseTargetConfig(aws, 'aws-eu')).toEqual({
      ...aws,
      ...AWS_DEFAULTS,
      name: 'aws-eu',
      deviceIdTemplate: '{iccid}',
      endpoint: undefined,
      controlEndpoint: undefined,
      credentials: undefined,
      shadowName: undefined,
    });
    expect(parseTargetConfig({ type: 'mqtt', url: 'mqtt://broker:1883' }, 'm')).toMatchObject({
      stateTopicTemplate: 'kite/{group}/{iccid}/reported',
      changesTopicTemplate: 'kite/{group}/{iccid}/changes',
      retain: true,
      protocolVersion: 4,
    });
    // One try per call: the publish activity and Temporal are the retry layer.
    expect(parseTargetConfig(webhook, 'w')).toMatchObject({ batchSize: 500, maxAttempts: 1, timeoutMs: 10_000 });
    expect(parseTargetConfig({ type: 'null' }, 'n')).toEqual({
      type: 'null',
      name: 'n',
      latencyMs: 0,
      deviceIdTemplate: '{iccid}',
    });
  });

  it('names the bad setting and says what is expected', () => {
    expect(problem({ ...aws, shadowName: 'bad name' })).toBe(
      'targets.aws-eu.shadowName: must match [$a-zA-Z0-9:_-]{1,64} (got "bad name")'
    );
    expect(problem({ type: 'aws' })).toMatch(/^targets\.aws-eu\.region: required, an AWS region such as "eu-west-1"/);
    expect(problem({ ...aws, concurrency: 0 })).toBe(
      'targets.aws-eu.concurrency: must be an integer from 1 to 1000 (got 0)'
    );
    expect(problem({ ...aws, concurrancy: 4 })).toMatch(
      /^targets\.aws-eu\.concurrancy: unknown setting \(known: .*concurrency/
    );
    expect(problem({ ...aws, credentials: { accessKeyId: 'AKIA' } })).toBe(
      'targets.aws-eu.credentials.secretAccessKey: required'
    );
    expect(problem({ type: 'kafka' })).toBe('targets.aws-eu.type: must be one of aws, mqtt, webhook, null, azure');
    expect(problem({ ...aws, name: 'other' })).toMatch(/^targets\.aws-eu\.name: must be absent or equal/);
    expect(problem(aws, 'bad name')).toMatch(/^targets\.bad name: target names must match/);
    expect(problem('aws')).toMatch(/^targets\.aws-eu: must be an object/);
  });

  it('validates device id and topic templates at startup', () => {
    expect(parseTargetConfig({ ...aws, deviceIdTemplate: 'kite-{alias}' }, 'a')).toMatchObject({
      deviceIdTemplate: 'kite-{alias}',
    });
    expect(problem({ ...aws, deviceIdTemplate: 'sim-{ip}' })).toMatch(/deviceIdTemplate: unknown placeholder \{ip\}/);
    expect(problem({ ...aws, deviceIdTemplate: 'fixed' })).toMatch(/deviceIdTemplate: must contain at least one of/);
    const mqtt = { type: 'mqtt', url: 'mqtt://broker' };
    expect(problem({ ...mqtt, stateTopicTemplate: 'kite/{group}/all' }, 'm')).toMatch(
      /stateTopicTemplate: must contain \{iccid\}/
    );
    expect(problem({ ...mqtt, changesTopicTemplate: 'kite/+/{iccid}' }, 'm')).toMatch(
      /changesTopicTemplate: must not contain/
    );
    expect(problem({ ...mqtt, stateTopicTemplate: 'kite/{imsi}/{iccid}' }, 'm')).toMatch(
      /unknown placeholder \{imsi\}/
    );
    expect(problem({ ...mqtt, changesTopicTemplate: 'kite/{group}/{iccid}/reported' }, 'm')).toBe(
      'targets.m.changesTopicTemplate: must differ from stateTopicTemplate, or patches would overwrite the retained state'
    );
  });

  it('checks URLs and refuses passwords embedded in them', () => {
    expect(problem({ type: 'mqtt', url: 'http://broker' }, 'm')).toBe(
      'targets.m.url: must use mqtt: or mqtts: or ws: or wss:'
    );
    expect(problem({ type: 'mqtt', url: 'mqtt://u:pw@broker' }, 'm')).toBe(
      'targets.m.url: must not embed a password; put it in the password setting'
    );
    expect(problem({ ...webhook, url: 'not a url' }, 'w')).toBe(
      'targets.w.url: must be an absolute URL (https:, http:)'
    );
    expect(problem({ ...webhook, secret: 'short' }, 'w')).toBe(
      'targets.w.secret: must be at least 16 characters; use a long random value'
    );
  });

  it('names nested and mistyped settings by their path, for every target type', () => {
    expect(problem({ type: 'mqtt', url: 'mqtt://broker', retain: 'yes' }, 'm')).toBe(
      'targets.m.retain: must be true or false (got "yes")'
    );
    expect(problem({ ...aws, credentials: { accessKeyId: 'AKIA', secretAccessKey: 'x', region: 'eu' } })).toMatch(
      /^targets\.aws-eu\.credentials\.region: unknown setting \(known: accessKeyId, secretAccessKey, sessionToken\)$/
    );
    expect(problem({ ...aws, credentials: 'AKIA:secret' })).toBe('targets.aws-eu.credentials: must be an object');
    expect(problem({ region: 'eu-west-1' })).toBe(
      'targets.aws-eu.type: must be one of aws, mqtt, webhook, null, azure'
    );
    expect(problem({ type: 'null', deviceIdTemplate: 7 }, 'n')).toBe('targets.n.deviceIdTemplate: must be a string');
    expect(problem({ ...webhook, url: 42 }, 'w')).toBe('targets.w.url: must be a non-empty string');
    expect(problem({ type: 'azure', connectionString: 'HostName=h' }, 'az')).toBe(
      'targets.az.connectionString: must contain HostName, SharedAccessKeyName and SharedAccessKey'
    );
    expect(problem({ type: 'azure', connectionString: azureConnectionString, mode: 'desired' }, 'az')).toBe(
      'targets.az.mode: must be one of "module", "reported", "tags"'
    );
    expect(problem({ type: 'azure', connectionString: azureConnectionString, maxConnections: 0 }, 'az')).toBe(
      'targets.az.maxConnections: must be a positive number'
    );
    expect(problem({ type: 'azure', connectionString: azureConnectionString, deviceIdTemplate: 'x' }, 'az')).toMatch(
      /^targets\.az\.deviceIdTemplate: must contain at least one of/
    );
  });

  it('validates a whole targets map', () => {
    const configs = parseTargetConfigs({ 'aws-eu': aws, bench: { type: 'null', latencyMs: 5 } });
    expect(Object.keys(configs)).toEqual(['aws-eu', 'bench']);
    expect(configs.bench).toMatchObject({ type: 'null', name: 'bench', latencyMs: 5 });
    expect(() => parseTargetConfigs({ ok: { type: 'null' }, bad: { type: 'null', latencyMs: -1 } })).toThrow(
      'targets.bad.latencyMs: must be an integer from 0 to 600000 (got -1)'
    );
  });

  it('hands azure settings to the Azure module, keeping name and device id template', () => {
    expect(() => parseTargetConfig({ type: 'azure' }, 'az')).toThrow(/targets\.az\.connectionString/);
  });
});

describe('deviceIdFor', () => {
  const record = sampleRecord('8934071000000000001', { alias: 'truck-12', imei: '356938035643809' });

  it('fills identity placeholders', () => {
    expect(deviceIdFor('{iccid}', record)).toBe('8934071000000000001');
    expect(deviceIdFor('kite-{alias}', record)).toBe('kite-truck-12');
    expect(deviceIdFor('{imei}_{iccid}', record)).toBe('356938035643809_8934071000000000001');
  });

  it('refuses to fall back when a field is missing, so identities never change silently', () => {
    expect(() => deviceIdFor('{alias}', { iccid: '1' })).toThrow(DeviceIdError);
    expect(() => deviceIdFor('{alias}', { iccid: '1', alias: '' })).toThrow(/SIM 1 has no alias/);
  });
});

describe('createTarget', () => {
  it('builds the target its configuration names', async () => {
    const targets = [
      createTarget(parseTargetConfig(aws, 'a')),
      createTarget(parseTargetConfig({ type: 'mqtt', url: 'mqtt://127.0.0.1:1' }, 'm')),
      createTarget(parseTargetConfig(webhook, 'w')),
      createTarget(parseTargetConfig({ type: 'null' }, 'n')),
    ];
    expect(targets[0]).toBeInstanceOf(AwsIotTarget);
    expect(targets[1]).toBeInstanceOf(MqttTarget);
    expect(targets[2]).toBeInstanceOf(WebhookTarget);
    expect(targets[3]).toBeInstanceOf(NullTarget);
    expect(targets.map((t) => t.name)).toEqual(['a', 'm', 'w', 'n']);
    await Promise.all(targets.map((t) => t.close()));
  });

  it('loads the Azure target through its module seam', async () => {
    const connectionString = azureConnectionString;
    const config = parseTargetConfig({ type: 'azure', connectionString, deviceIdTemplate: 'kite-{alias}' }, 'az');
    expect(config).toMatchObject({ type: 'azure', name: 'az', deviceIdTemplate: 'kite-{alias}', connectionString });
    const target = createTarget(config);
    expect(target.name).toBe('az');
    await target.close();
  });
});

describe('null target', () => {
  it('counts items, keys and deletions, and succeeds for every item', async () => {
    const config = parseTargetConfig({ type: 'null', latencyMs: 1 }, 'bench') as NullTargetConfig;
    const target = new NullTarget(config);
    const record = sampleRecord();
    const items = [fullItem(record), patchItem(record.iccid, { ip: null, dailyData: 3 })];

    const outcomes = await target.publish(items, undefined, { group: 'g1' });
    expect(outcomes).toEqual(items.map((i) => ({ iccid: i.iccid, status: 'ok' })));
    expect(target.counters()).toEqual({
      calls: 1,
      items: 2,
      fullItems: 1,
      keys: Object.keys(record).length + 2,
      nullKeys: 1,
      events: 0,
      byGroup: { g1: 2 },
    });
    target.reset();
    expect(target.counters().items).toBe(0);
  });

  it('answers retryable for every item when cancelled during its latency', async () => {
    const target = new NullTarget({ name: 'slow', latencyMs: 10_000 });
    const controller = new AbortController();
    const pending = target.publish([fullItem(sampleRecord())], controller.signal);
    controller.abort();
    expect((await pending)[0].status).toBe('retryable');
    expect(target.counters().items).toBe(0);
  });
});
