/**
 * The benchmark's Azure section (issue #13): a group of N SIMs (default 10,000) from the Kite simulator to the
 * Azure IoT Hub double behaving as an S1 hub with 50 ms latency on every operation, through the real worker
 * process in module mode: a first sync, then a cycle where 1% of the SIMs changed. Measured by the double (what
 * the hub saw) and by Temporal: twin updates per second against the hub's 50/s, billed messages per SIM update,
 * identity operations, the longest gap between the publish activity's heartbeats as the server saw them, and the
 * publish activity's attempts.
 *
 * Identity operations are the one S1 limit the bench lifts (on both sides): at 100/min, creating 10,000 module
 * identities takes 100 minutes on a real S1 hub, whatever the client does. The report counts the operations
 * used and gives that time.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { AzureIotHubDouble } from '../test/azure-double';
import { syncNowSignal, WORKFLOW_TYPE, type GroupConfig } from '../workflows/definitions';
import { groupVisibility } from '../workflows/search-attributes';
import { BENCH_PRESENCE, changeSims, historyOf, log, REDIS_URL, TEMPORAL, waitForCycle } from './runs';
import { startBenchWorker, type SimulatorProcess } from './processes';
import { startProfiler, topFrames } from './profile';

export interface AzureCycle {
  published: number;
  cycleMs: number;
  /** Twin updates the hub accepted during the cycle. */
  twinUpdates: number;
  /** Twin updates per second from the first to the last update of the cycle. */
  twinUpdatesPerSecond: number;
  /** The most twin updates the hub accepted in any 10 s window, per second. */
  peak10sPerSecond: number;
  /** The most twin updates the hub accepted in any 1 s window. */
  peak1s: number;
  billedMessages: number;
  identityOps: number;
  /** Twin updates the hub refused for its throttle. */
  hubThrottled: number;
  /** Connections the hub refused for its throttle. */
  hubRefusedConnections: number;
  longestHeartbeatGapMs: number;
  publishAttempts: number;
}

export interface AzureRun {
  sims: number;
  budgetPerSecond: number;
  cycles: AzureCycle[];
}

type Timestamp = { seconds?: unknown; nanos?: number | null } | null | undefined;
const tsMs = (t: Timestamp) => (t ? Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6 : 0);

/** Polls the publish activity's last heartbeat as the server recorded it; returns the longest gap seen. */
function watchHeartbeats(handle: WorkflowHandle): { stop(): Promise<number> } {
  let longest = 0;
  let lastBeat = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const raw = (await handle.describe().catch(() => undefined))?.raw;
      for (const a of raw?.pendingActivities ?? []) {
        if (a.activityType?.name !== 'publishChanges') continue;
        const beat = tsMs(a.lastHeartbeatTime) || tsMs(a.lastStartedTime);
        if (beat > lastBeat) {
          if (lastBeat) longest = Math.max(longest, beat - lastBeat);
          lastBeat = beat;
        } else if (beat && Date.now() - lastBeat > longest) longest = Date.now() - lastBeat;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return longest;
    },
  };
}

/** Attempts of the last publishChanges activity in the history. */
function publishAttempts(events: Awaited<ReturnType<typeof historyOf>>): number {
  const publishes = new Set(
    events
      .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'publishChanges')
      .map((e) => String(e.eventId))
  );
  let attempts = 0;
  for (const e of events) {
    const started = e.activityTaskStartedEventAttributes;
    if (started && publishes.has(String(started.scheduledEventId))) attempts = started.attempt ?? 1;
  }
  return attempts;
}

export async function runAzure(
  client: Client,
  sim: SimulatorProcess,
  group: string,
  sims: number,
  runId: string,
  bundle: string,
  /** Writes the worker's and this process's (the hub double's) CPU profiles here, and reports their top frames. */
  profileDir?: string
): Promise<AzureRun> {
  const hub = await AzureIotHubDouble.start({
    tier: 'S1',
    latencyMs: { identity: 50, connection: 50, twinUpdate: 50, twinRead: 50 },
    limits: { identityOpsPerMinute: 1_000_000 },
  });
  const taskQueue = `bench-${runId}-azure`;
  const target = {
    type: 'azure',
    connectionString: hub.serviceConnectionString,
    serviceUrl: hub.serviceUrl,
    deviceHost: hub.deviceHost,
    ca: hub.ca,
    tier: 'S1',
    identityOpsPerMinute: 1_000_000,
  };
  const worker = await startBenchWorker(
    {
      KITE_TEMPORAL_ADDRESS: TEMPORAL,
      KITE_TASK_QUEUE: taskQueue,
      KITE_REDIS_URL: REDIS_URL,
      KITE_REDIS_PREFIX: `bench-${runId}`,
      KITE_API_URL: sim.info.baseUrl,
      KITE_CA_FILE: sim.info.ca,
      KITE_CERT_FILE: sim.info.clientCert,
      KITE_KEY_FILE: sim.info.clientKey,
      KITE_REQUESTS_PER_SECOND: '0',
      KITE_TARGETS: JSON.stringify({ azure: target }),
      KITE_LOG_LEVEL: 'info', // the bench waits for "worker started"
      KITE_WORKFLOW_BUNDLE: bundle,
    },
    profileDir && path.join(profileDir, 'worker')
  );
  const hubProfiler = profileDir ? await startProfiler() : undefined;
  log(`azure: worker started in ${worker.startupMs} ms, hub double at ${hub.serviceUrl}`);
  const config: GroupConfig = { group, enabled: true, intervalMs: 3_600_000, targets: ['azure'], ...BENCH_PRESENCE };
  const handle = await client.workflow.start(WORKFLOW_TYPE, {
    taskQueue,
    workflowId: `bench:${runId}:azure`,
    args: [{ config }],
    typedSearchAttributes: groupVisibility(config).searchAttributes,
  });
  const run: AzureRun = { sims, budgetPerSecond: hub.limiter.limits.twinUpdatesPerSecond, cycles: [] };
  try {
    for (let cycle = 1; cycle <= 2; cycle++) {
      if (cycle === 2) log(`azure: changed ${await changeSims(sim, group, 0.01, `${runId}az`)} SIMs`);
      const before = {
        updates: hub.acceptedCount('twinUpdate'),
        billed: hub.billedMessagesTotal,
        identity: hub.acceptedCount('identity'),
        throttled: hub.throttledCount('twinUpdate'),
        refusedConnections: hub.throttledCount('connection'),
        started: Date.now(),
      };
      const heartbeats = watchHeartbeats(handle as WorkflowHandle);
      if (cycle > 1) await handle.signal(syncNowSignal);
      const status = await waitForCycle(handle as WorkflowHandle, cycle, Math.max(120_000, sims * 200));
      const longestHeartbeatGapMs = await heartbeats.stop();
      const last = status.lastCycle!;
      if (last.outcome !== 'completed') throw new Error(`azure cycle ${cycle}: ${JSON.stringify(last)}`);
      const times = hub.limiter.accepted.twinUpdate.slice(before.updates);
      const twinUpdates = times.length;
      const spanS = twinUpdates > 1 ? (times[times.length - 1] - times[0]) / 1000 : 0;
      const figures: AzureCycle = {
        published: last.targets.azure.published,
        cycleMs: Date.now() - before.started,
        twinUpdates,
        twinUpdatesPerSecond: spanS > 0 ? twinUpdates / spanS : twinUpdates,
        peak10sPerSecond: maxInWindow(times, 10_000) / 10,
        peak1s: maxInWindow(times, 1_000),
        billedMessages: hub.billedMessagesTotal - before.billed,
        identityOps: hub.acceptedCount('identity') - before.identity,
        hubThrottled: hub.throttledCount('twinUpdate') - before.throttled,
        hubRefusedConnections: hub.throttledCount('connection') - before.refusedConnections,
        longestHeartbeatGapMs,
        publishAttempts: publishAttempts(await historyOf(handle as WorkflowHandle)),
      };
      run.cycles.push(figures);
      log(`azure: cycle ${cycle} ${JSON.stringify(figures)}`);
    }
  } finally {
    await handle.terminate('benchmark done').catch(() => undefined);
    // The worker's log (its last 512 KB), to see why an attempt failed.
    const logFile = path.join(path.dirname(bundle), `azure-worker-${runId}.log`);
    writeFileSync(logFile, worker.output());
    log(`azure: the worker's log is in ${logFile}`);
    await worker.stop();
    await hub.stop();
    await hubProfiler?.stopInto(path.join(profileDir!, 'hub'));
  }
  if (profileDir) {
    await new Promise((r) => setTimeout(r, 500)); // the worker writes its profile as it exits
    for (const [title, dir] of [
      ['worker', path.join(profileDir, 'worker')],
      ['hub double (bench process)', path.join(profileDir, 'hub')],
    ]) {
      const { totalMs, frames } = topFrames(dir, 25);
      log(`azure: ${title} CPU profile, ${(totalMs / 1000).toFixed(1)} s sampled:`);
      for (const f of frames) log(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.frame}`);
    }
  }
  return run;
}

function maxInWindow(sorted: number[], windowMs: number): number {
  let best = 0;
  for (let lo = 0, hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi] - sorted[lo] >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

/** The Azure section of the report. */
export function azureTable(run: AzureRun): string {
  const rows: string[][] = [['', 'first sync', '1% changed', 'goal']];
  const [first, change] = run.cycles;
  const cell = (f: (c: AzureCycle) => string) => [f(first), change ? f(change) : '-'];
  const pct = (c: AzureCycle) =>
    c.twinUpdates < run.budgetPerSecond
      ? `${c.twinUpdates} in one burst`
      : `${c.twinUpdatesPerSecond.toFixed(1)}/s (${Math.round((100 * c.twinUpdatesPerSecond) / run.budgetPerSecond)} %)`;
  rows.push(['SIMs published', ...cell((c) => String(c.published)), '']);
  rows.push(['cycle time', ...cell((c) => `${(c.cycleMs / 1000).toFixed(1)} s`), '']);
  rows.push([`twin updates/s (budget ${run.budgetPerSecond}/s)`, ...cell(pct), '≥ 90 %, never above']);
  rows.push(['peak over any 10 s', ...cell((c) => `${c.peak10sPerSecond.toFixed(1)}/s`), `≤ ${run.budgetPerSecond}/s`]);
  rows.push(['peak over any 1 s', ...cell((c) => `${c.peak1s}`), `≤ ${run.budgetPerSecond}`]);
  rows.push(['updates the hub throttled', ...cell((c) => String(c.hubThrottled)), '0']);
  rows.push([
    'billed messages per SIM update',
    ...cell((c) => (c.billedMessages / Math.max(1, c.twinUpdates)).toFixed(2)),
    '1.0',
  ]);
  rows.push([
    'identity operations',
    ...cell((c) => `${c.identityOps} (${(c.identityOps / 100).toFixed(0)} min at S1's 100/min)`),
    '',
  ]);
  rows.push(['longest heartbeat gap', ...cell((c) => `${(c.longestHeartbeatGapMs / 1000).toFixed(1)} s`), '< 5 s']);
  rows.push(['publish activity attempts', ...cell((c) => String(c.publishAttempts)), '1']);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [
    `Azure IoT Hub (double as S1, 50 ms latency, module mode): ${run.sims} SIMs`,
    line(rows[0]),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.slice(1).map(line),
  ].join('\n');
}
