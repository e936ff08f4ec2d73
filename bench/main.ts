/**
 * The scale benchmark (issue #7): a group of N SIMs (default 100,000) from the Kite simulator to a null target,
 * through the real worker process, with the floor (the same activities in a plain loop) and the one-activity-per-SIM
 * design side by side (runs.ts). Prints one table against the goals (report.ts); `scripts/bench.sh` starts the
 * stack around it.
 *   node -r @swc-node/register bench/main.ts [--sims N] [--small N] [--profile] [--out FILE]
 *     --ours-only          only the worker's cycles on the big group (the scale run: --sims 1000000)
 *     --groups N           N groups on one Kite account instead (--group-sims M SIMs each, default 10,000)
 *     --policy-day         a simulated day of a group (--policy-sims, default 10,000) in 5-minute cycles, with the
 *                          default publish policy and with every change sent: updates per SIM per day (policy-day.ts)
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, Runtime } from '@temporalio/worker';
import { connectRedis, type RedisClient } from '../state/redis';
import { ROOT, startSimulator, stopAll, type SimulatorProcess } from './processes';
import { profileReport, resultsTable, scaleTable } from './report';
import { groupNames, groupsTable, runGroups } from './groups';
import { azureTable, runAzure, type AzureRun } from './azure';
import { policyDayTable, runPolicyDay } from './policy-day';
import {
  dropPrefix,
  log,
  REDIS_URL,
  runFloor,
  runNaive,
  runOurs,
  settleRedis,
  type FirstSyncPair,
  type OurRun,
  TEMPORAL,
  unsettleRedis,
  warm,
} from './runs';

const sdkQuiet = new DefaultLogger('WARN');
Runtime.install({ logger: sdkQuiet });

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sims: { type: 'string', default: '100000' },
      small: { type: 'string', default: '2000' },
      profile: { type: 'boolean', default: false },
      out: { type: 'string' },
      'azure-sims': { type: 'string', default: '10000' },
      'first-syncs': { type: 'string', default: '3' },
      'azure-only': { type: 'boolean', default: false },
      'ours-only': { type: 'boolean', default: false },
      groups: { type: 'string' },
      'group-sims': { type: 'string', default: '10000' },
      'policy-day': { type: 'boolean', default: false },
      'policy-sims': { type: 'string', default: '10000' },
      'policy-cycles': { type: 'string', default: '288' },
    },
  });
  if (values['policy-day']) return policyDay(Number(values['policy-sims']), Number(values['policy-cycles']));
  if (values['azure-only']) return azureOnly(Number(values['azure-sims']), values.profile);
  if (values.groups !== undefined) return groupsOnly(Number(values.groups), Number(values['group-sims']));
  if (values['ours-only']) return oursOnly(Number(values.sims), values.out);
  const sims = Number(values.sims);
  const small = Number(values.small);
  if (!(sims >= 100 && small >= 100)) throw new Error('--sims and --small must be at least 100');
  const runId = Date.now().toString(36);
  const dataDir = path.join(ROOT, '.data/bench');
  const certDir = path.join(dataDir, 'certs');
  const profileDir = values.profile ? path.join(dataDir, `prof-${runId}`) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });

  log(`Temporal ${TEMPORAL}, Redis ${REDIS_URL}; ${sims} SIMs, small group ${small}`);
  const bigSim = await startSimulator('bench-big', sims, certDir);
  const smallSim = await startSimulator('bench-small', small, certDir);
  const connection = await Connection.connect({ address: TEMPORAL });
  const client = new Client({ connection });
  const redis = connectRedis(REDIS_URL);
  try {
    log(`warm-up: ${await warm(bigSim)} ms, ${await warm(smallSim)} ms`);
    // Production workers load a prebuilt bundle (npm run build); build it once here, outside the worker.
    const bundleStarted = Date.now();
    const bundle = path.join(dataDir, `workflow-bundle-${runId}.js`);
    writeFileSync(
      bundle,
      (await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows'), logger: sdkQuiet })).code
    );
    const bundleMs = Date.now() - bundleStarted;
    log(`workflow bundle built in ${bundleMs} ms`);
    await settleRedis(redis);
    const floor = await runFloor(redis, bigSim, 'bench-big', runId, profileDir);
    await settleRedis(redis);
    const big = await runOurs(client, redis, bigSim, 'bench-big', sims, runId, bundle, profileDir);
    const firstSyncs = await firstSyncPairs(Number(values['first-syncs']), runId, { floor, big }, async (id) => {
      await settleRedis(redis);
      const [floorSync] = await runFloor(redis, bigSim, 'bench-big', id, undefined, 1);
      await settleRedis(redis);
      const ours = await runOurs(client, redis, bigSim, 'bench-big', sims, id, bundle, undefined, 1);
      await dropPrefix(redis, `bench-${id}`);
      return { floorMs: floorSync.totalMs, oursMs: ours.cycles[0].cycleMs };
    });
    const smallRun = await runOurs(client, redis, smallSim, 'bench-small', small, runId, bundle);
    const naive = await runNaive(client, redis, smallSim, 'bench-small', runId);
    const azureSims = Number(values['azure-sims']);
    let azure: AzureRun | undefined;
    if (azureSims > 0) {
      const azureSim = await startSimulator('bench-azure', azureSims, certDir);
      try {
        azure = await runAzure(client, azureSim, 'bench-azure', azureSims, runId, bundle);
      } finally {
        azureSim.close();
      }
    }
    rmSync(bundle, { force: true });
    await dropPrefix(redis, `bench-${runId}`);

    const results = { sims, small, bundleMs, floor, big, firstSyncs, smallRun, naive, azure };
    process.stdout.write(`\n${resultsTable(results)}\n`);
    if (azure) process.stdout.write(`\n${azureTable(azure)}\n`);
    if (profileDir) {
      await new Promise((r) => setTimeout(r, 500));
      process.stdout.write(profileReport(profileDir));
    }
    const saved = { runId, machine: machine(), ...results };
    writeFileSync(values.out ?? path.join(dataDir, `results-${runId}.json`), JSON.stringify(saved, null, 2));
  } finally {
    await unsettleRedis(redis).catch(() => undefined);
    redis.disconnect();
    await connection.close();
    bigSim.close();
    smallSim.close();
    await stopAll();
  }
}

/**
 * The first syncs compared with the floor's: the full runs' pair, then `count - 1` more pairs, each ours right after
 * the floor's (under their own run id, so from empty state). One pair's ratio is the machine's moment as much as the
 * design's (two runs of the same code gave 1.16 and 1.10 on the shared 2-core machine); the report takes the median.
 */
async function firstSyncPairs(
  count: number,
  runId: string,
  { floor, big }: { floor: Awaited<ReturnType<typeof runFloor>>; big: OurRun },
  pair: (runId: string) => Promise<FirstSyncPair>
): Promise<FirstSyncPair[]> {
  if (!(count >= 1)) throw new Error('--first-syncs must be at least 1');
  const pairs: FirstSyncPair[] = [{ floorMs: floor[0].totalMs, oursMs: big.cycles[0].cycleMs }];
  for (let k = 2; k <= count; k++) {
    pairs.push(await pair(`${runId}-${k}`));
    const { floorMs, oursMs } = pairs[k - 1];
    log(
      `first sync pair ${k}: ours ${Math.round(oursMs)} ms / floor ${Math.round(floorMs)} ms = ${(oursMs / floorMs).toFixed(2)}`
    );
  }
  return pairs;
}

/** Runs `body` with a Temporal client, Redis and a prebuilt workflow bundle, and cleans up after it. */
async function withStack<T>(
  runId: string,
  sims: SimulatorProcess[],
  body: (ctx: { client: Client; redis: RedisClient; bundle: string }) => Promise<T>
): Promise<T> {
  const dataDir = path.join(ROOT, '.data/bench');
  const connection = await Connection.connect({ address: TEMPORAL });
  const redis = connectRedis(REDIS_URL);
  const bundle = path.join(dataDir, `workflow-bundle-${runId}.js`);
  try {
    for (const sim of sims) log(`warm-up: ${await warm(sim)} ms`);
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(
      bundle,
      (await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows'), logger: sdkQuiet })).code
    );
    await settleRedis(redis);
    return await body({ client: new Client({ connection }), redis, bundle });
  } finally {
    await unsettleRedis(redis).catch(() => undefined);
    rmSync(bundle, { force: true });
    await dropPrefix(redis, `bench-${runId}`);
    redis.disconnect();
    await connection.close();
    for (const sim of sims) sim.close();
    await stopAll();
  }
}

const machine = () => ({
  cpus: os.cpus().length,
  cpu: os.cpus()[0]?.model,
  node: process.version,
  loadAverage: os.loadavg(),
});

/** `--ours-only`: the worker's cycles on one big group, nothing else (the 1,000,000-SIM scale run). */
async function oursOnly(sims: number, out?: string): Promise<void> {
  const runId = Date.now().toString(36);
  const dataDir = path.join(ROOT, '.data/bench');
  log(`Temporal ${TEMPORAL}, Redis ${REDIS_URL}; ${sims} SIMs, the worker only; load average ${os.loadavg()[0]}`);
  const sim = await startSimulator('bench-big', sims, path.join(dataDir, 'certs'));
  const loadBefore = os.loadavg();
  const big = await withStack(runId, [sim], ({ client, redis, bundle }) =>
    runOurs(client, redis, sim, 'bench-big', sims, runId, bundle)
  );
  process.stdout.write(`\n${scaleTable(big)}\n`);
  const saved = { runId, machine: machine(), loadBefore, loadAfter: os.loadavg(), big };
  writeFileSync(out ?? path.join(dataDir, `results-scale-${runId}.json`), JSON.stringify(saved, null, 2));
}

/** `--groups N`: N groups of `simsPerGroup` SIMs on one Kite account, all due at once. */
async function groupsOnly(n: number, simsPerGroup: number): Promise<void> {
  if (!(n >= 1 && simsPerGroup >= 1)) throw new Error('--groups and --group-sims must be at least 1');
  const runId = Date.now().toString(36);
  const dataDir = path.join(ROOT, '.data/bench');
  const groups = groupNames(n);
  log(`Temporal ${TEMPORAL}, Redis ${REDIS_URL}; ${n} groups of ${simsPerGroup} SIMs on one account`);
  const sim = await startSimulator(groups, simsPerGroup, path.join(dataDir, 'certs'));
  const loadBefore = os.loadavg();
  const run = await withStack(runId, [sim], ({ client, bundle }) =>
    runGroups(client, sim, groups, simsPerGroup, runId, bundle)
  );
  process.stdout.write(`\n${groupsTable(run)}\n`);
  const saved = { runId, machine: machine(), loadBefore, loadAfter: os.loadavg(), groups: run };
  writeFileSync(path.join(dataDir, `results-groups-${runId}.json`), JSON.stringify(saved, null, 2));
}

/** `--policy-day`: the publish policy's figures alone; only Redis is needed (activities run in this process). */
async function policyDay(sims: number, cycles: number): Promise<void> {
  if (!(sims >= 1 && cycles >= 1)) throw new Error('--policy-sims and --policy-cycles must be at least 1');
  const runId = Date.now().toString(36);
  const dataDir = path.join(ROOT, '.data/bench');
  log(`Redis ${REDIS_URL}; policy day: ${sims} SIMs, ${cycles} cycles of 5 min; load average ${os.loadavg()[0]}`);
  const redis = connectRedis(REDIS_URL);
  try {
    const run = await runPolicyDay(redis, runId, {
      sims,
      cycles,
      cycleMs: 300_000,
      certDir: path.join(dataDir, 'certs'),
    });
    process.stdout.write(`\n${policyDayTable(run)}\n`);
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(
      path.join(dataDir, `results-policy-day-${runId}.json`),
      JSON.stringify({ runId, machine: machine(), ...run }, null, 2)
    );
  } finally {
    redis.disconnect();
    await stopAll();
  }
}

/** `--azure-only`: the Azure section alone (it needs no 100,000-SIM run). */
async function azureOnly(sims: number, profile: boolean): Promise<void> {
  const runId = Date.now().toString(36);
  const dataDir = path.join(ROOT, '.data/bench');
  const profileDir = profile ? path.join(dataDir, `prof-azure-${runId}`) : undefined;
  const sim = await startSimulator('bench-azure', sims, path.join(dataDir, 'certs'));
  const connection = await Connection.connect({ address: TEMPORAL });
  const redis = connectRedis(REDIS_URL);
  const bundle = path.join(dataDir, `workflow-bundle-${runId}.js`);
  try {
    await warm(sim);
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(
      bundle,
      (await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows'), logger: sdkQuiet })).code
    );
    const azure = await runAzure(new Client({ connection }), sim, 'bench-azure', sims, runId, bundle, profileDir);
    process.stdout.write(`\n${azureTable(azure)}\n`);
    writeFileSync(path.join(dataDir, `results-azure-${runId}.json`), JSON.stringify(azure, null, 2));
  } finally {
    rmSync(bundle, { force: true });
    await dropPrefix(redis, `bench-${runId}`);
    redis.disconnect();
    await connection.close();
    sim.close();
    await stopAll();
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void stopAll().then(() => process.exit(130)));
}
main().then(
  () => process.exit(0),
  async (err: Error) => {
    process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
    await stopAll();
    process.exit(1);
  }
);
