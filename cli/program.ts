/**
 * Turns the list of `kite-cc` commands (cli.ts) into a commander program, and runs one command line: parse and
 * validate (before any connection), connect to Temporal, run, close. Every failure becomes one message on stderr
 * and an exit code (errors.ts); commander's own errors are usage errors (exit code 2).
 */
import { Command, CommanderError, type Option } from 'commander';
import { groupNameError } from '../workflows/definitions';
import type { CommandContext, Output } from './commands';
import { connectClient, settingsFromEnv } from './connection';
import { CliError, ExitCode, usageError } from './errors';

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

/** What a command's `run` gets besides the connected context. */
export interface CommandInput {
  /** The `<group>` or `[group]` argument, validated as a group name. */
  group?: string;
  /** The arguments after the group, as given (e.g. `<iccid>`). */
  args: string[];
  /** Option values by their camel-case name (`--target` → `target`), as their parsers returned them. */
  options: Record<string, unknown>;
  runtime: CliRuntime;
}

/** One `kite-cc` command, declared once: its help, its arguments and options, and what it does. */
export interface CliCommand {
  /** Name and arguments in commander syntax: `start <group>`, `status [group]`, `list`. */
  usage: string;
  /** One line for the command list of `kite-cc help`. */
  summary: string;
  /** More for `kite-cc help <command>`. @default the summary */
  description?: string;
  /** Options; a parser that throws a CliError refuses the command line before anything connects. @default [] */
  options?: Option[];
  run(ctx: CommandContext, input: CommandInput): Promise<void>;
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

function validGroup(group: string): string {
  const problem = groupNameError(group);
  if (problem) throw usageError(problem);
  return group;
}

/** `start <group> [--target <names>] [--interval <duration>] [--disabled]`: the usage line, from the declaration. */
function usageLine(cmd: Command): string {
  const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`));
  const options = cmd.options.map((o) => `[${o.long}${/ [<[].*$/.exec(o.flags)?.[0] ?? ''}]`);
  return [cmd.name(), ...args, ...options].join(' ');
}

function buildProgram(commands: CliCommand[], about: { description: string; footer: string }, runtime: CliRuntime) {
  const io = outputOf(runtime);
  const program = new Command('kite-cc')
    .description(about.description)
    .exitOverride()
    .configureOutput({ writeOut: io.write, writeErr: io.write, outputError: () => undefined })
    .configureHelp({ subcommandTerm: usageLine, sortSubcommands: false })
    .addHelpText('after', `\n${about.footer}`)
    .helpCommand('help [command]', 'this text, or the help of one command');
  for (const spec of commands) {
    const cmd = program
      .command(spec.usage)
      .summary(spec.summary)
      .description(spec.description ?? spec.summary);
    for (const argument of cmd.registeredArguments) if (argument.name() === 'group') argument.argParser(validGroup);
    for (const option of spec.options ?? []) cmd.addOption(option);
    cmd.action(async (...params: unknown[]) => {
      const command = params[params.length - 1] as Command;
      const [group, ...args] = command.processedArgs as (string | undefined)[];
      const input = { group, args: args as string[], options: command.opts(), runtime };
      const settings = settingsFromEnv(runtime.env ?? process.env);
      const client = await connectClient(settings);
      try {
        await spec.run({ client, settings, io, workerTimeoutMs: runtime.workerTimeoutMs }, input);
      } finally {
        await client.connection.close();
      }
    });
  }
  return { program, io };
}

/** Commander's parse error as a usage error; a missing argument says what to type. */
function commanderError(err: CommanderError, command: string | undefined): CliError {
  const missing = /missing required argument '(\w+)'/.exec(err.message)?.[1];
  if (missing === 'group' && command) return usageError(`${command}: name the group, e.g. kite-cc ${command} fleet-a`);
  return usageError(err.message.replace(/^error: /, ''));
}

/** Runs one command line (without node and script) and returns its exit code. Never throws. */
export async function runProgram(
  commands: CliCommand[],
  about: { description: string; footer: string },
  argv: string[],
  runtime: CliRuntime = {}
): Promise<number> {
  const { program, io } = buildProgram(commands, about, runtime);
  try {
    await program.parseAsync(argv.length ? argv : ['help'], { from: 'user' });
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError && err.exitCode === 0) return ExitCode.ok; // help or version shown
    const error =
      err instanceof CliError
        ? err
        : err instanceof CommanderError
          ? commanderError(err, argv[0])
          : new CliError(`unexpected error: ${(err as Error)?.stack ?? err}`);
    io.err(`kite-cc: ${error.message}`);
    if (error.exitCode === ExitCode.usage && !/rejected/.test(error.message)) io.err('run `kite-cc help` for usage');
    return error.exitCode;
  }
}
