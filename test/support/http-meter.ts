/**
 * A meter at an HTTP peer's door: a reverse proxy, in a process of its own (meter-process.ts), between the workers
 * and a peer double that runs in the test process (the strict AWS front, the webhook receiver). It timestamps each
 * request as its headers arrive, as the peer would meter it, however busy the test process is at that moment.
 *
 * Parent side: `startHttpMeter(upstreamUrl)`; the proxy runs this same file as its main module.
 */
import http from 'node:http';
import { serveMeter, startMeterProcess, type MeterStall } from './meter-process';

/** One request as it reached the meter. */
export interface MeteredRequest {
  /** Epoch ms when its headers arrived. */
  at: number;
  method: string;
  /** Path and query, as sent. */
  url: string;
}

export interface HttpMeter {
  /** `http://127.0.0.1:<port>`: give it to the clients instead of the peer's URL. */
  url: string;
  /** Every request so far, in arrival order. */
  requests(): Promise<MeteredRequest[]>;
  /** The meter's own stalls so far: requests that arrived during one were timestamped up to that late. */
  stalls(): Promise<MeterStall[]>;
  close(): Promise<void>;
}

type Report = { requests: [number, string, string][] };

/** Starts the proxy process in front of `upstreamUrl` (http://host:port); resolves once it listens. */
export async function startHttpMeter(upstreamUrl: string): Promise<HttpMeter> {
  const meter = await startMeterProcess<Report>(__filename, { HTTP_METER_UPSTREAM: upstreamUrl });
  return {
    url: `http://127.0.0.1:${meter.port}`,
    requests: async () => (await meter.report()).requests.map(([at, method, url]) => ({ at, method, url })),
    stalls: async () => (await meter.report()).stalls,
    close: () => meter.close(),
  };
}

/** The proxy: each request forwarded as it came over a keep-alive connection, the answer piped back. */
function runProxy(): void {
  const upstream = new URL(process.env.HTTP_METER_UPSTREAM!);
  const agent = new http.Agent({ keepAlive: true });
  const requests: Report['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push([Date.now(), req.method ?? 'GET', req.url ?? '/']);
    const forwarded = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      }
    );
    forwarded.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`meter: the peer at ${upstream.host} failed: ${err.message}`);
    });
    req.pipe(forwarded);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => serveMeter(server, () => ({ requests }) satisfies Report));
}

if (require.main === module) runProxy();
