/** Child processes of the benchmark: the Kite simulator and the real worker (worker/main.ts), each measurable. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..');

export interface Child {
  child: ChildProcess;
  output(): string;
  /** Peak resident set size so far (VmHWM), in MB; undefined once the process is gone. */
  peakRssMb(): number | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const children = new Set<Child>();

/** Stops every child still running (on exit paths and signals). */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => c.stop(2_000)));
}

function spawnNode(script: string, args: string[], env: Record<string, string>, nodeArgs: string[] = []): Child {
  // TypeScript sources are compiled in process by swc; compiled JavaScript (lib/) needs no loader.
  const loader = script.endsWith('.ts') ? ['-r', '@swc-node/register'] : [];
  const child = spawn(process.execPath, [...nodeArgs, ...loader, script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => {
    output += c.toString();
    if (output.length > 1 << 20) output = output.slice(-(1 << 19)); // keep the tail only
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const handle: Child = {
    child,
    output: () => output,
    peakRssMb() {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        return m ? Number(m[1]) / 1024 : undefined;
      } catch {
        return undefined;
      }
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      children.delete(handle);
    },
  };
  children.add(handle);
  return handle;
}

async function waitFor(c: Child, what: string, test: (out: string) => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test(c.output())) {
    if (c.child.exitCode !== null) throw new Error(`${what}: exited ${c.child.exitCode}\n${c.output().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`${what}: not ready in ${timeoutMs} ms\n${c.output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface SimulatorInfo {
  url: string;
  baseUrl: string;
  ca: string;
  clientCert: string;
  clientKey: string;
}

export interface SimulatorProcess extends Child {
  info: SimulatorInfo;
  /** A `/_sim/` control request over HTTPS with the client certificate. */
  control(method: string, path: string, body?: unknown): Promise<unknown>;
  close(): void;
}

/**
 * The simulator (simulator/cli.ts): one Kite account whose inventory holds `sims` SIMs in each of `groups`, with a
 * frozen clock (`--tick 0`).
 */
export async function startSimulator(
  groups: string | string[],
  sims: number,
  certDir: string
): Promise<SimulatorProcess> {
  const names = [groups].flat().join(',');
  const args = ['--groups', names, '--sims', String(sims), '--port', '0', '--tick', '0', '--cert-dir', certDir];
  const c = spawnNode('simulator/cli.ts', args, {});
  // A million SIMs take minutes to generate on a loaded machine.
  await waitFor(c, 'Kite simulator', (out) => out.includes('"baseUrl"'), Math.max(120_000, sims * 0.6));
  const line = c
    .output()
    .split('\n')
    .find((l) => l.startsWith('{'))!;
  const info = JSON.parse(line) as SimulatorInfo;
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: 8,
    ca: readFileSync(info.ca),
    cert: readFileSync(info.clientCert),
    key: readFileSync(info.clientKey),
  });
  const control = (method: string, p: string, body?: unknown) =>
    new Promise<unknown>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = https.request(`${info.url}/_sim/${p}`, {
        method,
        agent,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      });
      req.once('error', reject);
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.once('end', () => {
          const text = Buffer.concat(chunks).toString();
          if ((res.statusCode ?? 0) >= 300) return reject(new Error(`${method} /_sim/${p}: ${res.statusCode} ${text}`));
          resolve(text ? JSON.parse(text) : undefined);
        });
      });
      req.end(payload);
    });
  return { ...c, info, control, close: () => agent.destroy() };
}

/** As the Dockerfile's worker stage sets it: V8 grows the heap far past the live data unless capped. */
export const WORKER_NODE_OPTIONS = '--max-old-space-size=256 --max-semi-space-size=16';

export interface WorkerProcess extends Child {
  /** From spawn to "worker started" (module loading, workflow bundling, connections). */
  startupMs: number;
}

/**
 * The real worker entry point with its configuration in the environment. By default it runs as production does
 * (`npm run build` output in lib/, started by bench.sh); BENCH_WORKER_SOURCE=1 runs worker/main.ts through swc.
 */
export async function startBenchWorker(env: Record<string, string>, cpuProfileDir?: string): Promise<WorkerProcess> {
  const started = Date.now();
  const nodeArgs = cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfileDir] : [];
  // V8 flags for the worker only; by default the heap cap of the production image (Dockerfile, worker stage).
  // BENCH_WORKER_NODE_OPTIONS= (empty) runs with V8's default heap sizing.
  const nodeOptions = process.env.BENCH_WORKER_NODE_OPTIONS ?? WORKER_NODE_OPTIONS;
  const c = spawnNode(
    workerScript(),
    [],
    { KITE_METRICS_ADDRESS: 'off', ...env, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) },
    nodeArgs
  );
  await waitFor(c, 'worker', (out) => out.includes('"worker started"'), 120_000);
  return { ...c, startupMs: Date.now() - started };
}

/** lib/worker/main.js, the production entry point, unless BENCH_WORKER_SOURCE asks for the TypeScript source. */
export function workerScript(): string {
  if (process.env.BENCH_WORKER_SOURCE) return 'worker/main.ts';
  const compiled = 'lib/worker/main.js';
  if (!existsSync(path.join(ROOT, compiled))) {
    throw new Error(
      `${compiled} is missing: run \`npm run build\` first (scripts/bench.sh does), or set BENCH_WORKER_SOURCE=1`
    );
  }
  return compiled;
}
