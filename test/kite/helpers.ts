/** Shared set-up of the Kite tests: simulators with cached certificates and clients without a rate budget. */
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';
import { KiteClient, type KiteClientOptions, type KiteSim } from '../../kite';
import { startKiteSimulator, type KiteSimulator, type KiteSimulatorOptions } from '../../simulator';
import { createLogger } from '../../shared/log';

/** Kept between runs: certificate generation is the slowest part of starting a simulator. */
export const CERT_DIR = path.join(os.tmpdir(), 'kite-test-simulator-certs');
export const START = Date.parse('2024-06-01T20:00:00Z');
export const quiet = createLogger({}, { level: 'error' });

export function simulator(options: KiteSimulatorOptions = {}): Promise<KiteSimulator> {
  return startKiteSimulator({ certDir: CERT_DIR, startTime: START, logger: quiet, ...options });
}

/**
 * A client of `sim` without rate budget, otherwise as the worker builds it: it re-sends a request only after a
 * 429, once the simulator's Retry-After (1 s) has passed.
 */
export function clientOf(sim: KiteSimulator, options: KiteClientOptions = {}): KiteClient {
  return new KiteClient({
    baseUrl: sim.baseUrl,
    cert: sim.tls.cert,
    key: sim.tls.key,
    ca: sim.tls.ca,
    requestsPerSecond: Infinity,
    timeoutMs: 2000,
    logger: quiet,
    ...options,
  });
}

export async function allSims(client: KiteClient, from = 0): Promise<KiteSim[]> {
  const sims: KiteSim[] = [];
  for await (const page of client.pages(from)) sims.push(...page.sims);
  return sims;
}

/** A raw request with the simulator's client certificate, for endpoints the client does not wrap. */
export function request(
  sim: KiteSimulator,
  method: string,
  urlPath: string,
  body?: unknown
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${sim.url}${urlPath}`, {
      method,
      ca: sim.tls.ca,
      cert: sim.tls.cert,
      key: sim.tls.key,
      agent: false,
      headers: { 'content-type': 'application/json' },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined });
      });
    });
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
