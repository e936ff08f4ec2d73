import { runCli } from '../../cli/cli';
import { testStack } from '../setup/stack';

/** `kite-cc status <group> [--json]` run in this process against the test stack; its stdout. Fails on a non-zero exit. */
export async function cliStatus(taskQueue: string, group: string, json = false): Promise<string> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['status', group, ...(json ? ['--json'] : [])], {
    env: { KITE_TEMPORAL_ADDRESS: testStack.temporalAddress, KITE_TASK_QUEUE: taskQueue },
    stdout: { write: (t: string) => (stdout += t), isTTY: false },
    stderr: { write: (t: string) => (stderr += t) },
  });
  if (code !== 0) throw new Error(`kite-cc status ${group} exited with ${code}: ${stderr}`);
  return stdout;
}
