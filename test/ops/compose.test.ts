/**
 * docker-compose.yml and the Dockerfile, checked statically (no Docker engine runs here): the YAML parses, the
 * services, ports, pins and health checks are there, the worker's environment names are the ones
 * worker/config.ts reads, and the image runs what `npm run build` produces.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { WORKER_NODE_OPTIONS } from '../../bench/processes';

const ROOT = path.resolve(__dirname, '../..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

interface Service {
  image?: string;
  build?: { context: string; target?: string };
  profiles?: string[];
  ports?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string | string[] };
  depends_on?: Record<string, { condition: string; required?: boolean }>;
  command?: string | string[];
}

/** Parses YAML with PyYAML (safe_load): no YAML package is a dependency of this project. */
function loadYaml(file: string): { services: Record<string, Service>; volumes?: Record<string, unknown> } {
  const script = 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))';
  let out: string;
  try {
    out = execFileSync('python3', ['-c', script, path.join(ROOT, file)], { encoding: 'utf8' });
  } catch (err) {
    throw new Error(`cannot parse ${file} with python3 + PyYAML (install python3-yaml): ${(err as Error).message}`);
  }
  return JSON.parse(out);
}

const compose = loadYaml('docker-compose.yml');
const services = compose.services;

/** `${VAR:-default}` → default; plain text unchanged. */
const withDefaults = (text: string) => text.replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1');

test('the expected services exist, the demo ones behind profiles', () => {
  expect(Object.keys(services)).toEqual(
    expect.arrayContaining(['postgres', 'temporal', 'temporal-ui', 'redis', 'worker', 'kite-simulator'])
  );
  expect(services['kite-simulator'].profiles).toEqual(['simulator']);
  for (const core of ['postgres', 'temporal', 'temporal-ui', 'redis', 'worker']) {
    expect(services[core].profiles).toBeUndefined();
  }
});

test('every image is pinned to a version; built images come from this Dockerfile', () => {
  for (const [name, service] of Object.entries(services)) {
    if (service.build) {
      expect({ name, context: service.build.context }).toEqual({ name, context: '.' });
      continue;
    }
    const image = withDefaults(service.image ?? '');
    expect({ name, image }).toEqual({ name, image: expect.stringMatching(/^[a-z0-9./_-]+:\d+(\.\d+)+$/) });
  }
  expect(services.postgres.image).toMatch(/^postgres:16\.\d+$/);
  expect(services.redis.image).toMatch(/^redis:7\.4\.\d+$/);
  expect(services.temporal.image).toMatch(/^temporalio\/server:/);
  expect(services['temporal-ui'].image).toMatch(/^temporalio\/ui:/);
  expect(services.worker.build?.target).toBe('worker');
  expect(services['kite-simulator'].build?.target).toBe('simulator');
});

test('ports: Temporal 7233, Web UI on 8233, worker metrics 9464, all on 127.0.0.1 by default', () => {
  const ports = (name: string) => (services[name].ports ?? []).map(withDefaults);
  expect(ports('temporal')).toEqual(['127.0.0.1:7233:7233']);
  expect(ports('temporal-ui')).toEqual(['127.0.0.1:8233:8080']);
  expect(ports('worker')).toEqual(['127.0.0.1:9464:9464']);
  expect(ports('postgres')).toEqual([]);
  expect(ports('redis')).toEqual([]);
});

test('every long-running service has a health check, and dependants wait for it', () => {
  const oneShot = new Set(['temporal-schema', 'temporal-init']);
  for (const [name, service] of Object.entries(services)) {
    if (oneShot.has(name)) continue;
    expect({ name, healthcheck: Boolean(service.healthcheck?.test) }).toEqual({ name, healthcheck: true });
  }
  expect(services.temporal.depends_on?.['temporal-schema'].condition).toBe('service_completed_successfully');
  expect(services.worker.depends_on).toMatchObject({
    'temporal-init': { condition: 'service_completed_successfully' },
    redis: { condition: 'service_healthy' },
    'kite-simulator': { condition: 'service_healthy', required: false },
  });
});

test('Redis keeps an append-only file on a volume', () => {
  expect(services.redis.command).toEqual(expect.arrayContaining(['--appendonly', 'yes']));
  expect(compose.volumes).toHaveProperty('redis-data');
});

test("the connector's search attributes are registered as Keyword", () => {
  const init = String(services['temporal-init'].command);
  expect(init).toMatch(/for name in KiteGroup KiteSyncState/);
  expect(init).toMatch(/search-attribute create .*--type Keyword/);
});

test("the worker's environment names are the ones its configuration readers read", () => {
  const env = services.worker.environment ?? {};
  const readers = ['worker/config.ts', 'shared/log.ts', 'shared/temporal-settings.ts', 'targets/config.ts'].filter(
    (f) => existsSync(path.join(ROOT, f))
  );
  const source = readers.map(read).join('\n');
  for (const name of Object.keys(env)) {
    expect({ name, readByWorker: source.includes(name) }).toEqual({ name, readByWorker: true });
  }
  for (const required of ['KITE_TEMPORAL_ADDRESS', 'KITE_TASK_QUEUE', 'KITE_REDIS_URL', 'KITE_API_URL']) {
    expect(env).toHaveProperty(required);
  }
  expect(withDefaults(env.KITE_TEMPORAL_ADDRESS)).toBe('temporal:7233');
  expect(withDefaults(env.KITE_REDIS_URL)).toBe('redis://redis:6379');
  expect(env.KITE_METRICS_ADDRESS).toBe('0.0.0.0:9464');
});

test('compose interpolation is only ${VAR} or ${VAR:-default}, and shell variables are escaped as $$', () => {
  const text = read('docker-compose.yml')
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'))
    .join('\n');
  const bare = text.replace(/\$\$/g, '').match(/\$(?!\{[A-Z0-9_]+(:-[^}]*)?\})[^\n]{0,20}/g);
  expect(bare).toBeNull();
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const stages = [...dockerfile.matchAll(/^FROM\s+(\S+)\s+AS\s+(\S+)/gim)].map((m) => ({ from: m[1], name: m[2] }));

  test('is multi-stage on Debian slim Node 20 with ca-certificates, ending with the non-root worker', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20\.\d+\.\d+-bookworm-slim$/m);
    expect(stages.map((s) => s.name)).toEqual(['base', 'build', 'prod-deps', 'runtime', 'simulator', 'worker']);
    expect(dockerfile).toMatch(/apt-get install -y --no-install-recommends ca-certificates/);
    expect(dockerfile).toMatch(/RUN npm ci --no-audit --no-fund\n/);
    expect(dockerfile).toMatch(/RUN npm run build/);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    const workerStage = dockerfile.slice(dockerfile.indexOf('AS worker'));
    expect(workerStage).toMatch(/^USER node$/m);
  });

  test('runs what the build produces: CMD and the bundle path follow tsconfig.build.json and npm run build', () => {
    const cmd = JSON.parse(
      dockerfile
        .match(/^CMD (\[.*\])$/gm)!
        .pop()!
        .slice(4)
    ) as string[];
    expect(cmd).toEqual(['node', 'lib/worker/main.js']);
    const build = JSON.parse(read('tsconfig.build.json'));
    const base = JSON.parse(read('tsconfig.json'));
    expect(base.compilerOptions).toMatchObject({ outDir: 'lib', rootDir: '.' });
    expect(build.include).toEqual(expect.arrayContaining(['worker', 'workflows', 'kite']));
    expect(existsSync(path.join(ROOT, 'worker/main.ts'))).toBe(true);
    expect(existsSync(path.join(ROOT, 'simulator/cli.ts'))).toBe(true);
    expect(dockerfile).toContain('ENTRYPOINT ["node", "lib-simulator/simulator/cli.js"]');
    // build-bundle runs from lib/worker, so DEFAULT_BUNDLE_PATH (../workflow-bundle.js) is lib/workflow-bundle.js.
    const pkg = JSON.parse(read('package.json'));
    expect(pkg.scripts.build).toContain('lib/worker/build-bundle.js');
    expect(read('worker/worker.ts')).toMatch(/path\.resolve\(__dirname, '\.\.\/workflow-bundle\.js'\)/);
    expect(dockerfile).toContain('KITE_WORKFLOW_BUNDLE=/app/lib/workflow-bundle.js');
  });

  test('the worker sizes its V8 heap as the benchmark measured it', () => {
    const workerStage = dockerfile.slice(dockerfile.indexOf('AS worker'));
    const flag = /NODE_OPTIONS="([^"]+)"/.exec(workerStage)?.[1];
    expect(flag).toBe(WORKER_NODE_OPTIONS);
  });

  test('copies every source folder the build compiles', () => {
    const build = JSON.parse(read('tsconfig.build.json')) as { include: string[] };
    for (const folder of build.include.filter((f) => existsSync(path.join(ROOT, f)))) {
      expect(dockerfile).toContain(`COPY ${folder} ./${folder}`);
    }
  });

  test('.dockerignore keeps local state, dependencies and secrets out of the context', () => {
    const ignored = read('.dockerignore').split('\n');
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'lib', '.data', '.cache', '.git', '.env']));
  });
});
