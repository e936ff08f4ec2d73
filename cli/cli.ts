#!/usr/bin/env node
/**
 * `kite-cc`: the operator's command line for Kite Cloud Connector. Parses argv with node:util, connects to
 * Temporal from the environment (client.ts), runs one command (commands.ts, inspect.ts, sync.ts) and maps every
 * failure to a message and an exit code (errors.ts).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { configPatchError, groupNameError, MAX_INTERVAL_MS, MIN_INTERVAL_MS } from '../workflows/definitions';
import { connectClient, settingsFromEnv } from './connection';
import { DEFAULT_INTERVAL_MS, DEFAULT_TARGETS, setEnabled, startGroup, stopGroup, type Output } from './commands';
import { formatDuration, parseDuration } from '../shared/durations';
import { CliError, ExitCode, usageError } from './errors';
import { listGroups, showGroupStatus } from './inspect';
import { syncGroup } from './sync';

export const HELP = `kite-cc: operate Kite Cloud Connector (one Temporal workflow per monitoring group)

Usage:
  kite-cc start <group> [--target NAME]... [--interval DURATION] [--disabled]
      Start the group's workflow, or update the running one (update-with-start: safe to repeat).
      Flags given change the running workflow; flags left out keep its values. A new group gets
      --target ${DEFAULT_TARGETS.join(',')} and --interval ${formatDuration(DEFAULT_INTERVAL_MS)}. --target repeats or takes a
      comma list (names of targets configured on the worker: azure, aws, mqtt, webhook, ...).
      --disabled starts it with Cloud Monitoring OFF (or turns a running one OFF).
  kite-cc enable <group>          Cloud Monitoring ON: cycles run every interval.
  kite-cc disable <group>         Cloud Monitoring OFF: nothing runs until enable.
  kite-cc sync <group> [--wait] [--timeout DURATION]
      Run a cycle now. --wait follows it (fetched, changed, published, failed) and prints its
      summary; --timeout bounds the wait (default 15m).
  kite-cc status [group] [--json] The group's status, or every group's when none is given.
  kite-cc list [--json]           Every running group: ON/OFF and its last cycle.
  kite-cc stop <group>            Terminate the group's workflow (reason "stopped by operator via
      kite-cc"). Terminate, not cancel: it needs no worker and takes effect at once; nothing is
      lost, because the last-published state lives in Redis and every step is idempotent, so a
      later \`kite-cc start <group>\` carries on from there (an interrupted publish is resent).
  kite-cc help [command]          This text.

Durations: 1500ms, 30s, 5m, 1h, 1d or combined (1h30m). Every command prints the Web UI link.

Environment:
  KITE_TEMPORAL_ADDRESS            Temporal frontend (default 127.0.0.1:7233)
  KITE_TEMPORAL_NAMESPACE          namespace (default default)
  KITE_TASK_QUEUE                  task queue of new workflows (default kite-cloud-connector)
  KITE_WEB_UI_URL                  Temporal Web UI, for links (default http://127.0.0.1:8233)
  KITE_TEMPORAL_TLS_CERT, KITE_TEMPORAL_TLS_KEY   mTLS client certificate and key (PEM paths)
  KITE_TEMPORAL_TLS_CA             CA of the server certificate, if private (PEM path)
  KITE_TEMPORAL_API_KEY            Temporal Cloud API key (turns TLS on)
  KITE_TEMPORAL_CONNECT_TIMEOUT_MS how long to wait for the server (default 10000)

Exit codes:
  0 ok   1 runtime failure (rejected call, failed cycle, no worker answering)   2 usage error or
  invalid configuration   3 the group has no running workflow   4 Temporal unreachable
`;

type Options = NonNullable<ParseArgsConfig['options']>;

const COMMANDS: Record<string, { group: 'required' | 'optional' | 'none'; options: Options }> = {
  start: {
    group: 'required',
    options: {
      target: { type: 'string', short: 't', multiple: true },
      interval: { type: 'string', short: 'i' },
      disabled: { type: 'boolean' },
    },
  },
  enable: { group: 'required', options: {} },
  disable: { group: 'required', options: {} },
  sync: { group: 'required', options: { wait: { type: 'boolean', short: 'w' }, timeout: { type: 'string' } } },
  status: { group: 'optional', options: { json: { type: 'boolean' } } },
  list: { group: 'none', options: { json: { type: 'boolean' } } },
  stop: { group: 'required', options: {} },
};

/** A command line, parsed and validated. */
export interface ParsedCommand {
  command: keyof typeof COMMANDS | 'help';
  group?: string;
  targets?: string[];
  intervalMs?: number;
  disabled?: boolean;
  wait?: boolean;
  timeoutMs?: number;
  json?: boolean;
}

function durationOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined) throw usageError(`--${name} ${JSON.stringify(value)} is not a duration: use e.g. 30s, 5m, 1h`);
  return ms;
}

function splitTargets(values: string[] | undefined): string[] | undefined {
  return values?.flatMap((v) => v.split(',')).map((t) => t.trim());
}

/** Parses argv (without node and script); throws a usage error naming the problem. */
export function parseCommand(argv: string[]): ParsedCommand {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') return { command: 'help' };
  const spec = COMMANDS[name];
  if (!spec) throw usageError(`unknown command ${JSON.stringify(name)}`);
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: { ...spec.options, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    throw usageError(`${name}: ${(err as Error).message}`);
  }
  const values = parsed.values as Record<string, string | string[] | boolean | undefined>;
  if (values.help) return { command: 'help' };
  return validate(name as ParsedCommand['command'], spec.group, parsed.positionals, values);
}

function validate(
  command: ParsedCommand['command'],
  groupRule: 'required' | 'optional' | 'none',
  positionals: string[],
  values: Record<string, string | string[] | boolean | undefined>
): ParsedCommand {
  const max = groupRule === 'none' ? 0 : 1;
  if (positionals.length > max) throw usageError(`${command}: unexpected argument ${positionals[max]}`);
  const group = positionals[0];
  if (groupRule === 'required' && !group)
    throw usageError(`${command}: name the group, e.g. kite-cc ${command} fleet-a`);
  const groupError = group === undefined ? undefined : groupNameError(group);
  if (groupError) throw usageError(groupError);
  const parsed: ParsedCommand = {
    command,
    group,
    targets: splitTargets(values.target as string[] | undefined),
    intervalMs: durationOption('interval', values.interval as string | undefined),
    disabled: values.disabled as boolean | undefined,
    wait: values.wait as boolean | undefined,
    timeoutMs: durationOption('timeout', values.timeout as string | undefined),
    json: values.json as boolean | undefined,
  };
  const { intervalMs } = parsed;
  if (intervalMs !== undefined && (intervalMs < MIN_INTERVAL_MS || intervalMs > MAX_INTERVAL_MS)) {
    const range = `${formatDuration(MIN_INTERVAL_MS)} to ${formatDuration(MAX_INTERVAL_MS)}`;
    throw usageError(`${command}: --interval must be from ${range}, got ${formatDuration(intervalMs)}`);
  }
  const patchError = configPatchError({ targets: parsed.targets, intervalMs });
  if (patchError) throw usageError(`${command}: ${patchError}`);
  return parsed;
}

/** Streams and environment of one CLI run; tests pass their own. */
export interface CliRuntime {
  env?: NodeJS.ProcessEnv;
  stdout?: { write(text: string): unknown; isTTY?: boolean };
  stderr?: { write(text: string): unknown };
  /** Milliseconds to wait for a worker to answer a query or apply an update. @default 10000 */
  workerTimeoutMs?: number;
  /** Time between polls of `sync --wait`. @default 1000 */
  pollMs?: number;
}

function outputOf(runtime: CliRuntime): Output {
  const stdout = runtime.stdout ?? process.stdout;
  const stderr = runtime.stderr ?? process.stderr;
  return {
    out: (line) => void stdout.write(line + '\n'),
    err: (line) => void stderr.write(line + '\n'),
    write: (text) => void stdout.write(text),
    isTTY: Boolean(stdout.isTTY),
  };
}

async function execute(parsed: ParsedCommand, runtime: CliRuntime, io: Output): Promise<void> {
  const settings = settingsFromEnv(runtime.env ?? process.env);
  const client = await connectClient(settings);
  const ctx = { client, settings, io, workerTimeoutMs: runtime.workerTimeoutMs };
  const group = parsed.group!;
  try {
    switch (parsed.command) {
      case 'start':
        await startGroup(ctx, {
          group,
          targets: parsed.targets,
          intervalMs: parsed.intervalMs,
          disabled: parsed.disabled,
        });
        return;
      case 'enable':
      case 'disable':
        await setEnabled(ctx, group, parsed.command === 'enable');
        return;
      case 'sync':
        await syncGroup(ctx, group, { wait: parsed.wait, timeoutMs: parsed.timeoutMs, pollMs: runtime.pollMs });
        return;
      case 'status':
        if (parsed.group) await showGroupStatus(ctx, group, Boolean(parsed.json));
        else await listGroups(ctx, Boolean(parsed.json));
        return;
      case 'list':
        await listGroups(ctx, Boolean(parsed.json));
        return;
      case 'stop':
        await stopGroup(ctx, group);
        return;
    }
  } finally {
    await client.connection.close();
  }
}

/** Runs one command line and returns its exit code. Never throws. */
export async function runCli(argv: string[], runtime: CliRuntime = {}): Promise<number> {
  const io = outputOf(runtime);
  try {
    const parsed = parseCommand(argv);
    if (parsed.command === 'help') {
      io.out(HELP);
      return ExitCode.ok;
    }
    await execute(parsed, runtime, io);
    return ExitCode.ok;
  } catch (err) {
    const error = err instanceof CliError ? err : new CliError(`unexpected error: ${(err as Error)?.stack ?? err}`);
    io.err(`kite-cc: ${error.message}`);
    if (error.exitCode === ExitCode.usage && !/rejected/.test(error.message)) io.err('run `kite-cc help` for usage');
    return error.exitCode;
  }
}

if (require.main === module) {
  void runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
