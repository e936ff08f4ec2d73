/**
 * The AWS target's endpoints are checked at worker start: an endpoint of another region than `region`, or a shadow
 * endpoint DescribeEndpoint disagrees with, stops the worker with exit code 2 naming the setting, instead of a
 * stream of publish failures (or writes to another region). Without `endpoint`, DescribeEndpoint supplies it.
 * DescribeEndpoint is moto's; the worker is the real worker/main.ts in a child process.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { IoTClient } from '@aws-sdk/client-iot';
import { ConfigError } from '../../shared/config-error';
import { AwsIotTarget } from '../../targets/aws';
import { endpointRegion, resolveAwsEndpoint } from '../../targets/aws-endpoint';
import { parseTargetConfig, type AwsTargetConfig } from '../../targets/config';
import { startMoto, type MotoServer } from '../setup/moto';
import { testStack, uniqueName } from '../setup/stack';
import { fullItem, quietLogger, sampleRecord } from './fixtures';

const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing-secret-key' };
const OTHER_REGION = 'https://a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com';

let moto: MotoServer;
let iot: IoTClient;
beforeAll(async () => {
  moto = await startMoto();
  iot = new IoTClient({ region: 'eu-west-1', endpoint: moto.url, credentials: { ...CREDENTIALS } });
});
afterAll(async () => {
  iot?.destroy();
  await moto?.stop();
});

function config(raw: Record<string, unknown>): AwsTargetConfig {
  return parseTargetConfig(
    { type: 'aws', region: 'eu-west-1', controlEndpoint: moto.url, credentials: CREDENTIALS, ...raw },
    'aws-eu'
  ) as AwsTargetConfig;
}

async function problem(raw: Record<string, unknown>): Promise<ConfigError> {
  const error = await resolveAwsEndpoint(config(raw), iot).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

it('reads the region of AWS IoT hosts, and none of other hosts', () => {
  expect(endpointRegion('https://a1b2c3-ats.iot.eu-west-1.amazonaws.com')).toBe('eu-west-1');
  expect(endpointRegion('https://data-ats.iot.us-east-2.amazonaws.com')).toBe('us-east-2');
  expect(endpointRegion('https://iot.ap-southeast-1.amazonaws.com')).toBe('ap-southeast-1');
  expect(endpointRegion('https://a1b2c3-ats.iot.cn-north-1.amazonaws.com.cn')).toBe('cn-north-1');
  expect(endpointRegion('http://127.0.0.1:5000')).toBeUndefined();
});

it('refuses an endpoint or a control endpoint of another region, naming the setting', async () => {
  const data = await problem({ endpoint: OTHER_REGION });
  expect(data.setting).toBe('targets.aws-eu.endpoint');
  expect(data.message).toMatch(/region us-east-1, but targets.aws-eu.region is eu-west-1/);
  const control = await problem({ controlEndpoint: 'https://iot.us-east-1.amazonaws.com' });
  expect(control.setting).toBe('targets.aws-eu.controlEndpoint');
});

it("refuses a shadow endpoint that DescribeEndpoint disagrees with (not the account's own)", async () => {
  const error = await problem({ endpoint: 'https://zzzzzzzzzzzzzz-ats.iot.eu-west-1.amazonaws.com' });
  expect(error.setting).toBe('targets.aws-eu.endpoint');
  expect(error.message).toMatch(/not this account's iot:Data-ATS endpoint/);
});

it("uses the account's endpoint from DescribeEndpoint when none is set, and a local peer as given", async () => {
  const found = await resolveAwsEndpoint(config({}), iot);
  expect(found).toMatch(/^https:\/\/[a-z0-9]+-ats\.iot\.eu-west-1\.amazonaws\.com$/);
  // (moto answers a new random address on every DescribeEndpoint, so "the same endpoint passes" is not testable here)
  expect(await resolveAwsEndpoint(config({ endpoint: moto.url }), iot)).toBe(moto.url);
});

it('a target whose endpoints pass publishes as before', async () => {
  const target = new AwsIotTarget(config({ endpoint: moto.url }), { logger: quietLogger() });
  await target.ready();
  const record = sampleRecord();
  expect(await target.publish([fullItem(record)])).toEqual([{ iccid: record.iccid, status: 'ok' }]);
  await target.close();
});

it('the worker exits with code 2 at start, naming the setting, not the endpoint', async () => {
  const target = { type: 'aws', region: 'eu-west-1', endpoint: OTHER_REGION, credentials: CREDENTIALS };
  const child = spawn(process.execPath, ['-r', '@swc-node/register', 'worker/main.ts'], {
    cwd: path.resolve(__dirname, '../..'),
    env: {
      ...process.env,
      KITE_METRICS_ADDRESS: 'off',
      KITE_TEMPORAL_ADDRESS: testStack.temporalAddress,
      KITE_TASK_QUEUE: uniqueName('aws-endpoint'),
      KITE_REDIS_URL: testStack.redisUrl,
      KITE_TARGETS: JSON.stringify({ 'aws-eu': target }),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));

  expect(code).toBe(2);
  expect(stderr).toMatch(/invalid configuration: targets.aws-eu.endpoint: is an AWS IoT endpoint of region us-east-1/);
  expect(stderr).not.toContain('a1b2c3d4e5f6g7');
  expect(stderr).not.toContain('"worker started"');
}, 120_000);
