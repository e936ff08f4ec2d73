/** The worker's configuration: defaults, file + environment, `env:` indirection, and errors that name the setting. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../worker/config';

const dir = mkdtempSync(path.join(os.tmpdir(), 'kite-config-'));
const file = (name: string, content: unknown) => {
  const p = path.join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};

test('defaults give the embedded local stack with an MQTT target', () => {
  const config = loadConfig({});
  expect(config.temporal).toMatchObject({
    address: '127.0.0.1:7233',
    namespace: 'default',
    taskQueue: 'kite-cloud-connector',
  });
  expect(config.redis.url).toBe('redis://127.0.0.1:6379');
  expect(config.kite).toMatchObject({ apiVersion: 13, pageSize: 1000, requestsPerSecond: 4 });
  expect(Object.keys(config.targets)).toEqual(['mqtt']);
  expect(config.publish).toEqual({ batchSize: 500, inFlightBatches: 4, maxLeaveFraction: 0.5 });
});

test('a file with env: references is resolved, and the environment overrides the file', () => {
  const path = file('ok.json', {
    kite: { pageSize: 100, apiVersion: 6 },
    targets: { hook: { type: 'webhook', url: 'https://example.test/in', secret: 'env:HOOK_SECRET' } },
  });
  const config = loadConfig({
    KITE_CONFIG_FILE: path,
    HOOK_SECRET: 's3cr3t-value-long-enough',
    KITE_TEMPORAL_NAMESPACE: 'prod',
  });
  expect(config.kite.pageSize).toBe(100);
  expect(config.temporal.namespace).toBe('prod');
  expect(config.targets.hook).toMatchObject({ type: 'webhook', secret: 's3cr3t-value-long-enough' });
});

test.each([
  [{ KITE_PAGE_SIZE: '5000' }, 'KITE_PAGE_SIZE: must be a number from 1 to 1000'],
  [{ KITE_API_VERSION: '6', KITE_PAGE_SIZE: '500' }, 'KITE_PAGE_SIZE: must be a number from 1 to 100'],
  [{ KITE_REQUESTS_PER_SECOND: 'fast' }, 'KITE_REQUESTS_PER_SECOND: must be a number'],
  [{ KITE_REDIS_URL: 'http://127.0.0.1:6379' }, 'KITE_REDIS_URL: must use redis: or rediss:'],
  [{ KITE_TARGETS: '{"x": {"type": "carrier-pigeon"}}' }, 'targets.x.type: must be one of'],
  [{ KITE_TARGETS: '{not json' }, 'KITE_TARGETS: is not valid JSON'],
  [{ KITE_CONFIG_FILE: '/nonexistent/kite.json' }, 'KITE_CONFIG_FILE: cannot read /nonexistent/kite.json: ENOENT'],
])('%j is rejected with an error naming the setting', (env, message) => {
  expect(() => loadConfig(env)).toThrow(ConfigError);
  expect(() => loadConfig(env)).toThrow(message);
});

test('a missing env: reference names the setting and the variable, and no error shows a secret', () => {
  const path = file('missing.json', {
    targets: { hook: { type: 'webhook', url: 'https://e.test', secret: 'env:NOPE' } },
  });
  expect(() => loadConfig({ KITE_CONFIG_FILE: path })).toThrow(
    'targets.hook.secret: refers to environment variable NOPE'
  );
  const secretUrl = 'redis://:hunter2-password@127.0.0.1:6379';
  let message = '';
  try {
    loadConfig({ KITE_REDIS_URL: secretUrl.replace('redis:', 'ftp:') });
  } catch (err) {
    message = (err as Error).message;
  }
  expect(message).toMatch(/KITE_REDIS_URL/);
  expect(message).not.toMatch(/hunter2/);
});
