/**
 * `--groups N`: N monitoring groups on one Kite account (one simulator), each its own group workflow on one worker,
 * all due at once. Measures what one interval costs the account: Kite list requests per cycle of all groups
 * (counted by the simulator) against the pages of one inventory sweep, and the time until every group finished.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { syncNowSignal, WORKFLOW_TYPE, type GroupConfig } from '../workflows/definitions';
import { groupVisibility } from '../workflows/search-attributes';
import { startBenchWorker, type SimulatorProcess } from './processes';
import { BENCH_PRESENCE, log, waitForCycle, workerEnv } from './runs';

export interface GroupsRound {
  /** From the first start (or syncNow) sent to the last group's cycle closed, ms. */
  totalMs: number;
  /** Kite list requests the simulator answered during the round. */
  listRequests: number;
  presenceRequests: number;
  /** Each group's cycle time as its workflow saw it (status), ms. */
  slowestGroupMs: number;
}

export interface GroupsRun {
  groups: number;
  simsPerGroup: number;
  /** List requests of one sweep of the whole inventory: its full pages, the short last page and the empty page that confirms it. */
  sweepPages: number;
  pageSize: number;
  rounds: { first: GroupsRound; noChange: GroupsRound };
  peakRssMb: number;
}

interface SimInfo {
  stats: { requests: { list: number; presence: number } };
}

/** Group names of a `--groups N` run. */
export function groupNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `bench-g${i + 1}`);
}

export async function runGroups(
  client: Client,
  sim: SimulatorProcess,
  groups: string[],
  simsPerGroup: number,
  runId: string,
  bundle: string
): Promise<GroupsRun> {
  const prefix = `bench-${runId}`;
  const taskQueue = `bench-${runId}-groups`;
  const worker = await startBenchWorker(workerEnv(sim, taskQueue, prefix, bundle));
  log(`groups: worker started in ${worker.startupMs} ms; ${groups.length} groups of ${simsPerGroup} SIMs`);
  const pageSize = 1000;
  const inventory = groups.length * simsPerGroup;
  const sweepPages = Math.floor(inventory / pageSize) + 1 + (inventory % pageSize ? 1 : 0);
  const requests = async () => ((await sim.control('GET', 'info')) as SimInfo).stats.requests;
  const timeout = Math.max(300_000, inventory * 20); // a bound, not a wait (see runOurs)
  const handles: WorkflowHandle[] = [];
  try {
    const round = async (cycle: number, kick: () => Promise<void>): Promise<GroupsRound> => {
      const before = await requests();
      const started = Date.now();
      await kick();
      const statuses = await Promise.all(handles.map((h) => waitForCycle(h, cycle, timeout)));
      const totalMs = Date.now() - started;
      const after = await requests();
      for (const s of statuses) {
        if (s.lastCycle?.outcome !== 'completed')
          throw new Error(`groups cycle ${cycle}: ${JSON.stringify(s.lastCycle)}`);
      }
      const slowestGroupMs = Math.max(...statuses.map((s) => s.lastCycle!.finishedAt - s.lastCycle!.startedAt));
      const figures = {
        totalMs,
        listRequests: after.list - before.list,
        presenceRequests: after.presence - before.presence,
        slowestGroupMs,
      };
      log(`groups: cycle ${cycle} of ${groups.length} groups in ${totalMs} ms, ${figures.listRequests} list requests`);
      return figures;
    };
    const first = await round(1, async () => {
      for (const group of groups) {
        const config: GroupConfig = {
          group,
          enabled: true,
          intervalMs: 3_600_000,
          targets: ['null'],
          ...BENCH_PRESENCE,
        };
        handles.push(
          await client.workflow.start(WORKFLOW_TYPE, {
            taskQueue,
            workflowId: `bench:${runId}:${group}`,
            args: [{ config }],
            typedSearchAttributes: groupVisibility(config).searchAttributes,
          })
        );
      }
    });
    const noChange = await round(2, async () => {
      await Promise.all(handles.map((h) => h.signal(syncNowSignal)));
    });
    return {
      groups: groups.length,
      simsPerGroup,
      sweepPages,
      pageSize,
      rounds: { first, noChange },
      peakRssMb: worker.peakRssMb() ?? NaN,
    };
  } finally {
    await Promise.all(handles.map((h) => h.terminate('benchmark done').catch(() => undefined)));
    await worker.stop();
  }
}

/** The `--groups` run as a Markdown table. */
export function groupsTable(run: GroupsRun): string {
  const { first, noChange } = run.rounds;
  const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 0 });
  const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const goal = `= ${fmt(run.sweepPages)} (one sweep)`;
  const verdict = (r: GroupsRound) => (r.listRequests <= run.sweepPages ? 'pass' : 'MISS');
  const rows = [
    ['measure', 'goal', 'measured', 'result'],
    [`list requests, first cycle of all ${run.groups} groups`, goal, fmt(first.listRequests), verdict(first)],
    [`list requests, no-change cycle of all ${run.groups} groups`, goal, fmt(noChange.listRequests), verdict(noChange)],
    ['presence requests, first cycle', '', fmt(first.presenceRequests), ''],
    [`all groups' first cycle, ${fmt(run.groups * run.simsPerGroup)} SIMs`, '', sec(first.totalMs), ''],
    ["all groups' no-change cycle", '', sec(noChange.totalMs), ''],
    ['slowest group, no-change cycle (its own summary)', '', sec(noChange.slowestGroupMs), ''],
    ['peak worker RSS', '', `${fmt(run.peakRssMb)} MB`, ''],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(rows[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}
