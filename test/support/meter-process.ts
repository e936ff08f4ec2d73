/**
 * A meter in a process of its own: the test's proxies between the workers and a peer (mqtt-meter.ts, http-meter.ts)
 * run apart from the busy test process, so that what they timestamp is when the peer would receive it, not when a
 * test process stalled by its own work (a simulator page, a subscriber's merge) got round to it.
 *
 * The meter's main module prints `listening <port>` once it listens and answers each IPC message with its report.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface MeterProcess<Report> {
  port: number;
  /** Asks the meter for what it recorded so far. */
  report(): Promise<Report>;
  close(): Promise<void>;
}

/** Runs `file` (a TypeScript module) with `env` added; resolves once it listens. */
export async function startMeterProcess<Report>(
  file: string,
  env: Record<string, string>
): Promise<MeterProcess<Report>> {
  const child: ChildProcess = spawn(process.execPath, ['-r', '@swc-node/register', file], {
    cwd: path.resolve(__dirname, '../..'), // where @swc-node/register resolves
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening (\d+)/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`meter ${path.basename(file)} exited ${code} before listening`)));
  });
  return {
    port,
    report: () =>
      new Promise((resolve, reject) => {
        if (child.exitCode !== null) return reject(new Error(`meter ${path.basename(file)} has exited`));
        child.once('message', (report) => resolve(report as Report));
        child.send('report');
      }),
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Meter side: prints the port once `server` listens, answers each report request with `report()`. */
export function serveMeter(server: { address(): unknown }, report: () => unknown): void {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
  process.on('message', () => process.send!(report()));
  process.on('disconnect', () => process.exit(0));
}
