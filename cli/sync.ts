/** `sync <group> [--wait]`: request a cycle now and, with --wait, follow it live until it finishes. */
import { defaultPayloadConverter } from '@temporalio/client';
import { syncNowSignal, type ActivityProgress, type GroupStatus } from '../workflows/definitions';
import { describeRunning, groupHandle, queryStatus, type CommandContext } from './commands';
import { formatDuration } from '../shared/durations';
import { CliError, ExitCode } from './errors';
import { toCliError } from './errors-map';
import { cycleLines, progressLine, workflowUrl, type PendingProgress } from './format';

export interface SyncOptions {
  /** Follow the cycle until it finishes. @default false */
  wait?: boolean;
  /** Give up waiting after this long. @default 900000 (15 minutes) */
  timeoutMs?: number;
  /** Time between polls while waiting. @default 1000 */
  pollMs?: number;
}

/** Pending activities of the group's run, with their last heartbeat decoded as ActivityProgress. */
export async function pendingProgress(ctx: CommandContext, group: string): Promise<PendingProgress[]> {
  const { raw } = await groupHandle(ctx, group).describe();
  return (raw.pendingActivities ?? []).map((activity) => {
    const payload = activity.heartbeatDetails?.payloads?.[0];
    let progress: ActivityProgress | undefined;
    try {
      const decoded = payload ? defaultPayloadConverter.fromPayload<ActivityProgress>(payload) : undefined;
      if (decoded && typeof decoded === 'object' && 'phase' in decoded) progress = decoded;
    } catch {
      // Details in another shape (or encrypted): show the activity without figures.
    }
    return {
      activityType: activity.activityType?.name ?? 'activity',
      attempt: activity.attempt ?? 1,
      progress,
      lastFailure: activity.lastFailure?.message ?? undefined,
    };
  });
}

/** Prints a progress line: redrawn in place on a terminal, printed when it changes otherwise. */
function progressPrinter(ctx: CommandContext) {
  let last = '';
  return {
    show(line: string) {
      if (line === last) return;
      last = line;
      if (ctx.io.isTTY) ctx.io.write(`\r\x1b[2K${line}`);
      else ctx.io.out(line);
    },
    done() {
      if (ctx.io.isTTY && last) ctx.io.write('\n');
    },
  };
}

/**
 * Polls until the requested cycle has finished: the next one, or, when a cycle was already running at the
 * request, the one after it (the workflow runs a requested sync once the current cycle ends).
 */
async function waitForCycle(ctx: CommandContext, group: string, before: GroupStatus, options: SyncOptions) {
  const target = before.cyclesCompleted + (before.phase === 'idle' ? 1 : 2);
  const timeoutMs = options.timeoutMs ?? 900_000;
  const deadline = Date.now() + timeoutMs;
  const printer = progressPrinter(ctx);
  try {
    for (;;) {
      const status = await queryStatus(ctx, group);
      if (status.cyclesCompleted >= target) return status;
      if (Date.now() > deadline) {
        throw new CliError(
          `group ${group}'s cycle has not finished after ${formatDuration(timeoutMs)}; it keeps running: ` +
            `follow it with \`kite-cc status ${group}\` or in the Web UI`,
          ExitCode.failure
        );
      }
      const pending = await pendingProgress(ctx, group).catch((err) => {
        throw toCliError(err, ctx.settings, group);
      });
      printer.show(progressLine(status.phase, pending));
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1_000));
    }
  } finally {
    printer.done();
  }
}

/** Signals `syncNow`; with `wait`, shows the cycle's progress and then its summary. */
export async function syncGroup(ctx: CommandContext, group: string, options: SyncOptions = {}) {
  await describeRunning(ctx, group);
  const before = await queryStatus(ctx, group);
  if (!before.config.enabled) {
    throw new CliError(
      `group ${group} is OFF, and a sync runs only while it is ON: run \`kite-cc enable ${group}\` first`,
      ExitCode.failure
    );
  }
  try {
    await groupHandle(ctx, group).signal(syncNowSignal);
  } catch (err) {
    throw toCliError(err, ctx.settings, group);
  }
  ctx.io.out(`sync requested for group ${group}`);
  if (before.phase !== 'idle') ctx.io.out(`a cycle is running (phase ${before.phase}): the sync follows it`);
  ctx.io.out(`web UI: ${workflowUrl(ctx.settings, group)}`);
  if (!options.wait) return undefined;
  const after = await waitForCycle(ctx, group, before, options);
  const cycle = after.lastCycle;
  if (cycle) {
    const [first, ...rest] = cycleLines(cycle, Date.now());
    ctx.io.out(`cycle ${first}`);
    rest.forEach((line) => ctx.io.out(`  ${line}`));
  }
  if (cycle?.outcome === 'failed' || cycle?.outcome === 'cancelled' || cycle?.outcome === 'held') {
    throw new CliError(`group ${group}'s cycle #${cycle.cycle} ${cycle.outcome}: ${cycle.error ?? 'no reason given'}`);
  }
  return after;
}
