/** The real worker entry point (worker/main.ts) in a child process, so a test can SIGKILL it like a crash. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { KiteSimulator } from '../../simulator';
import { testStack, uniqueName } from '../setup/stack';

const ROOT = path.resolve(__dirname, '../..');

export interface WorkerProcess {
  child: ChildProcess;
  /** Everything the worker wrote to stderr (its JSON log lines). */
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts a worker with `env` on top of this process's environment; resolves once it polls its task queue. */
export async function startWorkerProcess(env: Record<string, string>, timeoutMs = 60_000): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['-r', '@swc-node/register', 'worker/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, KITE_METRICS_ADDRESS: 'off', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // not left behind to poll the task queue after the test gave up on it
      reject(new Error(`worker did not start in ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const check = () => {
      if (output.includes('"worker started"')) return (clearTimeout(timer), resolve());
      if (child.exitCode !== null)
        return (clearTimeout(timer), reject(new Error(`worker exited ${child.exitCode}:\n${output}`)));
      setTimeout(check, 50);
    };
    check();
  });
  return {
    child,
    output: () => output,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** A worker's environment on the shared test stack against `sim`: its own Redis prefix, no Kite rate budget. */
export function simulatorWorkerEnv(sim: KiteSimulator, taskQueue: string): Record<string, string> {
  return {
    KITE_TEMPORAL_ADDRESS: testStack.temporalAddress,
    KITE_TASK_QUEUE: taskQueue,
    KITE_REDIS_URL: testStack.redisUrl,
    KITE_REDIS_PREFIX: uniqueName('cc'),
    KITE_API_URL: sim.baseUrl,
    KITE_CA_FILE: sim.tls.caFile,
    KITE_CERT_FILE: sim.tls.clientCertFile,
    KITE_KEY_FILE: sim.tls.clientKeyFile,
    KITE_REQUESTS_PER_SECOND: '0',
  };
}
