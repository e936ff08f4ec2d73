/** The benchmark's report: its goals, and the table (and CPU profiles) it prints from the runs' figures. */
import path from 'node:path';
import { medianOf, settledCycles, type FirstSyncPair, type OurRun, type runFloor, type runNaive } from './runs';
import { topFrames } from './profile';

/** What the connector must achieve at scale (issue #7); the table compares each measure with its goal. */
export const GOALS = {
  /** SIMs per second of a group's first full sync. */
  firstSyncSimsPerSecond: 30_000,
  /** Wall time of a cycle in which nothing changed. */
  noChangeCycleMs: 1_000,
  /** Peak resident memory of the worker process (VmHWM). */
  peakRssMb: 300,
  /** Our first sync's time over the floor's (the same activities in a plain loop, no Temporal); issue 15's. */
  firstSyncOverFloor: 1.15,
  /** Wall time of a no-change cycle in the steady state, every SIM settled (issue 15). */
  steadyCycleMs: 1_500,
  /** Wall time of a cycle in which 1 % of the SIMs changed (issue 15). */
  onePercentCycleMs: 2_000,
  /** A steady-state no-change cycle over the floor's no-change cycle that maps every SIM (issue 15). */
  steadyOverFullFloor: 0.3,
  /** History events per cycle do not grow with the group's size. */
  historyEventsPerCycle: 'constant',
} as const;

/** The scale goals of issue 15 at 1,000,000 SIMs (`--ours-only --sims 1000000`); the peak RSS goal is GOALS'. */
export const SCALE_GOALS = {
  /** Redis memory of the group's keys after three cycles, per SIM. */
  redisBytesPerSim: 900,
  /** History events per cycle, as at 2,000 and 100,000 SIMs. */
  historyEventsPerCycle: '24–25',
} as const;

/** Everything the runs measured. */
export interface BenchResults {
  sims: number;
  small: number;
  bundleMs: number;
  floor: Awaited<ReturnType<typeof runFloor>>;
  big: OurRun;
  /** Our first syncs and the floor's in pairs (the first is `floor`'s and `big`'s); absent from older results. */
  firstSyncs?: FirstSyncPair[];
  smallRun: OurRun;
  naive: Awaited<ReturnType<typeof runNaive>>;
}

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : 'n/a';
const sec = (ms: number) => `${fmt(ms / 1000, 2)} s`;

/**
 * The rows of the steady-state no-change cycle: the median of the settled cycles (the run's 4th on), every SIM
 * passed by without mapping or diffing, each settled cycle's time beside it. Absent from results recorded before
 * it was measured.
 */
function settledRows(
  run: OurRun,
  verdict: (ms: number) => string,
  stages: (s: Record<string, number>) => string
): [string, string, string, string][] {
  const { median, all } = settledCycles(run);
  if (!median) return [];
  const each = all.length > 1 ? ` (median of ${all.map((c) => fmt(c.cycleMs / 1000, 2)).join(', ')} s)` : '';
  return [
    [
      'No-change cycle, settled (steady state)',
      `≤ ${fmt(GOALS.steadyCycleMs / 1000, 1)} s`,
      `${sec(median.cycleMs)}${each}`,
      verdict(median.cycleMs),
    ],
    ['  per stage', '', stages(median.stages), ''],
  ];
}

/** The results as a Markdown table: measure, goal, measured, pass/MISS. */
export function resultsTable({ sims, small, bundleMs, floor, big, firstSyncs, smallRun, naive }: BenchResults): string {
  const [first, noChange, changed] = big.cycles;
  const settled = settledCycles(big).median!;
  const simsPerSec = sims / (first.cycleMs / 1000);
  const redisTotal = Object.values(big.redisBytes).reduce((a, b) => a + b, 0);
  const eventsBig = big.cycles.map((c) => c.events);
  const eventsSmall = smallRun.cycles.map((c) => c.events);
  const constantEvents = eventsBig.slice(1).join() === eventsSmall.slice(1).join() && eventsBig[0] === eventsSmall[0];
  const pairs = firstSyncs ?? [{ floorMs: floor[0].totalMs, oursMs: first.cycleMs }];
  const ratios = pairs.map((p) => p.oursMs / p.floorMs);
  const ratio = medianOf(ratios, (r) => r)!;
  const eachPair = pairs.map((p, k) => `${fmt(ratios[k], 2)} = ${sec(p.oursMs)} / ${sec(p.floorMs)}`).join('; ');
  const speedup = naive.ms / smallRun.cycles[0].cycleMs;
  const pass = (ok: boolean) => (ok ? 'pass' : 'MISS');
  const stages = (s: Record<string, number>) =>
    `fetch ${sec(s.fetchSnapshot)}, diff ${sec(s.diffSnapshot)}, publish ${sec(s.publishChanges)}`;
  const rows: [string, string, string, string][] = [
    [
      `First full sync, ${fmt(sims)} SIMs`,
      `≥ ${fmt(GOALS.firstSyncSimsPerSecond)} SIM/s`,
      `${fmt(simsPerSec)} SIM/s (${sec(first.cycleMs)})`,
      pass(simsPerSec >= GOALS.firstSyncSimsPerSecond),
    ],
    ['  per stage (scheduled → completed)', '', stages(first.stages), ''],
    [
      `No-change cycle, ${fmt(sims)} SIMs (the first after the sync)`,
      `≤ ${fmt(GOALS.noChangeCycleMs / 1000, 1)} s`,
      sec(noChange.cycleMs),
      pass(noChange.cycleMs <= GOALS.noChangeCycleMs),
    ],
    ['  per stage', '', stages(noChange.stages), ''],
    [
      `1% changed cycle (${fmt(changed.published)} SIMs)`,
      `≤ ${fmt(GOALS.onePercentCycleMs / 1000, 1)} s`,
      sec(changed.cycleMs),
      pass(changed.cycleMs <= GOALS.onePercentCycleMs),
    ],
    ['  per stage', '', stages(changed.stages), ''],
    ...settledRows(big, (ms) => pass(ms <= GOALS.steadyCycleMs), stages),
    [
      `History events per cycle (1st/2nd/…), ${fmt(small)} vs ${fmt(sims)}`,
      GOALS.historyEventsPerCycle,
      `${eventsSmall.join('/')} vs ${eventsBig.join('/')}`,
      pass(constantEvents),
    ],
    [
      'Peak worker RSS (VmHWM)',
      `≤ ${GOALS.peakRssMb} MB`,
      `${fmt(big.peakRssMb)} MB`,
      pass(big.peakRssMb <= GOALS.peakRssMb),
    ],
    [
      'Redis memory per SIM',
      '',
      `${fmt(redisTotal / sims)} B (${Object.entries(big.redisBytes)
        .map(([k, v]) => `${k} ${fmt(v / sims)}`)
        .join(', ')})`,
      '',
    ],
    [
      'Our first sync / floor (plain loop)',
      `≤ ${GOALS.firstSyncOverFloor}`,
      pairs.length > 1
        ? `${fmt(ratio, 2)} (median of ${pairs.length} pairs: ${eachPair}; the first floor: ${stages(floor[0].stages)})`
        : `${fmt(ratio, 2)} (floor ${sec(floor[0].totalMs)}: ${stages(floor[0].stages)})`,
      pass(ratio <= GOALS.firstSyncOverFloor),
    ],
    [
      'Our no-change cycle / floor',
      '',
      `${fmt(noChange.cycleMs / floor[1].totalMs, 2)} (floor ${sec(floor[1].totalMs)})`,
      '',
    ],
    [
      "Our steady-state no-change cycle / the floor's first no-change cycle (every SIM mapped)",
      `≤ ${GOALS.steadyOverFullFloor}`,
      `${fmt(settled.cycleMs / floor[1].totalMs, 2)}`,
      pass(settled.cycleMs <= GOALS.steadyOverFullFloor * floor[1].totalMs),
    ],
    [
      "Our steady-state no-change cycle / the floor's",
      '',
      `${fmt(settled.cycleMs / floor[2].totalMs, 2)} (floor ${sec(floor[2].totalMs)}: ${stages(floor[2].stages)}, CPU ${fmt(floor[2].cpu.benchS, 1)} s)`,
      '',
    ],
    [
      `Speedup over one activity per SIM, ${fmt(small)} SIMs`,
      '',
      `${fmt(speedup, 1)}× (${sec(smallRun.cycles[0].cycleMs)} vs ${sec(naive.ms)}, ${naive.events} events)`,
      '',
    ],
    [
      'Worker start-up (not in cycle times)',
      '',
      `${sec(big.startupMs)} (+ ${sec(bundleMs)} to prebuild the workflow bundle)`,
      '',
    ],
    [
      'CPU during first sync',
      '',
      `worker ${fmt(big.cpu.workerS, 1)} s, simulator ${fmt(big.cpu.simulatorS, 1)} s in ${fmt(big.cpu.wallS, 1)} s`,
      '',
    ],
    [
      "CPU during the floor's first sync",
      '',
      `bench process ${fmt(floor[0].cpu.benchS, 1)} s, simulator ${fmt(floor[0].cpu.simulatorS, 1)} s in ${sec(floor[0].totalMs)}`,
      '',
    ],
  ];
  const widths = [0, 1, 2, 3].map((i) =>
    Math.max(...rows.map((r) => r[i].length), ['measure', 'goal', 'measured', 'result'][i].length)
  );
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  const table = [
    line(['measure', 'goal', 'measured', 'result']),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
  return table;
}

/** The top frames of the worker's and the floor's CPU profiles, written by `--profile`. */
export function profileReport(profileDir: string): string {
  let text = '';
  for (const [title, dir] of [
    ['Worker CPU profile, three cycles', profileDir],
    ["Floor CPU profile (this process), the floor's first sync", path.join(profileDir, 'floor')],
    [
      "Floor CPU profile (this process), the floor's steady-state no-change cycle",
      path.join(profileDir, 'floor-steady'),
    ],
  ]) {
    const { totalMs, frames } = topFrames(dir);
    text += `\n${title} (${sec(totalMs)} sampled), top frames by self time:\n`;
    for (const f of frames) text += `  ${fmt(f.share * 100, 1).padStart(5)}%  ${f.frame}\n`;
  }
  return text;
}

/** The scale run (`--ours-only`): our cycles on one big group, against the scale goals of issue 15. */
export function scaleTable(big: OurRun): string {
  const [first, noChange, changed] = big.cycles;
  const { median: settled, all: settledAll } = settledCycles(big);
  const redisTotal = Object.values(big.redisBytes).reduce((a, b) => a + b, 0);
  const perSim = (bytes: number) => fmt(bytes / big.sims);
  const families = Object.entries(big.redisBytes)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${perSim(v)}`)
    .join(', ');
  const stages = (s: Record<string, number>) =>
    `fetch ${sec(s.fetchSnapshot)}, diff ${sec(s.diffSnapshot)}, publish ${sec(s.publishChanges)}`;
  const pass = (ok: boolean) => (ok ? 'pass' : 'MISS');
  const rows: string[][] = [
    ['measure', 'goal', 'measured', 'result'],
    [
      `First full sync, ${fmt(big.sims)} SIMs`,
      '',
      `${fmt(big.sims / (first.cycleMs / 1000))} SIM/s (${sec(first.cycleMs)}; ${stages(first.stages)})`,
      '',
    ],
    ['No-change cycle', '', `${sec(noChange.cycleMs)} (${stages(noChange.stages)})`, ''],
    [
      `1% changed cycle (${fmt(changed.published)} SIMs)`,
      '',
      `${sec(changed.cycleMs)} (${stages(changed.stages)})`,
      '',
    ],
    ...(settled
      ? [
          [
            'No-change cycle, settled (median)',
            '',
            `${sec(settled.cycleMs)} (${stages(settled.stages)}; each: ${settledAll.map((c) => sec(c.cycleMs)).join(', ')})`,
            '',
          ],
        ]
      : []),
    [
      'Peak worker RSS (VmHWM)',
      `≤ ${GOALS.peakRssMb} MB`,
      `${fmt(big.peakRssMb)} MB`,
      pass(big.peakRssMb <= GOALS.peakRssMb),
    ],
    [
      'Redis memory per SIM',
      `≤ ${fmt(SCALE_GOALS.redisBytesPerSim)} B`,
      `${perSim(redisTotal)} B (${families})`,
      pass(redisTotal / big.sims <= SCALE_GOALS.redisBytesPerSim),
    ],
    [
      'History events per cycle (1st/2nd/…)',
      SCALE_GOALS.historyEventsPerCycle,
      big.cycles.map((c) => c.events).join('/'),
      pass(big.cycles.every((c) => c.events >= 24 && c.events <= 25)),
    ],
    [
      'CPU during first sync',
      '',
      `worker ${fmt(big.cpu.workerS, 1)} s, simulator ${fmt(big.cpu.simulatorS, 1)} s in ${fmt(big.cpu.wallS, 1)} s`,
      '',
    ],
    ['Worker start-up (not in cycle times)', '', sec(big.startupMs), ''],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(rows[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}
