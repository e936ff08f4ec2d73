#!/usr/bin/env node
/**
 * `kite-cc`: the operator's command line for Kite Cloud Connector. Every command is declared once, in COMMANDS
 * below (usage, help, options, what it runs); program.ts turns them into a commander program, connects to Temporal
 * from the environment (connection.ts) and maps every failure to a message and an exit code (errors.ts). To add a
 * command, add one entry to COMMANDS.
 */
import { Option } from 'commander';
import {
  configPatchError,
  EVENT_TYPES,
  MAX_LOCATION_MIN_DISTANCE_M,
  MAX_INTERVAL_MS,
  MAX_PRESENCE_MAX_AGE_MS,
  MIN_INTERVAL_MS,
  MIN_PRESENCE_MAX_AGE_MS,
  type EventType,
} from '../workflows/definitions';
import { DEFAULT_INTERVAL_MS, DEFAULT_TARGETS, resyncGroup, setEnabled, startGroup, stopGroup } from './commands';
import { formatDuration, parseDuration } from '../shared/durations';
import { usageError } from './errors';
import { listGroups, showGroupStatus } from './inspect';
import { showFailures, showSim } from './inspect-sims';
import { acceptDrop, previewGroup } from './preview';
import { runProgram, type CliCommand, type CliRuntime } from './program';
import { syncGroup } from './sync';

export type { CliCommand, CliRuntime } from './program';

/** A duration option's parser: `30s`, `5m`, `1h30m`; refuses anything else as a usage error. */
function duration(flag: string) {
  return (value: string): number => {
    const ms = parseDuration(value);
    if (ms === undefined)
      throw usageError(`--${flag} ${JSON.stringify(value)} is not a duration: use e.g. 30s, 5m, 1h`);
    return ms;
  };
}

function interval(value: string): number {
  const ms = duration('interval')(value);
  if (ms < MIN_INTERVAL_MS || ms > MAX_INTERVAL_MS) {
    const range = `${formatDuration(MIN_INTERVAL_MS)} to ${formatDuration(MAX_INTERVAL_MS)}`;
    throw usageError(`--interval must be from ${range}, got ${formatDuration(ms)}`);
  }
  return ms;
}

function presenceMaxAge(value: string): number {
  const ms = duration('presence-max-age')(value);
  if (ms < MIN_PRESENCE_MAX_AGE_MS || ms > MAX_PRESENCE_MAX_AGE_MS) {
    const range = `${formatDuration(MIN_PRESENCE_MAX_AGE_MS)} to ${formatDuration(MAX_PRESENCE_MAX_AGE_MS)}`;
    throw usageError(`--presence-max-age must be from ${range}, got ${formatDuration(ms)}`);
  }
  return ms;
}

/** `--target` repeats or takes a comma list; each addition is checked as the workflow will check it. */
function targets(value: string, previous: string[] | undefined): string[] {
  const all = [...(previous ?? []), ...value.split(',').map((t) => t.trim())];
  const problem = configPatchError({ targets: all });
  if (problem) throw usageError(problem);
  return all;
}

function eventTypes(value: string): EventType[] {
  const words = value
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (words.length === 1 && words[0] === 'all') return [...EVENT_TYPES];
  if (words.length === 1 && words[0] === 'none') return [];
  const problem = configPatchError({ events: { types: words as EventType[] } });
  if (problem) throw usageError(`--events: ${problem}`);
  return words as EventType[];
}

/** `--location-min-distance`: metres, `500`, `500m` or `1.5km`. */
function metres(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(m|km)?$/i.exec(value.trim());
  const m = match ? Number(match[1]) * (match[2]?.toLowerCase() === 'km' ? 1000 : 1) : Number.NaN;
  const problem = match ? configPatchError({ publishPolicy: { locationMinDistanceM: m } }) : 'not a distance';
  if (problem)
    throw usageError(
      `--location-min-distance ${JSON.stringify(value)}: use a distance from 0 to ${MAX_LOCATION_MIN_DISTANCE_M / 1000}km, ` +
        'e.g. 500 (metres), 500m or 1.5km'
    );
  return m;
}

const jsonOption = () => new Option('--json', 'print JSON instead of text');

/** `--max-leave-fraction`: 0.8 or 80%. */
function leaveFraction(value: string): number {
  const fraction = value.endsWith('%') ? Number(value.slice(0, -1)) / 100 : Number(value);
  const problem = value.trim() === '' ? 'empty' : configPatchError({ maxLeaveFraction: fraction });
  if (problem)
    throw usageError(
      `--max-leave-fraction ${JSON.stringify(value)}: use a fraction from 0 to 1 or a percentage, e.g. 0.5 or 50%`
    );
  return fraction;
}

/** A whole number from `min`, for counts. */
function count(flag: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max)
      throw usageError(`--${flag} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** Every `kite-cc` command. */
export const COMMANDS: CliCommand[] = [
  {
    usage: 'start <group>',
    summary: "Start the group's workflow, or update the running one (safe to repeat).",
    description:
      "Start the group's workflow, or update the running one (update-with-start: safe to repeat).\n" +
      'Flags given change the running workflow; flags left out keep its values. A new group gets ' +
      `--target ${DEFAULT_TARGETS.join(',')} and --interval ${formatDuration(DEFAULT_INTERVAL_MS)}.`,
    options: [
      new Option(
        '-t, --target <names>',
        'targets configured on the worker (azure, aws, mqtt, webhook, ...); repeat or comma list'
      ).argParser(targets),
      new Option('-i, --interval <duration>', 'time between cycles, e.g. 30s, 5m, 1h').argParser(interval),
      new Option('--disabled', 'start with Cloud Monitoring OFF (or turn a running group OFF)'),
      new Option(
        '--counters-min-interval <duration>',
        "least time between publishes of a SIM's daily counters alone, e.g. 15m (default), 0s for every change"
      ).argParser(duration('counters-min-interval')),
      new Option(
        '--location-min-distance <distance>',
        "least move of a SIM's location that goes out on its own, e.g. 500m (default), 2km, 0 for every move"
      ).argParser(metres),
      new Option(
        '--presence-max-age <duration>',
        "re-read every SIM's presence at least this often, within Kite's budget, e.g. 1h (default), 30m"
      ).argParser(presenceMaxAge),
      new Option(
        '--events <types>',
        `connectivity events to send: a comma list of ${EVENT_TYPES.join(', ')}; all; or none (the default)`
      ).argParser(eventTypes),
      new Option(
        '--max-leave-fraction <fraction>',
        "hold a cycle in which more of the group's SIMs vanished from Kite, until `accept-drop` (default the worker's, 0.5)"
      ).argParser(leaveFraction),
    ],
    async run(ctx, { group, options }) {
      await startGroup(ctx, {
        eventTypes: options.events as EventType[] | undefined,
        maxLeaveFraction: options.maxLeaveFraction as number | undefined,
        group: group!,
        targets: options.target as string[] | undefined,
        intervalMs: options.interval as number | undefined,
        countersMinIntervalMs: options.countersMinInterval as number | undefined,
        locationMinDistanceM: options.locationMinDistance as number | undefined,
        presenceMaxAgeMs: options.presenceMaxAge as number | undefined,
        disabled: options.disabled as boolean | undefined,
      });
    },
  },
  {
    usage: 'enable <group>',
    summary: 'Cloud Monitoring ON: cycles run every interval.',
    run: (ctx, { group }) => setEnabled(ctx, group!, true).then(() => undefined),
  },
  {
    usage: 'disable <group>',
    summary: 'Cloud Monitoring OFF: nothing runs until enable.',
    run: (ctx, { group }) => setEnabled(ctx, group!, false).then(() => undefined),
  },
  {
    usage: 'sync <group>',
    summary: 'Run a cycle now; --wait follows it and prints its summary.',
    description:
      'Run a cycle now. --wait follows it (fetched, changed, published, failed) and prints its ' +
      'summary; --timeout bounds the wait (default 15m).',
    options: [
      new Option('-w, --wait', 'follow the cycle until it finishes'),
      new Option('--timeout <duration>', 'give up waiting after this long (default 15m)').argParser(
        duration('timeout')
      ),
    ],
    async run(ctx, { group, options, runtime }) {
      const { wait, timeout } = options as { wait?: boolean; timeout?: number };
      await syncGroup(ctx, group!, { wait, timeoutMs: timeout, pollMs: runtime.pollMs });
    },
  },
  {
    usage: 'status [group]',
    summary: "The group's status, or every group's when none is given.",
    options: [jsonOption()],
    async run(ctx, { group, options }) {
      if (group) await showGroupStatus(ctx, group, Boolean(options.json));
      else await listGroups(ctx, Boolean(options.json));
    },
  },
  {
    usage: 'list',
    summary: 'Every running group: ON/OFF and its last cycle.',
    options: [jsonOption()],
    run: (ctx, { options }) => listGroups(ctx, Boolean(options.json)).then(() => undefined),
  },
  {
    usage: 'sim <group> <iccid>',
    summary: 'One SIM: its record, what each target holds, pending, failing, and its audit trail.',
    description:
      'One SIM: its record in the last snapshot; per target what the target holds, the pending patch, the ' +
      'failure reason and since when, and the last acknowledged publish; then its audit trail (the last ' +
      "publishes and failures). Reads the worker's Redis (KITE_REDIS_URL, KITE_REDIS_PREFIX).",
    options: [jsonOption()],
    run: (ctx, { group, args, options, runtime }) =>
      showSim(ctx, runtime.env ?? process.env, group!, args[0], Boolean(options.json)).then(() => undefined),
  },
  {
    usage: 'failures <group>',
    summary: "The group's failing SIMs, grouped by target and reason, with counts.",
    description:
      "The group's failing SIMs (refused for good by a target, retried when their data changes), grouped " +
      "by target and reason with counts, since when, and example ICCIDs. Reads the worker's Redis.",
    options: [new Option('-t, --target <name>', 'only this target'), jsonOption()],
    run: (ctx, { group, options, runtime }) =>
      showFailures(ctx, runtime.env ?? process.env, group!, {
        target: options.target as string | undefined,
        json: Boolean(options.json),
      }).then(() => undefined),
  },
  {
    usage: 'resync <group>',
    summary: 'Republish full records (e.g. after a twin was deleted in the cloud); reports how many SIMs.',
    description:
      'Republish full records, e.g. after a twin was deleted in the cloud: a durable update to the workflow ' +
      'that, once no cycle runs, forgets what the targets hold for the SIMs, so the next cycle (at once with ' +
      '--now) publishes their whole record. Prints how many SIMs it queued per target. Needs a worker.',
    options: [
      new Option('-t, --target <names>', 'only these targets (repeat or comma list)').argParser(targets),
      new Option('--sims <iccids>', 'only these SIMs, a comma list of ICCIDs').argParser((value: string) => {
        const sims = value.split(',').map((icc) => icc.trim());
        const bad = sims.find((icc) => !/^\d{6,22}$/.test(icc));
        if (bad !== undefined) throw usageError(`--sims: ICCID ${JSON.stringify(bad)} is invalid: 6 to 22 digits`);
        return sims;
      }),
      new Option('--now', 'run a cycle at once'),
    ],
    run: (ctx, { group, options }) =>
      resyncGroup(ctx, group!, {
        targets: options.target as string[] | undefined,
        sims: options.sims as string[] | undefined,
        now: Boolean(options.now),
      }).then(() => undefined),
  },
  {
    usage: 'preview <group>',
    summary: 'Dry run: what a cycle run now would publish per target, with sample patches; sends nothing.',
    description:
      "Dry run of a cycle in the group's workflow: fetches Kite's inventory and applies the diff's rule (publish " +
      'policy included), then prints per target how many SIMs a cycle run now would publish, with a sample of their ' +
      'patches, and any inventory drop that would hold it. Nothing is sent, written as pending, or recorded as ' +
      'published; a running cycle is not disturbed. Works while the group is OFF (start a new group with --disabled ' +
      'to preview it before it publishes anything). Needs a worker.',
    options: [
      new Option('--sample <n>', 'SIMs whose patch is shown per target (default 3, at most 10)').argParser(
        count('sample', 0, 10)
      ),
      new Option('--timeout <duration>', 'give up waiting after this long (default 15m)').argParser(
        duration('timeout')
      ),
      jsonOption(),
    ],
    run: (ctx, { group, options }) =>
      previewGroup(ctx, group!, {
        sample: options.sample as number | undefined,
        timeoutMs: options.timeout as number | undefined,
        json: Boolean(options.json),
      }).then(() => undefined),
  },
  {
    usage: 'accept-drop <group>',
    summary: 'Approve the inventory drop the group holds on: the next cycle forgets the missing SIMs.',
    description:
      "When more of a group's SIMs vanished from Kite at once than its limit (--max-leave-fraction), the group " +
      'holds (status shows "N of M SIMs missing") while its cycles re-check Kite; if the SIMs come back, the hold ' +
      'ends by itself. accept-drop approves the drop: the next cycle (at once while ON) forgets up to that many ' +
      'missing SIMs and publishes again. It approves the count status shows now, or --missing <n>; the workflow ' +
      "refuses a count other than its current drop's. Needs a worker.",
    options: [
      new Option('--missing <n>', "the count of missing SIMs being approved (default: the current drop's)").argParser(
        count('missing', 1)
      ),
    ],
    run: (ctx, { group, options }) =>
      acceptDrop(ctx, group!, { missing: options.missing as number | undefined }).then(() => undefined),
  },
  {
    usage: 'stop <group>',
    summary: 'Terminate the group\'s workflow (reason "stopped by operator via kite-cc").',
    description:
      'Terminate the group\'s workflow (reason "stopped by operator via kite-cc"). Terminate, not ' +
      'cancel: it needs no worker and takes effect at once; nothing is lost, because the last-published ' +
      'state lives in Redis and every step is idempotent, so a later `kite-cc start <group>` carries on ' +
      'from there (an interrupted publish is resent).',
    run: (ctx, { group }) => stopGroup(ctx, group!),
  },
];

const ABOUT = {
  description: 'operate Kite Cloud Connector (one Temporal workflow per monitoring group)',
  footer: `Durations: 1500ms, 30s, 5m, 1h, 1d or combined (1h30m). Every command prints the Web UI link.

Environment:
  KITE_TEMPORAL_ADDRESS            Temporal frontend (default 127.0.0.1:7233)
  KITE_TEMPORAL_NAMESPACE          namespace (default default)
  KITE_TASK_QUEUE                  task queue of new workflows (default kite-cloud-connector)
  KITE_WEB_UI_URL                  Temporal Web UI, for links (default http://127.0.0.1:8233)
  KITE_TEMPORAL_TLS_CERT, KITE_TEMPORAL_TLS_KEY   mTLS client certificate and key (PEM paths)
  KITE_TEMPORAL_TLS_CA             CA of the server certificate, if private (PEM path)
  KITE_TEMPORAL_API_KEY            Temporal Cloud API key (turns TLS on)
  KITE_TEMPORAL_CONNECT_TIMEOUT_MS how long to wait for the server (default 10000)
  KITE_REDIS_URL, KITE_REDIS_PREFIX the worker's Redis, for sim and failures (default redis://127.0.0.1:6379, cc)

Exit codes:
  0 ok   1 runtime failure (rejected call, failed cycle, no worker answering)   2 usage error or
  invalid configuration   3 the group (or SIM) is unknown or has no running workflow   4 Temporal
  or Redis unreachable
`,
};

/** Runs one command line and returns its exit code. Never throws. */
export function runCli(argv: string[], runtime: CliRuntime = {}): Promise<number> {
  return runProgram(COMMANDS, ABOUT, argv, runtime);
}

if (require.main === module) {
  void runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
