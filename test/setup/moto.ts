/**
 * moto's server as the AWS IoT peer (control plane and shadows on one endpoint). One instance per test file:
 * start it in beforeAll, stop it in afterAll. Installed by `bash scripts/setup.sh --test-peers`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ROOT } from './ports';
import { freePort, stop, waitForPort } from './processes';

export const MOTO_BIN = process.env.KITE_MOTO_BIN ?? `${ROOT}/.cache/venv/bin/moto_server`;

export interface MotoServer {
  /** `http://127.0.0.1:<port>`: pass as both the control-plane and the data-plane endpoint. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startMoto(): Promise<MotoServer> {
  if (!existsSync(MOTO_BIN)) {
    throw new Error(`moto_server not found at ${MOTO_BIN}: run 'bash scripts/setup.sh --test-peers' first`);
  }
  const port = await freePort();
  let output = '';
  const child: ChildProcess = spawn(MOTO_BIN, ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-2000)));
  try {
    await waitForPort(port, 'moto_server', 30_000);
  } catch (err) {
    await stop(child);
    throw new Error(`${(err as Error).message}\nmoto_server output:\n${output}`);
  }
  return { url: `http://127.0.0.1:${port}`, port, stop: () => stop(child) };
}
