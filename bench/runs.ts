/**
 * The benchmark's runs: our design (the real worker process and the group workflow), the floor (the same
 * activities in a plain loop) and the naive design (one activity per SIM), each against a simulator process.
 */
import { readFileSync } from 'node:fs';
import type Redis from 'ioredis';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { kiteSourceFromClients } from '../activities/kite-source';
import { KiteClient, tlsFromFiles } from '../kite';
import { DEFAULT_TEMPORAL_ADDRESS } from '../shared/defaults';
import { createLogger } from '../shared/log';
import { scanKeys, type RedisClient } from '../state/redis';
import { StateStore } from '../state/store';
import { createNullTarget } from '../targets/null';
import {
  MAX_PRESENCE_MAX_AGE_MS,
  statusQuery,
  syncNowSignal,
  WORKFLOW_TYPE,
  type GroupConfig,
  type GroupStatus,
} from '../workflows/definitions';
import { groupVisibility } from '../workflows/search-attributes';
import { cycleFigures, lastRequest, type HistoryEvent } from './history';
import { createNaiveActivities } from './naive-activities';
import { startBenchWorker, type SimulatorProcess } from './processes';
import { startProfiler } from './profile';

export const TEMPORAL = process.env.BENCH_TEMPORAL_ADDRESS ?? DEFAULT_TEMPORAL_ADDRESS;
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/9';
const TARGETS = JSON.stringify({ null: { type: 'null' } });
const quiet = createLogger({}, { level: 'warn' });
export const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

export interface OurRun {
  bundleMs?: number;
  sims: number;
  startupMs: number;
  cycles: {
    cycleMs: number;
    events: number;
    stages: Record<string, number>;
    published: number;
    /** Kite API requests the simulator served during the cycle. */
    requests: KiteRequests;
  }[];
  peakRssMb: number;
  cpu: { workerS: number; simulatorS: number; wallS: number };
  redisBytes: Record<string, number>;
}

/** One first sync of ours and one of the floor, run one after the other from empty state. */
export interface FirstSyncPair {
  floorMs: number;
  oursMs: number;
}

/** Kite API requests counted by the simulator. */
export interface KiteRequests {
  list: number;
  presence: number;
}

/** The simulator's request counters so far. */
export async function kiteRequests(sim: SimulatorProcess): Promise<KiteRequests> {
  const info = (await sim.control('GET', 'info')) as { stats: { requests: KiteRequests } };
  return { list: info.stats.requests.list, presence: info.stats.requests.presence };
}

/** Requests between two readings of `kiteRequests`. */
export const requestsSince = (before: KiteRequests, after: KiteRequests): KiteRequests => ({
  list: after.list - before.list,
  presence: after.presence - before.presence,
});

export function cpuSeconds(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

function kiteClientFor(sim: SimulatorProcess): KiteClient {
  return new KiteClient({
    baseUrl: sim.info.baseUrl,
    requestsPerSecond: 0,
    logger: quiet,
    ...tlsFromFiles({ certFile: sim.info.clientCert, keyFile: sim.info.clientKey, caFile: sim.info.ca }),
  });
}

/** Pages the whole inventory once and reads some presence, so the simulator's JSON cache and JIT are warm. */
export async function warm(sim: SimulatorProcess): Promise<number> {
  const started = Date.now();
  const client = kiteClientFor(sim);
  const iccs: string[] = [];
  for await (const page of client.pages()) for (const s of page.sims) iccs.push(s.icc as string);
  await Promise.all(
    Array.from({ length: 4 }, async (_, w) => {
      for (let i = w; i < Math.min(iccs.length, 4000); i += 4) await client.getPresence(iccs[i]);
    })
  );
  client.close();
  return Date.now() - started;
}

/** Changes `fraction` of the group's SIMs through the simulator's control API: alias, and the APN of every other. */
export async function changeSims(sim: SimulatorProcess, group: string, fraction: number, tag: string): Promise<number> {
  const { iccs } = (await sim.control('GET', `sims?group=${group}`)) as { iccs: string[] };
  const step = Math.round(1 / fraction);
  const chosen = iccs.filter((_, i) => i % step === 0);
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < chosen.length) {
        const k = next++;
        const patch: Record<string, unknown> = { alias: `bench-${tag}-${k}` };
        if (k % 2) patch.apn = `bench${tag}.example`;
        await sim.control('PATCH', `sims/${encodeURIComponent(chosen[k])}`, patch);
      }
    })
  );
  return chosen.length;
}

/**
 * Rewrites Redis's append-only file now and waits for it, with the automatic rewrites off until unsettleRedis:
 * a rewrite forks and takes a core, and one that Redis starts at random in a measured cycle (the AOF doubled)
 * cost the second of two equal runs up to twice the time on 2 cores. Runs compared with each other start from a
 * rewritten file each.
 */
export async function settleRedis(redis: RedisClient): Promise<void> {
  if (redis.isCluster) return; // a Cluster's nodes are left as they are
  const node = redis as Redis;
  await node.config('SET', 'auto-aof-rewrite-percentage', '0');
  const inProgress = async () =>
    /aof_rewrite_in_progress:1|aof_rewrite_scheduled:1/.test(await node.info('persistence'));
  while (await inProgress()) await new Promise((r) => setTimeout(r, 200));
  await node.bgrewriteaof().catch(() => undefined); // refused only while one runs; waited for below either way
  while (await inProgress()) await new Promise((r) => setTimeout(r, 200));
}

/** Turns Redis's automatic AOF rewrites back on (Redis's default), after settleRedis. */
export async function unsettleRedis(redis: RedisClient): Promise<void> {
  if (!redis.isCluster) await (redis as Redis).config('SET', 'auto-aof-rewrite-percentage', '100');
}

export async function dropPrefix(redis: RedisClient, prefix: string): Promise<void> {
  // One key per UNLINK: a prefix spans groups, hence Cluster slots.
  for await (const keys of scanKeys(redis, `${prefix}:*`, 1000))
    await Promise.all(keys.map((key) => redis.unlink(key)));
}

export async function historyOf(handle: WorkflowHandle): Promise<HistoryEvent[]> {
  return (await handle.fetchHistory()).events ?? [];
}

/** Waits until the workflow completed `cycles` cycles and its history ends with the timer to the next one. */
export async function waitForCycle(handle: WorkflowHandle, cycles: number, timeoutMs: number): Promise<GroupStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await handle.query(statusQuery);
    if (status.cyclesCompleted >= cycles && status.phase === 'idle') {
      const events = await historyOf(handle);
      if (events[events.length - 1]?.timerStartedEventAttributes) return status;
    }
    if (Date.now() > deadline)
      throw new Error(`cycle ${cycles} not done in ${timeoutMs} ms: ${JSON.stringify(status)}`);
    // Cycle times come from the history, not from when this poll sees them: a query every 25 ms cost the worker
    // about 5 % of its CPU (each is a workflow activation) and the Temporal server more, on the same 2 cores.
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The worker's configuration (environment) for a bench run: a null target, no Kite budget, no metrics. */
export function workerEnv(sim: SimulatorProcess, taskQueue: string, prefix: string, bundle: string) {
  return {
    KITE_TEMPORAL_ADDRESS: TEMPORAL,
    KITE_TASK_QUEUE: taskQueue,
    KITE_REDIS_URL: REDIS_URL,
    KITE_REDIS_PREFIX: prefix,
    KITE_API_URL: sim.info.baseUrl,
    KITE_CA_FILE: sim.info.ca,
    KITE_CERT_FILE: sim.info.clientCert,
    KITE_KEY_FILE: sim.info.clientKey,
    KITE_REQUESTS_PER_SECOND: '0',
    KITE_TARGETS: TARGETS,
    KITE_METRICS_ADDRESS: 'off',
    KITE_LOG_LEVEL: 'info',
    KITE_WORKFLOW_BUNDLE: bundle,
  };
}

/**
 * Cycles here follow each other at once (syncNow), each a period of the group's 1 h interval as the presence refresh
 * reckons it: with the default 1 h presence max age every SIM would be due in every cycle, and a no-change cycle
 * would re-read every presence. The bench measures cycles without refreshes; the refresh's cost is one presence read
 * per SIM per max age, capped by Kite's budget (activities/presence-refresh.ts).
 */
/**
 * Cycles of each of our runs: first sync, no change (settling), 1 % changed, then SETTLED_CYCLES no-change cycles in
 * the steady state. One sample of a cycle of about a second varies by a fifth between runs on a shared 2-core
 * machine; the steady state is reported as the median of the settled ones (settledCycles), each one listed.
 */
const SETTLED_CYCLES = 3;
const OUR_CYCLES = 3 + SETTLED_CYCLES;

/** The steady state of a run: its settled cycles (4th on), and the one of median wall time. */
export function settledCycles(run: OurRun): { median?: OurRun['cycles'][number]; all: OurRun['cycles'] } {
  const all = run.cycles.slice(3);
  return { median: medianOf(all, (c) => c.cycleMs), all };
}

/** The item whose value is the median (the lower of the two middle ones for an even count); undefined if none. */
export function medianOf<T>(items: T[], value: (item: T) => number): T | undefined {
  const sorted = [...items].sort((a, b) => value(a) - value(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

export const BENCH_PRESENCE = { presenceMaxAgeMs: MAX_PRESENCE_MAX_AGE_MS } as const;

/**
 * Our design: the real worker process and the group workflow, six cycles: the first sync; a cycle without change,
 * which maps and diffs every SIM once more (a SIM is settled only once a diff finds every target holding it); 1 %
 * changed; and three cycles without change in the steady state, where settled SIMs are passed by. `cycles`: fewer
 * (1: the first sync only).
 */
export async function runOurs(
  client: Client,
  redis: RedisClient,
  sim: SimulatorProcess,
  group: string,
  sims: number,
  runId: string,
  bundle: string,
  profileDir?: string,
  cycles = OUR_CYCLES
): Promise<OurRun> {
  const prefix = `bench-${runId}`;
  const taskQueue = `bench-${runId}-${group}`;
  const worker = await startBenchWorker(workerEnv(sim, taskQueue, prefix, bundle), profileDir);
  log(`${group}: worker started in ${worker.startupMs} ms`);
  const result: OurRun = {
    sims,
    startupMs: worker.startupMs,
    cycles: [],
    peakRssMb: 0,
    cpu: { workerS: 0, simulatorS: 0, wallS: 0 },
    redisBytes: {},
  };
  // A bound, not a wait: generous, since on a shared machine a 100,000-SIM first sync has taken 20 minutes.
  const timeout = Math.max(300_000, sims * 20);
  const config: GroupConfig = { group, enabled: true, intervalMs: 3_600_000, targets: ['null'], ...BENCH_PRESENCE };
  const handle = await client.workflow.start(WORKFLOW_TYPE, {
    taskQueue,
    workflowId: `bench:${runId}:${group}`,
    args: [{ config }],
    typedSearchAttributes: groupVisibility(config).searchAttributes,
  });
  try {
    let previous = 0;
    for (let cycle = 1; cycle <= cycles; cycle++) {
      if (cycle === 3) log(`${group}: changed ${await changeSims(sim, group, 0.01, runId)} SIMs`);
      const cpu0 = [cpuSeconds(worker.child.pid), cpuSeconds(sim.child.pid), Date.now()];
      const requests0 = await kiteRequests(sim);
      if (cycle > 1) await handle.signal(syncNowSignal);
      const status = await waitForCycle(handle as WorkflowHandle, cycle, timeout);
      if (cycle === 1) {
        result.cpu = {
          workerS: cpuSeconds(worker.child.pid) - cpu0[0],
          simulatorS: cpuSeconds(sim.child.pid) - cpu0[1],
          wallS: (Date.now() - cpu0[2]) / 1000,
        };
      }
      const last = status.lastCycle!;
      if (last.outcome !== 'completed') throw new Error(`${group} cycle ${cycle}: ${JSON.stringify(last)}`);
      const events = await historyOf(handle as WorkflowHandle);
      const figures = cycleFigures(events, lastRequest(events));
      const requests = requestsSince(requests0, await kiteRequests(sim));
      const published = last.targets.null.published;
      result.cycles.push({ ...figures, events: events.length - previous, published, requests });
      previous = events.length;
      log(
        `${group}: cycle ${cycle} ${figures.cycleMs} ms, ${published} published, Kite requests ${JSON.stringify(requests)}`
      );
    }
    result.redisBytes = await new StateStore(redis, { prefix }).memoryByFamily(group);
    result.peakRssMb = worker.peakRssMb() ?? NaN;
  } finally {
    await handle.terminate('benchmark done').catch(() => undefined);
    await worker.stop();
  }
  return result;
}

/**
 * Baseline (a): the same activities called in a plain loop, no Temporal (MockActivityEnvironment gives them a
 * Context). `count` cycles: the first sync, a no-change cycle that maps every SIM, and the steady state.
 */
export async function runFloor(
  redis: RedisClient,
  sim: SimulatorProcess,
  group: string,
  runId: string,
  profileDir?: string,
  count = 3
) {
  const prefix = `bench-floor-${runId}`;
  const store = new StateStore(redis, { prefix });
  const client = kiteClientFor(sim);
  const kite = kiteSourceFromClients(() => client);
  const target = createNullTarget({ name: 'null', latencyMs: 0 });
  const acts = createActivities({ store, kite, targets: new Map([['null', { target }]]), logger: quiet });
  const cycles: {
    totalMs: number;
    stages: Record<string, number>;
    cpu: { benchS: number; simulatorS: number };
    requests: KiteRequests;
  }[] = [];
  // 1: the first sync; 2: no change, the first after it (maps every SIM once more, to settle it); 3: no change in
  // the steady state (settled SIMs whose Kite entry did not change are passed by).
  for (let cycle = 1; cycle <= count; cycle++) {
    const requests0 = await kiteRequests(sim);
    const stages: Record<string, number> = {};
    // CPU of this process and of the simulator, to set beside the worker's: same work, without Temporal.
    const cpu0 = [process.cpuUsage(), cpuSeconds(sim.child.pid)] as const;
    const timed = async <T>(name: string, fn: () => Promise<T>) => {
      const t = performance.now();
      const r = await fn();
      stages[name] = performance.now() - t;
      return r;
    };
    const profiler = profileDir && cycle !== 2 ? await startProfiler() : undefined;
    const started = performance.now();
    await timed('fetchSnapshot', () => new MockActivityEnvironment().run(acts.fetchSnapshot, { group, cycle }));
    await timed('diffSnapshot', () =>
      new MockActivityEnvironment().run(acts.diffSnapshot, { group, cycle, targets: ['null'] })
    );
    await timed('publishChanges', () =>
      new MockActivityEnvironment().run(acts.publishChanges, { group, cycle, target: 'null' })
    );
    if (profiler) await profiler.stopInto(path.join(profileDir!, cycle === 1 ? 'floor' : 'floor-steady'));
    const { user, system } = process.cpuUsage(cpu0[0]);
    const cpu = { benchS: (user + system) / 1e6, simulatorS: cpuSeconds(sim.child.pid) - cpu0[1] };
    const totalMs = performance.now() - started;
    cycles.push({ totalMs, stages, cpu, requests: requestsSince(requests0, await kiteRequests(sim)) });
    log(
      `floor: cycle ${cycle} ${Math.round(totalMs)} ms, ${target.counters().items} published, Kite requests ${JSON.stringify(cycles[cycle - 1].requests)}`
    );
  }
  client.close();
  await dropPrefix(redis, prefix);
  return cycles;
}

/** Baseline (b): one activity per SIM, in a worker in this process. Returns the first sync's time. */
export async function runNaive(
  client: Client,
  redis: RedisClient,
  sim: SimulatorProcess,
  group: string,
  runId: string
) {
  const prefix = `bench-naive-${runId}`;
  const store = new StateStore(redis, { prefix });
  const kiteClient = kiteClientFor(sim);
  const target = createNullTarget({ name: 'null', latencyMs: 0 });
  const targets = new Map([['null', { target }]]);
  // The naive design re-reads every SIM's staged record: its fetch stages them all (no skipping of unchanged SIMs).
  const acts = createActivities({
    store,
    kite: kiteSourceFromClients(() => kiteClient),
    targets,
    logger: quiet,
    skipUnchanged: false,
  });
  const connection = await NativeConnection.connect({ address: TEMPORAL });
  const taskQueue = `bench-naive-${runId}`;
  try {
    const worker = await Worker.create({
      connection,
      taskQueue,
      workflowsPath: require.resolve('./naive-workflow'),
      activities: createNaiveActivities(store, acts.fetchSnapshot, targets),
    });
    return await worker.runUntil(async () => {
      const handle = await client.workflow.start('naiveGroupSyncWorkflow', {
        taskQueue,
        workflowId: `bench:${runId}:naive`,
        args: [{ group, cycle: 1, target: 'null' }],
      });
      const out = (await handle.result()) as { sims: number; published: number };
      const events = await historyOf(handle as WorkflowHandle);
      const at = (e: HistoryEvent) => Number(e.eventTime?.seconds ?? 0) * 1000 + (e.eventTime?.nanos ?? 0) / 1e6;
      const ms = at(events[events.length - 1]) - at(events[0]);
      log(`naive: ${out.published} SIMs in ${Math.round(ms)} ms, ${events.length} history events`);
      return { ms, events: events.length, published: out.published };
    });
  } finally {
    kiteClient.close();
    await connection.close();
    await dropPrefix(redis, prefix);
  }
}
