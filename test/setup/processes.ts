import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { waitUntil } from '../support/wait-until';

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

export function waitForPort(port: number, what: string, timeoutMs = 15_000): Promise<void> {
  return waitUntil(() => portOpen(port), `${what} opens 127.0.0.1:${port}`, timeoutMs);
}

/** A free TCP port on 127.0.0.1, for a server a test starts for itself. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `kite-${prefix}-`));
}

/** Starts a throwaway redis-server without persistence on `port`; resolves once it accepts connections. */
export async function startRedis(port: number, extraArgs: string[] = []): Promise<ChildProcess> {
  const dir = tempDir('redis');
  const child = spawn(
    'redis-server',
    ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'no', ...extraArgs],
    { stdio: 'ignore' }
  );
  await waitForPort(port, 'redis-server');
  return child;
}

/** Starts a throwaway Mosquitto broker on `port`. */
export async function startMosquitto(port: number): Promise<ChildProcess> {
  const dir = tempDir('mosquitto');
  const conf = path.join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
  const bin = process.env.KITE_MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';
  const child = spawn(bin, ['-c', conf], { stdio: 'ignore' });
  await waitForPort(port, 'mosquitto');
  return child;
}

/** Kills a child and waits for it to exit. */
export function stop(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}
