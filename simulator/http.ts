/** Reading requests and writing answers, well-formed or deliberately damaged. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { faultBody, type Answer } from './faults';
import { KiteFault } from './mutate';
import type { FaultKind } from './types';

const MAX_BODY = 1 << 20;

export function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      if ((size += c.length) > MAX_BODY) req.destroy(new KiteFault(413, 'SVC.1011', 'Request body too large'));
      else chunks.push(c);
    });
    req.once('error', reject);
    req.once('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text ? JSON.parse(text) : undefined);
      } catch {
        reject(new KiteFault(400, 'SVC.1001', 'Invalid parameter: the body is not JSON'));
      }
    });
  });
}

export function send(res: ServerResponse, a: Answer): void {
  const headers: Record<string, string | number> = { 'content-length': Buffer.byteLength(a.body) };
  if (a.body) headers['content-type'] = 'application/json; charset=utf-8';
  res.writeHead(a.status, headers).end(a.body);
}

/** Kite's error body for `f`; a 429 says when to come back (whole seconds, 1 unless told). */
export function sendFault(res: ServerResponse, f: KiteFault, retryAfterSec = 1): void {
  if (f.status === 429) res.setHeader('retry-after', String(retryAfterSec));
  send(res, { status: f.status, body: faultBody(f) });
}

/** Sends a damaged answer: half the JSON (malformed), or half the announced bytes and a dropped connection. */
export function corrupt(res: ServerResponse, kind: FaultKind, a: Answer): void {
  const body = Buffer.from(a.body);
  const half = body.subarray(0, Math.floor(body.length / 2));
  if (kind === 'malformed-json') return send(res, { status: a.status, body: half });
  // truncated: announce the full length, send half, then drop the connection
  res.writeHead(a.status, { 'content-length': body.length, 'content-type': 'application/json' });
  res.write(half, () => res.socket?.destroy());
}

/** A 200 whose JSON list never ends: SIM-like items written as fast as the client reads, until it hangs up. */
export function sendEndless(res: ServerResponse): void {
  const item = JSON.stringify({ icc: '8934000000000000000', alias: 'x'.repeat(200) });
  const chunk = Buffer.from(`${item},`.repeat(256));
  res.writeHead(200, { 'content-type': 'application/json' });
  res.write('{"subscriptionData":[');
  const pump = () => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', pump);
  };
  res.once('close', () => res.removeListener('drain', pump));
  pump();
}
