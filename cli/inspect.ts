/** `status` and `list`: what each group is doing, from its `status` query and search attributes. */
import type { WorkflowExecutionInfo } from '@temporalio/client';
import type { GroupStatus, PresenceFreshness } from '../workflows/definitions';
import { KITE_GROUP, KITE_SYNC_STATE } from '../workflows/search-attributes';
import { formatDuration } from '../shared/durations';
import { describeRunning, queryStatus, type CommandContext } from './commands';
import { pendingProgress } from './sync';
import { toCliError } from './errors-map';
import { groupRunsUrl, listUrl, relativeTime, RUNNING_GROUPS_QUERY, statusLines, table, workflowUrl } from './format';
import { mapPool } from '../shared/concurrency';

/** One group as `status --json` and `list --json` print it. */
export interface GroupReport {
  group: string;
  workflowId: string;
  runId?: string;
  /** KiteSyncState: `ON` or `OFF`. */
  state?: string;
  status?: GroupStatus;
  /** Why `status` is missing, e.g. no worker answered. */
  error?: string;
  /** Activities of the running cycle that Temporal is retrying, with their last error (`status` only). */
  retrying?: string[];
  /** Targets paused as a whole until a time, e.g. a spent daily quota (`status` only): ISO time and why. */
  paused?: Record<string, { until: string; reason?: string }>;
  /**
   * How fresh the group's presence was after the last cycle's fetch (`status` only): the oldest age, SIMs past the
   * max age, and `keepsUp: false` when Kite's budget cannot keep up with the refresh (then `reachableAgeMs`).
   */
  presence?: PresenceFreshness & { keepsUp: boolean };
  webUiUrl: string;
  runsUrl: string;
}

/** `status <group>`: the group's status block, or its JSON. */
export async function showGroupStatus(ctx: CommandContext, group: string, json: boolean): Promise<GroupReport> {
  const description = await describeRunning(ctx, group);
  const status = await queryStatus(ctx, group);
  // The workflow learns an activity's failure only once its attempts are over; Temporal knows the last one now.
  const retrying = (await pendingProgress(ctx, group))
    .filter((activity) => activity.attempt > 1)
    .map(
      (a) => `${a.activityType}, attempt ${a.attempt}: ${a.lastFailure ?? 'the last attempt ended without a result'}`
    );
  const report: GroupReport = {
    group,
    workflowId: description.workflowId,
    runId: description.runId,
    state: description.typedSearchAttributes.get(KITE_SYNC_STATE),
    status,
    retrying,
    paused: pausedTargets(status, Date.now()),
    presence: presenceReport(status),
    webUiUrl: workflowUrl(ctx.settings, group),
    runsUrl: groupRunsUrl(ctx.settings, group),
  };
  if (json) ctx.io.out(JSON.stringify(report, null, 2));
  else statusLines(group, status, ctx.settings, Date.now(), retrying).forEach((line) => ctx.io.out(line));
  return report;
}

function presenceReport(status: GroupStatus): GroupReport['presence'] {
  const f = status.lastCycle?.presence;
  if (!f) return undefined;
  return { ...f, keepsUp: f.budgetPerCycle === undefined || f.neededPerCycle <= f.budgetPerCycle };
}

function pausedTargets(status: GroupStatus, now: number): GroupReport['paused'] {
  const paused: NonNullable<GroupReport['paused']> = {};
  for (const [target, t] of Object.entries(status.lastCycle?.targets ?? {}))
    if (t.pausedUntil && t.pausedUntil > now)
      paused[target] = { until: new Date(t.pausedUntil).toISOString(), reason: t.pauseReason };
  return paused;
}

async function reportFor(ctx: CommandContext, info: WorkflowExecutionInfo): Promise<GroupReport> {
  const group = info.typedSearchAttributes.get(KITE_GROUP) ?? info.workflowId.replace(/^cloud-connector:/, '');
  const report: GroupReport = {
    group,
    workflowId: info.workflowId,
    runId: info.runId,
    state: info.typedSearchAttributes.get(KITE_SYNC_STATE),
    webUiUrl: workflowUrl(ctx.settings, group),
    runsUrl: groupRunsUrl(ctx.settings, group),
  };
  try {
    report.status = await queryStatus(ctx, group);
  } catch (err) {
    report.error = (err as Error).message;
  }
  return report;
}

/**
 * Every running group workflow, each with its state and last cycle (queried `concurrency` at a time, each query
 * bounded by 3 s so that groups whose worker is gone do not stall the list).
 */
export async function collectGroups(ctx: CommandContext, concurrency = 4): Promise<GroupReport[]> {
  const infos: WorkflowExecutionInfo[] = [];
  try {
    for await (const info of ctx.client.workflow.list({ query: RUNNING_GROUPS_QUERY })) infos.push(info);
  } catch (err) {
    throw toCliError(err, ctx.settings);
  }
  const listCtx = { ...ctx, workerTimeoutMs: Math.min(ctx.workerTimeoutMs ?? 10_000, 3_000) };
  const reports = await mapPool(infos, concurrency, (info) => reportFor(listCtx, info));
  return reports.sort((a, b) => a.group.localeCompare(b.group));
}

function lastCycleCell(status: GroupStatus | undefined, now: number): string {
  const hold = status?.dropHold;
  if (hold) return `HELD: ${hold.missing} of ${hold.known} SIMs missing (kite-cc accept-drop ${status.config.group})`;
  const cycle = status?.lastCycle;
  if (!cycle) return '-';
  const published = Object.values(cycle.targets).reduce((n, t) => n + t.published, 0);
  const failed = Object.values(cycle.targets).reduce((n, t) => n + t.failed, 0);
  return `#${cycle.cycle} ${relativeTime(cycle.finishedAt, now)}: ${cycle.inGroup} SIMs, ${published} published, ${failed} failed`;
}

/** `list` (and `status` without a group): one row per group. */
export async function listGroups(ctx: CommandContext, json: boolean): Promise<GroupReport[]> {
  const reports = await collectGroups(ctx);
  if (json) {
    ctx.io.out(JSON.stringify(reports, null, 2));
    return reports;
  }
  const now = Date.now();
  const rows = reports.map((r) => [
    r.group,
    r.state ?? '?',
    r.status ? r.status.config.targets.join(',') : '-',
    r.status ? formatDuration(r.status.config.intervalMs) : '-',
    r.status?.phase ?? '-',
    r.status ? lastCycleCell(r.status, now) : `(${r.error ?? 'no status'})`,
  ]);
  if (rows.length === 0) ctx.io.out('no group workflows are running: start one with `kite-cc start <group>`');
  else table(['GROUP', 'STATE', 'TARGETS', 'INTERVAL', 'PHASE', 'LAST CYCLE'], rows).forEach((l) => ctx.io.out(l));
  ctx.io.out('');
  for (const r of reports) ctx.io.out(`${r.group}: ${r.runsUrl}`);
  ctx.io.out(`all groups: ${listUrl(ctx.settings, RUNNING_GROUPS_QUERY)}`);
  return reports;
}
