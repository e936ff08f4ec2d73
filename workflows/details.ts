/**
 * What the Temporal Web UI shows of a group: the static summary of a run and its current details (Markdown the
 * workflow sets with `setCurrentDetails`). Pure functions of the group's configuration and status, so that the
 * workflow, the CLI and tests share them; safe in workflow code.
 */
import { formatDuration } from '../shared/durations';
import type { CycleSummary, DropHold, GroupConfig, GroupStatus } from './definitions';

/** The one-line summary a run carries from its start: `Kite group fleet-a → azure, aws, every 5m`. */
export function groupSummary(config: Pick<GroupConfig, 'group' | 'targets' | 'intervalMs'>): string {
  return `Kite group ${config.group} → ${config.targets.join(', ')}, every ${formatDuration(config.intervalMs)}`;
}

const utc = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace(/\.\d+Z$/, ' UTC')
    .replace('T', ' ');

/** SIMs of the cycle whose presence read failed (0 for summaries of older runs, which have no count). */
export function presenceErrorCount(cycle: Pick<CycleSummary, 'presenceErrors'>): number {
  return Object.values(cycle.presenceErrors ?? {}).reduce((n, v) => n + v, 0);
}

/** `2 SIMs published without a fresh presence (presence-error:SVC.1006: 1, presence-error:SVR.1000: 1)`. */
export function presenceErrorsLine(cycle: Pick<CycleSummary, 'presenceErrors'>): string {
  const reasons = Object.entries(cycle.presenceErrors ?? {})
    .map(([reason, n]) => `${reason}: ${n}`)
    .join(', ');
  return `${presenceErrorCount(cycle)} SIMs published without a fresh presence, read again next cycle (${reasons})`;
}

/**
 * How fresh the cycle's presence is, in the words of `status` and the Web UI: `presence: oldest 41m (max age 1h),
 * 0 SIMs past it; 120 refreshed`; and, when Kite's budget cannot keep up with the refresh, a second line that says so
 * and the age it can reach. None for summaries without the figures (older runs, a failed fetch).
 */
export function presenceFreshnessLines(cycle: Pick<CycleSummary, 'presence'>): string[] {
  const f = cycle.presence;
  if (!f) return [];
  const max = formatDuration(f.maxAgeMs);
  const lines = [
    `presence: oldest ${formatDuration(f.oldestAgeMs)} (max age ${max}), ${f.overdue} SIMs past it` +
      (f.unknownAge ? `, ${f.unknownAge} of unknown age (refreshed within ${max})` : '') +
      `; ${f.refreshed} refreshed, ${f.hintReads} read for changed hints` +
      (f.budgetPerCycle !== undefined ? ` (budget ${f.budgetPerCycle} refreshes a cycle)` : ''),
  ];
  if (f.budgetPerCycle !== undefined && f.neededPerCycle > f.budgetPerCycle) {
    const reach =
      f.reachableAgeMs !== undefined
        ? `the oldest presence reaches about ${formatDuration(f.reachableAgeMs)} instead of ${max}`
        : 'presence is read only when connectivity hints change';
    lines.push(
      `presence refresh cannot keep up: ${f.neededPerCycle} refreshes needed a cycle, Kite's budget leaves ` +
        `${f.budgetPerCycle} after the list pages and hint reads; ${reach} ` +
        '(raise --presence-max-age, or KITE_REQUESTS_PER_SECOND if Kite allows)'
    );
  }
  return lines;
}

/**
 * The hold of a drop, in the words `status`, `list`, the Web UI and the held cycle's error share:
 * `12 of 20 SIMs missing from Kite's inventory (it listed 8 of the group; limit 50%); approve with
 * \`kite-cc accept-drop fleet-a\` …`.
 */
export function dropHoldText(group: string, hold: DropHold): string {
  const missing =
    `${hold.missing} of ${hold.known} SIMs missing from Kite's inventory ` +
    `(it listed ${hold.listed} of the group; limit ${Math.round(hold.maxLeaveFraction * 100)}%)`;
  if (hold.approved !== undefined) return `${missing}; approved: the next cycle forgets up to ${hold.approved} of them`;
  return `${missing}; approve with \`kite-cc accept-drop ${group}\` (the SIMs are forgotten), or wait: if they come back, the hold ends by itself`;
}

/**
 * Targets the last cycle found paused as a whole (e.g. a daily message quota spent until 00:00 UTC), one line
 * each: `azure until 2026-12-01 00:00 UTC (why)`. With `now`, only pauses that have not ended yet.
 */
export function targetPauseLines(status: Pick<GroupStatus, 'lastCycle'>, now?: number): string[] {
  return Object.entries(status.lastCycle?.targets ?? {}).flatMap(([target, t]) =>
    t.pausedUntil && (now === undefined || t.pausedUntil > now)
      ? [`${target} until ${utc(t.pausedUntil)}${t.pauseReason ? ` (${t.pauseReason})` : ''}`]
      : []
  );
}

/**
 * The group's live status as Markdown: ON/OFF, what runs now and when the next sync is, the last cycle's counts
 * per target, failing SIMs, any pause (`pause`, e.g. a drop waiting for approval) and targets paused until a time.
 */
export function groupDetails(status: GroupStatus, pause?: string): string {
  const { config } = status;
  const lines = [
    `**Cloud Monitoring ${config.enabled ? 'ON' : 'OFF'}** · ${groupSummary(config)}`,
    '',
    `**Now:** ${status.phase === 'idle' ? 'idle' : `${status.phase} (cycle ${status.cyclesCompleted + 1})`} · ` +
      `**next sync:** ${status.nextSyncAt !== undefined ? utc(status.nextSyncAt) : config.enabled ? 'after this cycle' : 'none while OFF'}`,
  ];
  const failing = Object.values(status.failingSims).reduce((n, v) => n + v, 0);
  lines.push('', `**Failing SIMs:** ${failing}${failing ? ' (see `kite-cc failures ' + config.group + '`)' : ''}`);
  if (pause) lines.push('', `**Paused:** ${pause}`);
  if (status.dropHold)
    lines.push('', `**Held since ${utc(status.dropHold.since)}:** ${dropHoldText(config.group, status.dropHold)}`);
  for (const line of targetPauseLines(status)) lines.push('', `**Target paused:** ${line}; its changes stay pending`);
  const cycle = status.lastCycle;
  if (!cycle) lines.push('', '**Last cycle:** none yet');
  else {
    lines.push(
      '',
      `**Last cycle #${cycle.cycle} ${cycle.outcome ?? 'completed'}** at ${utc(cycle.finishedAt)}: ` +
        `${cycle.inGroup} SIMs in group, ${cycle.invalid} invalid, ${cycle.left} left` +
        (presenceErrorCount(cycle) ? ` · ${presenceErrorsLine(cycle)}` : '') +
        presenceFreshnessLines(cycle)
          .map((line) => ` · ${line}`)
          .join('') +
        (cycle.error ? ` · error: ${cycle.error}` : ''),
      '',
      '| target | changed | published | failed | throttled | pending | failing SIMs |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...Object.entries(cycle.targets).map(
        ([t, c]) =>
          `| ${t} | ${c.changed} | ${c.published} | ${c.failed} | ${c.throttled} | ${c.pending} | ${status.failingSims[t] ?? 0} |`
      )
    );
  }
  return lines.join('\n');
}
