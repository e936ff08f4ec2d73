/**
 * The rule for monitoring group names. A name becomes a workflow id and the hash tag of every Redis key of the
 * group (`cc:{<group>}:…`), so it is kept plain: no braces, colons, wildcards or spaces. Checked by the CLI, the
 * workflow and the state store. Pure and import-free: workflow code may use it.
 */

/** Returns why `group` is not a valid group name, or undefined when it is. */
export function groupNameError(group: string): string | undefined {
  if (typeof group !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(group)) {
    return `group ${JSON.stringify(group)} is invalid: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`;
  }
  return undefined;
}
