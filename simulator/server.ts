/**
 * The Kite simulator as an HTTPS server: the Inventory REST API (api.ts) under
 * `/services/REST/GlobalM2M/Inventory/v{5..13}/r12`, control endpoints under `/_sim/` (control.ts), fault
 * injection (faults.ts), and a clock that evolves the SIMs. Runs in-process (tests) or from `simulator/cli.ts`.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../shared/log';
import { API, Simulator } from './api';
import { ensureDevCertificates } from './certs';
import { ControlHttp, makeControl } from './control';
import { INJECTED, NOT_A_LIST, RATE_LIMITED } from './faults';
import { corrupt, readBody, send, sendEndless, sendFault } from './http';
import { KiteFault } from './mutate';
import type { KiteSimulator, KiteSimulatorOptions } from './types';

export { durationMs } from './control';
export type * from './types';

async function serve(sim: Simulator, control: ControlHttp, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://simulator');
  const method = req.method ?? 'GET';
  if (url.pathname.startsWith('/_sim/')) return control.handle(method, url, req, res);
  const route = sim.route(method, url);
  sim.counts[route]++;
  const agent = req.headers['user-agent'];
  const retryAfterSec = sim.budgets.take(accountOf(req), req.url ?? '/', agent);
  if (retryAfterSec !== undefined) return (req.resume(), sendFault(res, RATE_LIMITED, retryAfterSec));
  const body = method === 'PUT' ? await readBody(req) : undefined;
  const latency = sim.latencyMs + sim.faults.latencyMs(route);
  if (latency > 0) await new Promise((r) => setTimeout(r, latency));
  const fault = sim.faults.next(route, API.exec(url.pathname)?.[2]);
  if (fault === 'hang') return; // the client's timeout must fire; close() drops the socket
  if (fault === 'reset') return void req.socket.destroy();
  if (fault === 'endless') return sendEndless(res);
  if (fault && INJECTED[fault]) return sendFault(res, INJECTED[fault]);
  const broken = fault && NOT_A_LIST[fault];
  if (broken)
    return void res.writeHead(broken.status, broken.type ? { 'content-type': broken.type } : {}).end(broken.body);
  const answer = sim.api(method, url, body, fault);
  if (fault === 'malformed-json' || fault === 'truncated') return corrupt(res, fault, answer);
  send(res, answer);
}

/** The account a request belongs to: its client certificate (one account per certificate, as at Kite). */
function accountOf(req: IncomingMessage): string {
  const socket = req.socket as Partial<TLSSocket> & object;
  let account = accounts.get(socket);
  if (account === undefined) {
    account = socket.getPeerCertificate?.()?.fingerprint256 ?? 'anonymous';
    accounts.set(socket, account);
  }
  return account;
}

/**
 * The account of each connection, read from its client certificate once: a connection's certificate cannot change,
 * and decoding it on every request cost a quarter of the simulator's CPU per presence read.
 */
const accounts = new WeakMap<object, string>();

/** Starts a simulator; with `mtls` (the default) only clients with a certificate of its CA get in. */
export async function startKiteSimulator(options: KiteSimulatorOptions = {}): Promise<KiteSimulator> {
  const log = options.logger ?? createLogger({ component: 'kite-simulator' });
  const certs = ensureDevCertificates(options.certDir ?? path.join(os.tmpdir(), 'kite-simulator-certs'));
  const sim = new Simulator(options, log);
  const control = makeControl(sim);
  const http = new ControlHttp(sim, control);
  const mtls = options.mtls ?? true;
  const ca = readFileSync(certs.caFile, 'utf8');
  const server = https.createServer(
    {
      key: readFileSync(certs.serverKeyFile),
      cert: readFileSync(certs.serverCertFile),
      ca,
      requestCert: mtls,
      rejectUnauthorized: mtls,
    },
    (req, res) => {
      serve(sim, http, req, res).catch((err: unknown) => {
        const fault =
          err instanceof KiteFault ? err : new KiteFault(500, 'SVR.1000', `Simulator error: ${(err as Error).message}`);
        if (!(err instanceof KiteFault)) log.error('simulator request failed', { err, url: req.url });
        if (!res.headersSent) sendFault(res, fault);
      });
    }
  );
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const ticker = startTicker(sim, options);
  const warmer = startWarming(sim, options);
  const { port } = server.address() as AddressInfo;
  const host = options.host && options.host !== '0.0.0.0' ? options.host : '127.0.0.1';
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    url,
    baseUrl: `${url}/services/REST/GlobalM2M`,
    tls: {
      ...certs,
      ca,
      cert: readFileSync(certs.clientCertFile, 'utf8'),
      key: readFileSync(certs.clientKeyFile, 'utf8'),
      pfx: readFileSync(certs.pfxFile),
      passphrase: readFileSync(certs.passphraseFile, 'utf8').trim(),
    },
    control,
    close: () => {
      if (ticker) clearInterval(ticker);
      warmer.stop();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function startTicker(sim: Simulator, o: KiteSimulatorOptions): NodeJS.Timeout | undefined {
  const tickMs = o.tickMs ?? 0;
  if (tickMs <= 0) return undefined;
  const timer = setInterval(() => sim.evolution.advance(tickMs * (o.speed ?? 1)), tickMs);
  timer.unref();
  return timer;
}

/** Builds every SIM's JSON in the background, in small slices, so that even the first full paging is fast. */
function startWarming(sim: Simulator, o: KiteSimulatorOptions): { stop(): void } {
  let next: NodeJS.Immediate | undefined;
  const slice = (from: number) => {
    const end = Math.min(sim.inv.size, from + 500);
    for (let i = from; i < end; i++) sim.inv.simBytes(i);
    next = end < sim.inv.size ? setImmediate(slice, end) : undefined;
  };
  if (o.jsonCache ?? true) next = setImmediate(slice, 0);
  return { stop: () => next && clearImmediate(next) };
}
