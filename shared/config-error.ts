/** A configuration problem, named by its setting (`KITE_PAGE_SIZE`, `targets.aws-eu.shadowName`). */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    problem: string
  ) {
    super(`${setting}: ${problem}`);
    this.name = 'ConfigError';
  }
}
