/**
 * A small HTTP proxy in front of a real peer (moto) that answers chosen requests itself, e.g. 429 or 503, and
 * forwards the rest. The target under test sees real HTTP responses; nothing in the SDK is mocked.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Fault {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

export interface FaultProxy {
  url: string;
  /** Every request seen, in order (method and path). */
  seen: { method: string; path: string }[];
  /** Decides per request: a Fault to answer with, or undefined to forward. */
  inject: (req: http.IncomingMessage) => Fault | undefined;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const proxy: FaultProxy = { url: '', seen: [], inject: () => undefined, close: async () => {} };
  const server = http.createServer((req, res) => {
    proxy.seen.push({ method: req.method ?? '', path: req.url ?? '' });
    const fault = proxy.inject(req);
    if (fault) {
      req.resume();
      res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      res.end(fault.body ?? '{}');
      return;
    }
    const forward = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      }
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

/** True for UpdateThingShadow / GetThingShadow requests (not CreateThing). */
export function isShadowRequest(req: http.IncomingMessage): boolean {
  return /^\/things\/[^/]+\/shadow/.test(req.url ?? '');
}
