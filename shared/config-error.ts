/**
 * The one configuration error: a problem named by its setting (`KITE_PAGE_SIZE`, `targets.aws-eu.shadowName`).
 * The worker and the CLI exit with code 2 ("invalid configuration") on it. Messages never echo the value of a
 * secret or a URL (URLs may carry tokens).
 */
import type { z } from 'zod';
import { FailureType } from './failures';

export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    problem: string
  ) {
    super(`${setting}: ${problem}`);
    this.name = FailureType.Config;
  }
}

/** Exit code of a process that stops on a ConfigError. */
export const INVALID_CONFIGURATION_EXIT_CODE = 2;

type Issue = z.core.$ZodIssue;

/**
 * The first problem of a failed schema parse as a ConfigError named by the setting's path under `prefix`
 * (e.g. `targets.aws-eu` + `shadowName`). `settingName` may rename a path (e.g. to the environment variable the
 * value came from). Zod's own messages are rephrased and never include the input.
 */
export function configErrorFrom(
  error: z.ZodError,
  prefix: string,
  settingName: (path: string) => string = (path) => path
): ConfigError {
  const issue = error.issues[0];
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') path.push(issue.keys[0]);
  const joined = [prefix, ...path].filter(Boolean).join('.');
  return new ConfigError(settingName(joined), problemOf(issue));
}

const ARTICLE: Record<string, string> = {
  object: 'an object',
  array: 'an array',
  int: 'an integer',
  boolean: 'true or false',
};

function problemOf(issue: Issue): string {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return isDefaultMessage(issue) ? 'required' : issue.message;
      return isDefaultMessage(issue) ? `must be ${ARTICLE[issue.expected] ?? `a ${issue.expected}`}` : issue.message;
    case 'invalid_value':
      return isDefaultMessage(issue)
        ? `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`
        : issue.message;
    case 'unrecognized_keys':
      return isDefaultMessage(issue) ? 'unknown setting' : issue.message;
    default:
      return isDefaultMessage(issue) ? `is invalid (${issue.code})` : issue.message;
  }
}

/** Zod's default messages start with "Invalid" or "Too"; ours are lower case and say what is expected. */
function isDefaultMessage(issue: Issue): boolean {
  return /^(Invalid|Too |Unrecognized)/.test(issue.message);
}
