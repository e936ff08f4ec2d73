/** The worker's configuration: defaults, file + environment, `env:` indirection, and errors that name the setting. */
import { execFile } from 'node:child_process';
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
  expect(config.audit).toEqual({ entriesPerSim: 10, maxAgeDays: 7 });
});

test('the audit trail is sized by KITE_AUDIT_ENTRIES_PER_SIM and KITE_AUDIT_MAX_AGE_DAYS', () => {
  const config = loadConfig({ KITE_AUDIT_ENTRIES_PER_SIM: '3', KITE_AUDIT_MAX_AGE_DAYS: '1.5' });
  expect(config.audit).toEqual({ entriesPerSim: 3, maxAgeDays: 1.5 });
  expect(() => loadConfig({ KITE_AUDIT_ENTRIES_PER_SIM: '-1' })).toThrow(/KITE_AUDIT_ENTRIES_PER_SIM/);
});

test("Kite's response body limit: 16 MiB by default, set by kite.maxResponseBytes or KITE_MAX_RESPONSE_BYTES", () => {
  expect(loadConfig({}).kite.maxResponseBytes).toBe(16 * 1024 * 1024);
  expect(loadConfig({ KITE_MAX_RESPONSE_BYTES: '4194304' }).kite.maxResponseBytes).toBe(4 * 1024 * 1024);
  const path = file('limit.json', { kite: { maxResponseBytes: 8 * 1024 * 1024 } });
  expect(loadConfig({ KITE_CONFIG_FILE: path }).kite.maxResponseBytes).toBe(8 * 1024 * 1024);
  expect(loadConfig({ KITE_CONFIG_FILE: path, KITE_MAX_RESPONSE_BYTES: '65536' }).kite.maxResponseBytes).toBe(65536);
  for (const bad of ['1000', '1e12', '1048576.5', 'lots']) {
    expect(() => loadConfig({ KITE_MAX_RESPONSE_BYTES: bad })).toThrow(/^KITE_MAX_RESPONSE_BYTES: must be a/);
  }
  expect(() => loadConfig({ KITE_CONFIG_FILE: file('tiny.json', { kite: { maxResponseBytes: 10 } }) })).toThrow(
    'kite.maxResponseBytes: must be a number from 65536 to 268435456, got 10'
  );
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
  [{ KITE_REDIS_URL: 'http://127.0.0.1:6379' }, 'KITE_REDIS_URL: must use redis:, rediss:, redis-cluster: or'],
  [{ KITE_REDIS_URL: 'redis://a:1,b:2' }, 'KITE_REDIS_URL: lists several nodes: use redis-cluster://'],
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

test('a value from the file is named by its path, a typo in the file is refused, and group filters are checked', () => {
  const named = (content: unknown, env: Record<string, string> = {}) => {
    try {
      loadConfig({ KITE_CONFIG_FILE: file('named.json', content), ...env });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    return 'accepted';
  };
  expect(named({ kite: { apiVersion: 6, pageSize: 500 } })).toBe(
    'kite.pageSize: must be a number from 1 to 100, got 500'
  );
  expect(named({ kite: { pagesize: 100 } })).toMatch(/^kite\.pagesize: unknown setting \(known: .*pageSize/);
  expect(named({ temporal: { namespace: 7 } })).toBe('temporal.namespace: must be a string');
  expect(named({ kite: { groupFilters: { fleet: { type: 'search' } } } })).toBe(
    'kite.groupFilters.fleet.params: required'
  );
  expect(named({ kite: { pageSize: 5000 } }, { KITE_PAGE_SIZE: '200' })).toBe('accepted');
  const filters = { fleet: { type: 'search', params: { customField_1: 'fleet' } } };
  const config = loadConfig({ KITE_CONFIG_FILE: file('filters.json', { kite: { groupFilters: filters } }) });
  expect(config.kite.groupFilters).toEqual(filters);
});

test('Temporal settings: file under environment, mTLS needs both files, and a missing file names its variable', () => {
  const config = loadConfig({
    KITE_CONFIG_FILE: file('temporal.json', { temporal: { address: 'temporal.internal:7233', namespace: 'file-ns' } }),
    KITE_TEMPORAL_NAMESPACE: 'env-ns',
    KITE_TASK_QUEUE: 'q1',
  });
  expect(config.temporal).toMatchObject({ address: 'temporal.internal:7233', namespace: 'env-ns', taskQueue: 'q1' });
  expect(() => loadConfig({ KITE_TEMPORAL_TLS_CERT: '/etc/cert.pem' })).toThrow(
    'KITE_TEMPORAL_TLS_KEY: set both KITE_TEMPORAL_TLS_CERT and KITE_TEMPORAL_TLS_KEY, or neither'
  );
});

/** Runs worker/main.ts with `env` until it exits; resolves with its exit code and stderr. */
function runWorker(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['-r', '@swc-node/register', 'worker/main.ts'],
      { cwd: path.resolve(__dirname, '../..'), env: { ...process.env, KITE_METRICS_ADDRESS: 'off', ...env } },
      (_err, _stdout, stderr) => resolve({ code: child.exitCode, stderr })
    );
  });
}

test('the worker exits with code 2 on an invalid setting, a bad Azure target included, without echoing secrets', async () => {
  const key = 'c2VjcmV0LWF6dXJlLWtleQ==';
  const azure = { hub: { type: 'azure', connectionString: `HostName=h;SharedAccessKey=${key}` } };
  const cases: { env: Record<string, string>; setting: string }[] = [
    { env: { KITE_TARGETS: JSON.stringify(azure) }, setting: 'targets.hub.connectionString' },
    { env: { KITE_PAGE_SIZE: 'many' }, setting: 'KITE_PAGE_SIZE' },
    { env: { KITE_TEMPORAL_TLS_CA: '/nonexistent/ca.pem' }, setting: 'KITE_TEMPORAL_TLS_CA' },
    { env: { KITE_HEAP_GROWING_PERCENT: 'lots' }, setting: 'KITE_HEAP_GROWING_PERCENT' },
  ];
  for (const { env, setting } of cases) {
    const { code, stderr } = await runWorker(env);
    expect({ setting, code }).toEqual({ setting, code: 2 });
    expect(stderr).toContain(`invalid configuration: ${setting}: `);
    expect(stderr).not.toContain(key);
  }
});

test('the MQTT setting topicTemplate, renamed stateTopicTemplate, still works with a logged warning', async () => {
  const warnings: string[] = [];
  const targets = { mqtt: { type: 'mqtt', url: 'mqtt://127.0.0.1:1883', topicTemplate: 'old/{group}/{iccid}' } };
  const config = loadConfig({ KITE_TARGETS: JSON.stringify(targets) }, (message, setting) =>
    warnings.push(`${setting}: ${message}`)
  );
  expect(config.targets.mqtt).toMatchObject({ stateTopicTemplate: 'old/{group}/{iccid}' });
  expect(config.targets.mqtt).not.toHaveProperty('topicTemplate');
  expect(warnings).toEqual([
    expect.stringMatching(/^targets\.mqtt\.topicTemplate: .*deprecated: rename it to stateTopicTemplate/),
  ]);

  // Both names at once is ambiguous: refused, naming the old one.
  const both = { mqtt: { ...targets.mqtt, stateTopicTemplate: 'new/{iccid}' } };
  expect(() => loadConfig({ KITE_TARGETS: JSON.stringify(both) })).toThrow(
    'targets.mqtt.topicTemplate: is the old name of stateTopicTemplate; give only stateTopicTemplate'
  );

  // The worker process logs the warning (here before it stops on another target's bad setting).
  const { code, stderr } = await runWorker({
    KITE_TARGETS: JSON.stringify({ ...targets, hook: { type: 'webhook' } }),
  });
  expect(code).toBe(2);
  const warning = stderr
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { level: string; msg: string; setting?: string })
    .find((entry) => entry.setting === 'targets.mqtt.topicTemplate');
  expect(warning).toMatchObject({ level: 'warn', msg: expect.stringContaining('rename it to stateTopicTemplate') });
});
