/**
 * A meter in a process of its own: the test's proxies between the workers and a peer (mqtt-meter.ts, http-meter.ts)
 * run apart from the busy test process, so that what they timestamp is when the peer would receive it, not when a
 * test process stalled by its own work (a simulator page, a subscriber's merge) got round to it.
 *
 * The meter's main module prints `listening <port>` once it listens and answers each IPC message with its report.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';

/** Niceness the meters ask for: on a saturated machine a meter scheduled late would bunch what it timestamps. */
const METER_PRIORITY = -10;

/** A meter's own event loop, as it saw it: when (epoch ms) it resumed after a stall, and how long the stall was. */
export type MeterStall = [at: number, ms: number];

/** How long a meter's loop must be late to count as a stall: its timestamps may then be this much late. */
const STALL_MS = 25;

export interface MeterProcess<Report> {
  port: number;
  /** Asks the meter for what it recorded so far, and its own stalls (when its timestamps may have been late). */
  report(): Promise<Report & { stalls: MeterStall[] }>;
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
  try {
    os.setPriority(child.pid!, METER_PRIORITY);
  } catch {
    // Not allowed (not root): the meter runs at the test's priority, and its stalls say what that cost.
  }
  return {
    port,
    report: () =>
      new Promise((resolve, reject) => {
        if (child.exitCode !== null) return reject(new Error(`meter ${path.basename(file)} has exited`));
        child.once('message', (report) => resolve(report as Report & { stalls: MeterStall[] }));
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

/**
 * Meter side: prints the port once `server` listens, answers each report request with `report()` and the stalls of
 * its own event loop (a tick every 5 ms that came more than STALL_MS late).
 */
export function serveMeter(server: { address(): unknown }, report: () => object): void {
  const stalls: MeterStall[] = [];
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    if (now - last > STALL_MS) stalls.push([Date.now(), Math.round(now - last)]);
    last = now;
  }, 5).unref();
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
  process.on('message', () => process.send!({ ...report(), stalls }));
  process.on('disconnect', () => process.exit(0));
}
