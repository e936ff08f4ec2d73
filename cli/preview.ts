/**
 * `preview <group>`: a dry run of a cycle through the group's workflow (its `preview` update runs the cycle's fetch
 * and the diff's rule, writing nothing), and `accept-drop <group>`: approve the inventory drop a group holds on.
 */
import { WorkflowUpdateFailedError, WorkflowUpdateStage } from '@temporalio/client';
import {
  acceptDropUpdate,
  innermostMessage,
  previewUpdate,
  type DropHold,
  type GroupPreview,
} from '../workflows/definitions';
import { dropHoldText } from '../workflows/details';
import { formatDuration } from '../shared/durations';
import { describeRunning, groupHandle, queryStatus, withWorkerDeadline, type CommandContext } from './commands';
import { CliError, ExitCode } from './errors';
import { toCliError } from './errors-map';
import { workflowUrl } from './format';

export interface PreviewOptions {
  /** SIMs whose patch is shown per target. @default 3 (at most 10) */
  sample?: number;
  json?: boolean;
  /** Give up waiting for the preview after this long. @default 900000 (15 minutes) */
  timeoutMs?: number;
}

/** Exit code 3 for a group without a workflow, saying how to preview one before it publishes anything. */
async function runningGroup(ctx: CommandContext, group: string) {
  try {
    return await describeRunning(ctx, group);
  } catch (err) {
    if (err instanceof CliError && err.exitCode === ExitCode.notFound) {
      throw new CliError(
        `${err.message} (a preview runs in the group's workflow: to preview a group before it publishes anything, ` +
          `start it OFF with \`kite-cc start ${group} --disabled\`)`,
        ExitCode.notFound
      );
    }
    throw err;
  }
}

/** Runs the group's `preview` update: a worker must accept it within the worker deadline, then it may take longer. */
export async function previewGroup(ctx: CommandContext, group: string, options: PreviewOptions = {}) {
  await runningGroup(ctx, group);
  const update = await withWorkerDeadline(ctx, group, 'the preview update', () =>
    groupHandle(ctx, group).startUpdate(previewUpdate, {
      args: [{ sample: options.sample }],
      waitForStage: WorkflowUpdateStage.ACCEPTED,
    })
  );
  const timeoutMs = options.timeoutMs ?? 900_000;
  let preview: GroupPreview;
  try {
    preview = await ctx.client.connection.withDeadline(Date.now() + timeoutMs, () => update.result());
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      throw new CliError(`the preview of group ${group} failed: ${innermostMessage(err)}`, ExitCode.failure);
    }
    const cli = toCliError(err, ctx.settings, group);
    if (cli.exitCode !== ExitCode.failure) throw cli;
    throw new CliError(
      `the preview of group ${group} did not finish within ${formatDuration(timeoutMs)} (${cli.message}); ` +
        'it runs on in the workflow: try again with a longer --timeout',
      ExitCode.failure
    );
  }
  if (options.json) ctx.io.out(JSON.stringify(preview, null, 2));
  else previewLines(preview).forEach((line) => ctx.io.out(line));
  if (!options.json) ctx.io.out(`web UI: ${workflowUrl(ctx.settings, group)}`);
  return preview;
}

/** The preview as text: what a cycle run now would do, per target with a sample of patches. */
export function previewLines(preview: GroupPreview): string[] {
  const { group } = preview;
  const lines = [
    `preview of group ${group}: nothing was sent, and nothing recorded as published`,
    preview.enabled
      ? 'Cloud Monitoring ON: a cycle run now would do this'
      : `Cloud Monitoring OFF: nothing is published until \`kite-cc enable ${group}\`; the first cycle then would do this`,
    `Kite: ${preview.seen} SIMs seen, ${preview.inGroup} in group, ${preview.invalid} invalid, ` +
      `${preview.left} known SIMs missing`,
  ];
  if (preview.drop) {
    const hold: DropHold = { ...preview.drop, cycle: 0, since: 0 };
    lines.push(
      `HELD: the cycle would publish nothing: ${dropHoldText(group, hold)}`,
      'once approved, it would forget the missing SIMs and publish:'
    );
  } else if (preview.left) lines.push(`${preview.left} SIMs left the group: they would be forgotten`);
  for (const [target, t] of Object.entries(preview.targets)) {
    const extra = [
      t.held ? `${t.held} held by the publish policy` : '',
      t.stillFailing ? `${t.stillFailing} still failing (not sent again)` : '',
    ].filter(Boolean);
    lines.push(
      `${target}: ${t.publish} SIMs would be published (${t.full} in full, ${t.publish - t.full} changes)` +
        (extra.length ? `, ${extra.join(', ')}` : '')
    );
    for (const s of t.sample) lines.push(`  ${s.iccid}${s.full ? ' (in full)' : ''}: ${JSON.stringify(s.patch)}`);
    if (t.publish > t.sample.length) lines.push(`  … and ${t.publish - t.sample.length} more`);
  }
  return lines;
}

/**
 * `accept-drop`: approves the drop the group holds on, by its count (`missing`, by default the count `status`
 * shows now). The workflow refuses a count other than its current drop's.
 */
export async function acceptDrop(ctx: CommandContext, group: string, options: { missing?: number } = {}) {
  await describeRunning(ctx, group);
  const status = await queryStatus(ctx, group);
  if (!status.dropHold) {
    throw new CliError(
      `group ${group} holds no inventory drop: there is nothing to approve` +
        (status.lastCycle
          ? ` (its last cycle #${status.lastCycle.cycle} ${status.lastCycle.outcome ?? 'completed'})`
          : ''),
      ExitCode.failure
    );
  }
  const missing = options.missing ?? status.dropHold.missing;
  let hold: DropHold;
  try {
    hold = await withWorkerDeadline(ctx, group, 'the acceptDrop update', () =>
      groupHandle(ctx, group).executeUpdate(acceptDropUpdate, { args: [{ missing }] })
    );
  } catch (err) {
    if (err instanceof CliError && /rejected the configuration/.test(err.message)) {
      throw new CliError(err.message.replace('rejected the configuration', 'refused the approval'), ExitCode.failure);
    }
    throw err;
  }
  ctx.io.out(
    `approved the drop of group ${group}: ${hold.missing} of ${hold.known} SIMs missing from Kite's inventory; ` +
      `the next cycle forgets them (up to ${hold.approved}) unless more are missing by then, ` +
      (status.config.enabled ? 'and it runs now' : `after \`kite-cc enable ${group}\` (the group is OFF)`)
  );
  ctx.io.out(`web UI: ${workflowUrl(ctx.settings, group)}`);
  return hold;
}
