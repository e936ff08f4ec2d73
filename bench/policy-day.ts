/**
 * `--policy-day`: what the publish policy saves. One simulated day of a group (10,000 SIMs by default) under the
 * simulator's default evolution, in 5-minute cycles, through the real fetch, diff and publish activities in this
 * process against a counting target, once per policy: the default one, and the one that sends every change
 * (`countersMinIntervalMs` 0, `locationMinDistanceM` 0), side by side on the same inventory: one fetch per cycle,
 * then per policy a diff and a publish to a target of its own. The diff reads the simulator's clock, so the policy
 * sees simulated time (a 15-minute hold is three cycles, the daily reset comes at simulated midnight).
 */
import os from 'node:os';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type DiffResult } from '../activities';
import { kiteSourceFromClients } from '../activities/kite-source';
import { KiteClient, tlsFromFiles } from '../kite';
import { COUNTER_KEYS, LOCATION_KEYS, type PublishPolicy, type RecordKey } from '../record';
import { createLogger } from '../shared/log';
import type { RedisClient } from '../state/redis';
import { StateStore } from '../state/store';
import type { PublishItem, PublishOutcome, Target } from '../targets/target';
import { startSimulator, type SimulatorProcess } from './processes';
import { dropPrefix, log } from './runs';

const GROUP = 'bench-policy';
const quiet = createLogger({}, { level: 'warn' });

/** What one policy sent over the day (the group's first, full publish left out). */
export interface PolicyFigures {
  name: string;
  policy: PublishPolicy;
  /** SIM updates the target received: one twin/shadow update, two MQTT messages (state and changes) each. */
  updates: number;
  /** Keys across those updates. */
  keys: number;
  /** Updates by what they carried: counters only, location (with or without counters), any other key. */
  byKind: { countersOnly: number; location: number; other: number };
  /** SIM-cycles whose only changes the policy held (summed over the cycles). */
  held: number;
  updatesPerSimPerDay: number;
}

export interface PolicyDayRun {
  sims: number;
  cycles: number;
  cycleMinutes: number;
  simulatedFrom: string;
  simulatedTo: string;
  policies: PolicyFigures[];
  wallS: number;
  loadBefore: number[];
  loadAfter: number[];
}

/** Counts what it is sent, by kind; every item succeeds. */
class CountingTarget implements Target {
  updates = 0;
  keys = 0;
  byKind = { countersOnly: 0, location: 0, other: 0 };

  constructor(readonly name: string) {}

  async publish(items: PublishItem[]): Promise<PublishOutcome[]> {
    for (const { patch } of items) {
      const keys = Object.keys(patch) as RecordKey[];
      this.updates++;
      this.keys += keys.length;
      const counters = keys.filter((k) => (COUNTER_KEYS as readonly string[]).includes(k)).length;
      const location = keys.filter((k) => (LOCATION_KEYS as readonly string[]).includes(k)).length;
      if (keys.length === counters) this.byKind.countersOnly++;
      else if (keys.length === counters + location) this.byKind.location++;
      else this.byKind.other++;
    }
    return items.map((i) => ({ iccid: i.iccid, status: 'ok' }));
  }

  reset(): void {
    this.updates = this.keys = 0;
    this.byKind = { countersOnly: 0, location: 0, other: 0 };
  }

  async close(): Promise<void> {}
}

/** The policies compared, each with its own counting target. */
const POLICIES: { name: string; policy: PublishPolicy }[] = [
  { name: 'default', policy: {} },
  { name: 'every-change', policy: { countersMinIntervalMs: 0, locationMinDistanceM: 0 } },
];

export async function runPolicyDay(
  redis: RedisClient,
  runId: string,
  options: { sims: number; cycles: number; cycleMs: number; certDir: string }
): Promise<PolicyDayRun> {
  const { sims, cycles, cycleMs, certDir } = options;
  const loadBefore = os.loadavg();
  const started = performance.now();
  const sim: SimulatorProcess = await startSimulator(GROUP, sims, certDir);
  const kiteClient = new KiteClient({
    baseUrl: sim.info.baseUrl,
    requestsPerSecond: 0,
    logger: quiet,
    ...tlsFromFiles({ certFile: sim.info.clientCert, keyFile: sim.info.clientKey, caFile: sim.info.ca }),
  });
  let simNow = Date.parse(((await sim.control('GET', 'info')) as { now: string }).now);
  const simulatedFrom = new Date(simNow).toISOString();
  const prefix = `bench-${runId}-policy`;
  const counting = POLICIES.map((p) => ({ ...p, target: new CountingTarget(p.name), held: 0 }));
  // One fetch per cycle serves both policies: each has its own target (what it holds, its counters' release
  // times), and the diff runs once per target with that target's policy. Every SIM is staged every cycle, so
  // neither target's diff passes a SIM by on the other's account.
  const acts = createActivities({
    store: new StateStore(redis, { prefix }),
    kite: kiteSourceFromClients(() => kiteClient),
    targets: new Map(counting.map((c) => [c.name, { target: c.target }])),
    logger: quiet,
    skipUnchanged: false,
    now: () => simNow,
  });
  try {
    const runCycle = async (cycle: number) => {
      const ref = { group: GROUP, cycle };
      await new MockActivityEnvironment().run(acts.fetchSnapshot, ref);
      // Both diffs before any publish: a publish drops the cycle's snapshot.
      for (const c of counting) {
        const diffed: DiffResult = await new MockActivityEnvironment().run(acts.diffSnapshot, {
          ...ref,
          targets: [c.name],
          policy: c.policy,
        });
        if (cycle > 1) c.held += diffed.targets[c.name].held ?? 0;
      }
      for (const c of counting) {
        await new MockActivityEnvironment().run(acts.publishChanges, { ...ref, target: c.name });
      }
    };
    // Cycle 1 publishes every SIM in full: the day's count starts after it.
    await runCycle(1);
    for (const c of counting) c.target.reset();
    for (let cycle = 2; cycle <= cycles + 1; cycle++) {
      const answer = (await sim.control('POST', 'clock/advance', { ms: cycleMs })) as { now: string };
      simNow = Date.parse(answer.now);
      await runCycle(cycle);
      if ((cycle - 1) % 24 === 0) {
        const figures = counting.map((c) => `${c.name} ${c.target.updates}`).join(', ');
        log(`policy day: cycle ${cycle - 1}/${cycles} (${answer.now}): ${figures}`);
      }
    }
    const days = (cycles * cycleMs) / 86_400_000;
    return {
      sims,
      cycles,
      cycleMinutes: cycleMs / 60_000,
      simulatedFrom,
      simulatedTo: new Date(simNow).toISOString(),
      policies: counting.map((c) => ({
        name: c.name,
        policy: c.policy,
        updates: c.target.updates,
        keys: c.target.keys,
        byKind: { ...c.target.byKind },
        held: c.held,
        updatesPerSimPerDay: c.target.updates / sims / days,
      })),
      wallS: (performance.now() - started) / 1000,
      loadBefore,
      loadAfter: os.loadavg(),
    };
  } finally {
    kiteClient.close();
    sim.close();
    await dropPrefix(redis, prefix);
  }
}

/** The run as a table: per policy, updates per SIM per day and what they carried. */
export function policyDayTable(run: PolicyDayRun): string {
  const days = (run.cycles * run.cycleMinutes) / 1440;
  const perSim = (n: number) => (n / run.sims / days).toFixed(1);
  const rows = run.policies.map((p) =>
    [
      p.name,
      perSim(p.updates),
      perSim(2 * p.updates),
      perSim(p.byKind.countersOnly),
      perSim(p.byKind.location),
      perSim(p.byKind.other),
      (p.keys / Math.max(1, p.updates)).toFixed(1),
    ].join(' | ')
  );
  const [policy, every] = run.policies;
  const saved = every.updates ? (1 - policy.updates / every.updates) * 100 : 0;
  return [
    `Policy day: ${run.sims} SIMs, ${run.cycles} cycles of ${run.cycleMinutes} min (${run.simulatedFrom} → ${run.simulatedTo}), ` +
      `wall ${run.wallS.toFixed(0)} s, load average ${run.loadBefore.map((l) => l.toFixed(2)).join(' ')} before, ` +
      `${run.loadAfter.map((l) => l.toFixed(2)).join(' ')} after`,
    '',
    '| policy | updates / SIM / day | MQTT messages / SIM / day | counters only | location | other keys | keys / update |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r} |`),
    '',
    `The default policy sends ${saved.toFixed(0)}% fewer updates than sending every change.`,
  ].join('\n');
}
