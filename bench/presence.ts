/**
 * The Kite client's cost per presence read, alone: `reads` presence requests through `KiteClient` against the
 * simulator (mTLS, keep-alive), `concurrency` in flight as the fetch activity does, each with an abort signal and
 * a waiting callback as the activity passes them. Prints the client's CPU per read (this process), the
 * simulator's, and the wall time. Run it before and after a change to the client, with the same arguments.
 *   node -r @swc-node/register bench/presence.ts [--reads 20000] [--concurrency 8] [--rounds 3]
 * Needs no Temporal or Redis. V8 flags apply as given (e.g. NODE_OPTIONS='--max-semi-space-size=32').
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KiteClient, tlsFromFiles } from '../kite';
import { createLogger } from '../shared/log';
import { ROOT, startSimulator, stopAll } from './processes';
import { cpuSeconds, log } from './runs';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reads: { type: 'string', default: '20000' },
      concurrency: { type: 'string', default: '8' },
      rounds: { type: 'string', default: '3' },
    },
  });
  const reads = Number(values.reads);
  const concurrency = Number(values.concurrency);
  const sim = await startSimulator('bench-presence', Math.min(reads, 20_000), path.join(ROOT, '.data/bench/certs'));
  try {
    const { iccs } = (await sim.control('GET', 'sims?group=bench-presence')) as { iccs: string[] };
    const client = new KiteClient({
      baseUrl: sim.info.baseUrl,
      requestsPerSecond: 0,
      logger: createLogger({}, { level: 'warn' }),
      ...tlsFromFiles({ certFile: sim.info.clientCert, keyFile: sim.info.clientKey, caFile: sim.info.ca }),
    });
    const signal = new AbortController().signal;
    const call = { signal, onWaiting: () => undefined };
    const round = async (n: number) => {
      let next = 0;
      const cpu0 = process.cpuUsage();
      const sim0 = cpuSeconds(sim.child.pid);
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < n) await client.getPresence(iccs[next++ % iccs.length], call);
        })
      );
      const wall = performance.now() - t0;
      const { user, system } = process.cpuUsage(cpu0);
      return {
        clientUsPerRead: (user + system) / n,
        clientSystemUsPerRead: system / n,
        simulatorUsPerRead: ((cpuSeconds(sim.child.pid) - sim0) * 1e6) / n,
        readsPerSecond: n / (wall / 1000),
      };
    };
    await round(Math.min(2000, reads)); // warm-up: JIT, TLS sessions
    const results: Awaited<ReturnType<typeof round>>[] = [];
    for (let r = 0; r < Number(values.rounds); r++) {
      const result = await round(reads);
      results.push(result);
      log(
        `round ${r + 1}: client ${result.clientUsPerRead.toFixed(0)} µs/read (system ${result.clientSystemUsPerRead.toFixed(0)}), simulator ${result.simulatorUsPerRead.toFixed(0)} µs/read, ${result.readsPerSecond.toFixed(0)} reads/s (load ${os.loadavg()[0].toFixed(1)})`
      );
    }
    const median = (k: keyof (typeof results)[number]) =>
      results.map((r) => r[k]).sort((a, b) => a - b)[results.length >> 1];
    process.stdout.write(
      `${JSON.stringify({
        reads,
        concurrency,
        node: process.version,
        execArgv: process.execArgv,
        nodeOptions: process.env.NODE_OPTIONS ?? '',
        loadAverage: os.loadavg(),
        clientUsPerRead: Math.round(median('clientUsPerRead')),
        clientSystemUsPerRead: Math.round(median('clientSystemUsPerRead')),
        simulatorUsPerRead: Math.round(median('simulatorUsPerRead')),
        readsPerSecond: Math.round(median('readsPerSecond')),
      })}\n`
    );
    client.close();
  } finally {
    sim.close();
    await stopAll();
  }
}

main().then(
  () => process.exit(0),
  async (err: Error) => {
    process.stderr.write(`presence bench failed: ${err.stack ?? err.message}\n`);
    await stopAll();
    process.exit(1);
  }
);
