/** Exit codes of `kite-cc`, and the error type that carries one. */
import { INVALID_CONFIGURATION_EXIT_CODE } from '../shared/config-error';

export const ExitCode = {
  /** The command did what was asked. */
  ok: 0,
  /** Something failed at run time: a rejected or failed call, a timeout, no worker answering. */
  failure: 1,
  /** The command line or the configuration is invalid (the worker exits with the same code). */
  usage: INVALID_CONFIGURATION_EXIT_CODE,
  /** The group has no workflow. */
  notFound: 3,
  /** The Temporal server cannot be reached. */
  unreachable: 4,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** An error the CLI reports as one message (no stack) and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue = ExitCode.failure
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, ExitCode.usage);
}
