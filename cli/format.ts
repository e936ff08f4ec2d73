/** Text the CLI prints: Web UI links, tables, status blocks and progress lines. */
import type { ActivityProgress, CycleSummary, GroupStatus } from '../workflows/definitions';
import { dropHoldText } from '../workflows/details';
import { WORKFLOW_TYPE, workflowIdForGroup } from '../workflows/definitions';
import type { ClientSettings } from './connection';
import { formatDuration } from '../shared/durations';
import { presenceErrorCount, presenceErrorsLine, presenceFreshnessLines, targetPauseLines } from '../workflows/details';

type UiSettings = Pick<ClientSettings, 'webUiUrl' | 'namespace'>;

/** The Web UI page of a group's workflow (its latest run). */
export function workflowUrl(settings: UiSettings, group: string): string {
  const ns = encodeURIComponent(settings.namespace);
  return `${settings.webUiUrl}/namespaces/${ns}/workflows/${encodeURIComponent(workflowIdForGroup(group))}`;
}

/** The Web UI's workflow list filtered by a visibility query. */
export function listUrl(settings: UiSettings, query: string): string {
  const ns = encodeURIComponent(settings.namespace);
  return `${settings.webUiUrl}/namespaces/${ns}/workflows?query=${encodeURIComponent(query)}`;
}

/** Every run of one group, across continue-as-new and restarts. */
export function groupRunsUrl(settings: UiSettings, group: string): string {
  return listUrl(settings, `KiteGroup="${group}"`);
}

export const RUNNING_GROUPS_QUERY = `WorkflowType="${WORKFLOW_TYPE}" AND ExecutionStatus="Running"`;

/** Left-aligned columns separated by two spaces. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (c ?? '').padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** "in 3m", "2m ago", or "now", relative to `now`. */
export function relativeTime(at: number, now: number): string {
  const delta = at - now;
  if (Math.abs(delta) < 1_000) return 'now';
  return delta > 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
}

export function targetLine(counts: CycleSummary['targets'][string]): string {
  return (
    `${counts.changed} changed, ${counts.published} published, ${counts.failed} failed, ` +
    `${counts.throttled} throttled, ${counts.pending} pending` +
    (counts.held ? `, ${counts.held} held by the publish policy` : '') +
    (counts.error ? ` (error: ${counts.error})` : '')
  );
}

/** One line per figure of a finished cycle, ready for indentation under a heading. */
export function cycleLines(cycle: CycleSummary, now: number): string[] {
  const took = formatDuration(cycle.finishedAt - cycle.startedAt);
  const invalid = Object.entries(cycle.invalidReasons)
    .map(([reason, n]) => `${reason}: ${n}`)
    .join(', ');
  return [
    `#${cycle.cycle} ${cycle.outcome ?? 'completed'}, finished ${relativeTime(cycle.finishedAt, now)}, took ${took}`,
    ...(cycle.error ? [`error: ${cycle.error}`] : []),
    `${cycle.seen} SIMs seen, ${cycle.inGroup} in group, ${cycle.invalid} invalid${invalid ? ` (${invalid})` : ''}, ` +
      `${cycle.left} left`,
    ...(presenceErrorCount(cycle) ? [presenceErrorsLine(cycle)] : []),
    ...presenceFreshnessLines(cycle),
    ...Object.entries(cycle.targets).map(([target, counts]) => `${target}: ${targetLine(counts)}`),
  ];
}

/** The `status <group>` block: label, value. `retrying`: activities Temporal is retrying, with their last error. */
export function statusLines(
  group: string,
  status: GroupStatus,
  settings: UiSettings,
  now = Date.now(),
  retrying: string[] = []
): string[] {
  const { config } = status;
  const rows: [string, string][] = [
    ['group', group],
    ['monitoring', config.enabled ? 'ON' : 'OFF'],
    ['targets', config.targets.join(', ')],
    ['interval', formatDuration(config.intervalMs)],
    ['phase', status.phase],
    ['cycles', String(status.cyclesCompleted)],
    ['next sync', status.nextSyncAt !== undefined ? relativeTime(status.nextSyncAt, now) : '-'],
  ];
  const cycle = status.lastCycle ? cycleLines(status.lastCycle, now) : ['none yet'];
  rows.push(['last cycle', cycle[0]], ...cycle.slice(1).map((l): [string, string] => ['', l]));
  const failing = Object.entries(status.failingSims).filter(([, n]) => n > 0);
  rows.push(['failing SIMs', failing.length ? failing.map(([t, n]) => `${t}: ${n}`).join(', ') : '0']);
  targetPauseLines(status, now).forEach((line, i) => rows.push([i ? '' : 'paused', line]));
  retrying.forEach((line, i) => rows.push([i ? '' : 'retrying', line]));
  const hold = status.dropHold;
  if (hold) rows.push(['held', `since ${relativeTime(hold.since, now)}: ${dropHoldText(group, hold)}`]);
  if (status.lastError) rows.push(['last error', status.lastError]);
  rows.push(['web UI', workflowUrl(settings, group)]);
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`);
}

/** Live figures of a running cycle, from the activities' heartbeats. */
export interface PendingProgress {
  activityType: string;
  attempt: number;
  progress?: ActivityProgress;
  lastFailure?: string;
}

const VERB: Record<ActivityProgress['phase'], string> = { fetch: 'fetched', diff: 'changed', publish: 'published' };

export function progressLine(phase: string, pending: PendingProgress[]): string {
  if (pending.length === 0) return `phase ${phase}`;
  return pending
    .map(({ activityType, attempt, progress, lastFailure }) => {
      const what = progress
        ? `${progress.phase}${progress.target ? ` ${progress.target}` : ''}: ${progress.done} ${VERB[progress.phase]}` +
          (progress.failed ? `, ${progress.failed} failed` : '')
        : `${activityType}: starting`;
      const retry = attempt > 1 ? ` (attempt ${attempt}${lastFailure ? `, last error: ${lastFailure}` : ''})` : '';
      return what + retry;
    })
    .join(' | ');
}
