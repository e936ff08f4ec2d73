/**
 * What each `kite-cc` command does, given a connected client. Arguments arrive parsed and validated (cli.ts);
 * these functions talk to Temporal and print.
 */
import {
  WithStartWorkflowOperation,
  WorkflowNotFoundError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import {
  configureUpdate,
  disableSignal,
  enableSignal,
  resyncUpdate,
  statusQuery,
  workflowIdForGroup,
  WORKFLOW_TYPE,
  type ConfigPatch,
  type EventType,
  type GroupConfig,
  type GroupStatus,
  type GroupWorkflowInput,
  type ResyncRequest,
} from '../workflows/definitions';
import { groupVisibility, KITE_SYNC_STATE } from '../workflows/search-attributes';
import type { ClientSettings } from './connection';
import { formatDuration } from '../shared/durations';
import { CliError, ExitCode } from './errors';
import { GrpcCode, grpcCode, notRunningError, toCliError } from './errors-map';
import { groupRunsUrl, workflowUrl } from './format';
import { groupSummary } from '../workflows/details';

/** Where a command prints. `out` gets results, `err` diagnostics; `write` is raw (progress redraws). */
export interface Output {
  out(line: string): void;
  err(line: string): void;
  write(text: string): void;
  /** Whether `out` is a terminal: progress then redraws one line instead of printing many. */
  isTTY: boolean;
}

export interface CommandContext {
  client: Client;
  settings: ClientSettings;
  io: Output;
  /** Milliseconds to wait for a worker to answer a query or apply an update. @default 10000 */
  workerTimeoutMs?: number;
}

/** Targets a new group publishes to when `start` names none. */
export const DEFAULT_TARGETS = ['mqtt'];
/** Interval of a new group when `start` gives none. */
export const DEFAULT_INTERVAL_MS = 300_000;

export function groupHandle(ctx: CommandContext, group: string): WorkflowHandle {
  return ctx.client.workflow.getHandle(workflowIdForGroup(group));
}

/**
 * Runs `call` (a query or an update, which a worker must answer) with a deadline, so that a missing worker is
 * reported instead of hanging.
 */
export async function withWorkerDeadline<T>(
  ctx: CommandContext,
  group: string,
  what: string,
  call: () => Promise<T>
): Promise<T> {
  const timeoutMs = ctx.workerTimeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  try {
    return await ctx.client.connection.withDeadline(deadline, call);
  } catch (err) {
    if (!deadlineReached(err, deadline)) throw toCliError(err, ctx.settings, group);
    throw new CliError(
      `no worker answered ${what} of group ${group} within ${formatDuration(timeoutMs)}: ` +
        `is a worker polling task queue ${ctx.settings.taskQueue}? (start one with \`npm start\`)`,
      ExitCode.failure
    );
  }
}

/**
 * Whether `err` means the deadline passed. The server enforces the deadline too: when its timer fires first, it
 * resets the call and the client sees CANCELLED ("Call cancelled") instead of DEADLINE_EXCEEDED. The CLI never
 * cancels a call itself, so a CANCELLED at the deadline is the deadline.
 */
function deadlineReached(err: unknown, deadline: number): boolean {
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) return true;
  const code = grpcCode(err);
  return code === GrpcCode.DEADLINE_EXCEEDED || (code === GrpcCode.CANCELLED && Date.now() >= deadline - 250);
}

/** The group's `status` query, bounded by {@link withWorkerDeadline}. */
export function queryStatus(ctx: CommandContext, group: string): Promise<GroupStatus> {
  return withWorkerDeadline(ctx, group, 'the status query', () => groupHandle(ctx, group).query(statusQuery));
}

/** Fails with exit code 3 unless the group's latest run is running; returns its search attributes. */
export async function describeRunning(ctx: CommandContext, group: string) {
  let description;
  try {
    description = await groupHandle(ctx, group).describe();
  } catch (err) {
    throw toCliError(err, ctx.settings, group);
  }
  if (description.status.name !== 'RUNNING') {
    throw notRunningError(group, `has no running workflow (the last one is ${description.status.name})`);
  }
  return description;
}

export interface StartOptions {
  group: string;
  targets?: string[];
  intervalMs?: number;
  disabled?: boolean;
  /** The publish policy's `countersMinIntervalMs`; left out keeps the group's. */
  countersMinIntervalMs?: number;
  /** The publish policy's `locationMinDistanceM`; left out keeps the group's. */
  locationMinDistanceM?: number;
  /** The connectivity event types to send (empty: none); left out keeps the group's. */
  eventTypes?: EventType[];
  /** The group's `maxLeaveFraction`; left out keeps the group's. */
  maxLeaveFraction?: number;
  /** The group's `presenceMaxAgeMs`; left out keeps the group's. */
  presenceMaxAgeMs?: number;
}

async function isRunning(ctx: CommandContext, group: string): Promise<boolean> {
  try {
    return (await groupHandle(ctx, group).describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw toCliError(err, ctx.settings, group);
  }
}

/**
 * Starts the group's workflow, or reconfigures the running one: one update-with-start, so running it twice is
 * harmless. Flags left out keep the running workflow's values; a new workflow gets the defaults.
 */
export async function startGroup(ctx: CommandContext, options: StartOptions): Promise<GroupConfig> {
  const { group } = options;
  const patch: ConfigPatch = {};
  if (options.targets) patch.targets = options.targets;
  if (options.intervalMs !== undefined) patch.intervalMs = options.intervalMs;
  if (options.maxLeaveFraction !== undefined) patch.maxLeaveFraction = options.maxLeaveFraction;
  if (options.presenceMaxAgeMs !== undefined) patch.presenceMaxAgeMs = options.presenceMaxAgeMs;
  if (options.countersMinIntervalMs !== undefined) {
    patch.publishPolicy = { countersMinIntervalMs: options.countersMinIntervalMs };
  }
  if (options.locationMinDistanceM !== undefined) {
    patch.publishPolicy = { ...patch.publishPolicy, locationMinDistanceM: options.locationMinDistanceM };
  }
  if (options.eventTypes !== undefined) patch.events = { types: options.eventTypes };
  const config: GroupConfig = {
    group,
    enabled: !options.disabled,
    intervalMs: options.intervalMs ?? DEFAULT_INTERVAL_MS,
    targets: options.targets ?? DEFAULT_TARGETS,
  };
  const input: GroupWorkflowInput = { config };
  const visibility = groupVisibility(config);
  const wasRunning = await isRunning(ctx, group);
  let result = await withWorkerDeadline(ctx, group, 'the configure update', () =>
    ctx.client.workflow.executeUpdateWithStart(configureUpdate, {
      args: [patch],
      startWorkflowOperation: new WithStartWorkflowOperation(WORKFLOW_TYPE, {
        workflowId: workflowIdForGroup(group),
        taskQueue: ctx.settings.taskQueue,
        args: [input],
        workflowIdConflictPolicy: 'USE_EXISTING',
        typedSearchAttributes: visibility.searchAttributes,
        memo: visibility.memo,
        staticSummary: groupSummary(config),
      }),
    })
  );
  if (options.disabled && result.enabled) {
    await applyEnabled(ctx, group, false);
    result = { ...result, enabled: false };
  }
  ctx.io.out(`${wasRunning ? 'updated' : 'started'} group ${group}: ${configSummary(result)}`);
  ctx.io.out(`web UI: ${workflowUrl(ctx.settings, group)}`);
  return result;
}

export function configSummary(config: GroupConfig): string {
  return (
    `Cloud Monitoring ${config.enabled ? 'ON' : 'OFF'}, targets ${config.targets.join(', ')}, ` +
    `every ${formatDuration(config.intervalMs)}`
  );
}

async function signalGroup(ctx: CommandContext, group: string, enabled: boolean): Promise<void> {
  try {
    await groupHandle(ctx, group).signal(enabled ? enableSignal : disableSignal);
  } catch (err) {
    throw toCliError(err, ctx.settings, group);
  }
}

/** Reads KiteSyncState from the group's latest run. */
async function syncState(ctx: CommandContext, group: string): Promise<string | undefined> {
  const description = await groupHandle(ctx, group).describe();
  return description.typedSearchAttributes.get(KITE_SYNC_STATE);
}

/**
 * Sends `enable` or `disable`, then waits up to `waitMs` until the workflow has recorded it in KiteSyncState.
 * Returns the state seen last; the signal is durable either way.
 */
async function applyEnabled(ctx: CommandContext, group: string, enabled: boolean, waitMs = 5_000) {
  await signalGroup(ctx, group, enabled);
  const want = enabled ? 'ON' : 'OFF';
  const deadline = Date.now() + waitMs;
  let state = await syncState(ctx, group);
  while (state !== want && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    state = await syncState(ctx, group);
  }
  if (state !== want) {
    ctx.io.err(
      `warning: sent ${enabled ? 'enable' : 'disable'} to group ${group}, but no worker has applied it yet ` +
        `(KiteSyncState is ${state ?? 'unset'}): is a worker polling task queue ${ctx.settings.taskQueue}?`
    );
  }
  return state;
}

/** `enable` / `disable`: turns Cloud Monitoring ON or OFF and reports the state the workflow recorded. */
export async function setEnabled(ctx: CommandContext, group: string, enabled: boolean): Promise<boolean> {
  await describeRunning(ctx, group);
  const state = await applyEnabled(ctx, group, enabled);
  const applied = state === (enabled ? 'ON' : 'OFF');
  if (applied) ctx.io.out(`group ${group}: Cloud Monitoring ${state}`);
  ctx.io.out(`web UI: ${workflowUrl(ctx.settings, group)}`);
  return applied;
}

/** Terminates the group's workflow. Its Redis state stays, so a later `start` resumes from it. */
export async function stopGroup(ctx: CommandContext, group: string): Promise<void> {
  await describeRunning(ctx, group);
  try {
    await groupHandle(ctx, group).terminate('stopped by operator via kite-cc');
  } catch (err) {
    throw toCliError(err, ctx.settings, group);
  }
  ctx.io.out(`stopped group ${group} (workflow terminated; its published state is kept)`);
  ctx.io.out(`web UI: ${groupRunsUrl(ctx.settings, group)}`);
}

/** `resync`: the group republishes full records, at its next cycle or at once with `now`. */
export async function resyncGroup(ctx: CommandContext, group: string, request: ResyncRequest): Promise<number> {
  await describeRunning(ctx, group);
  let queued: Record<string, number>;
  try {
    queued = await withWorkerDeadline(ctx, group, 'the resync update', () =>
      groupHandle(ctx, group).executeUpdate(resyncUpdate, { args: [request] })
    );
  } catch (err) {
    if (err instanceof CliError && /rejected the configuration/.test(err.message)) {
      throw new CliError(err.message.replace('rejected the configuration', 'rejected the resync'), ExitCode.usage);
    }
    throw err;
  }
  const total = Object.values(queued).reduce((n, v) => n + v, 0);
  const perTarget = Object.entries(queued)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');
  ctx.io.out(
    `queued ${total} SIMs of group ${group} for a full republish (${perTarget}): ` +
      (request.now ? 'a cycle runs now' : 'they are published at the next cycle (or run `kite-cc sync ' + group + '`)')
  );
  ctx.io.out(`web UI: ${workflowUrl(ctx.settings, group)}`);
  return total;
}
