/**
 * Runs the Kite simulator until interrupted:
 *   node -r @swc-node/register simulator/cli.ts --groups 3 --sims 1000 --port 8443 --seed 42 --tick 5s
 * Prints its URL and certificate paths as one JSON object on stdout (for scripts), then a readable summary on
 * stderr.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { durationMs, startKiteSimulator, type FaultKind } from './server';

const HELP = `Kite simulator: the Kite Inventory REST API over HTTPS with mutual TLS, for tests and demos.

Options:
  --groups N|a,b,c   supervision groups: a count (group-1..N) or names      [3]
  --sims N           SIMs per group                                          [100]
  --ungrouped N      SIMs in no group                                        [0]
  --seed N           seed of all generated data and of the evolution         [42]
  --port N           HTTPS port (0 = any free)                               [8443]
  --host H           listen address                                          [127.0.0.1]
  --tick D           real time between clock advances, e.g. 5s; 0 = frozen   [5s]
  --speed X          simulated time per real time                            [1]
  --no-mtls          accept clients without a certificate
  --cert-dir DIR     where the generated CA/server/client certificates live  [.data/kite-simulator/certs]
  --latency D        delay every API answer by D                             [0]
  --rate-limit R     Kite's budget: API requests/s per account (certificate);
                     beyond it 429 POL.1005 with Retry-After; 0 = unlimited  [0]
  --rate-burst N     requests admitted at once after a quiet spell           [2]
  --fault-rate P     probability of a random fault per API request           [0]
  --fault-kinds K,.. rate-limit,overload,server-error,auth,malformed-json,truncated,hang,… (FaultKind) [rate-limit,overload]
  --help`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      groups: { type: 'string', default: '3' },
      sims: { type: 'string', default: '100' },
      ungrouped: { type: 'string', default: '0' },
      seed: { type: 'string', default: '42' },
      port: { type: 'string', default: '8443' },
      host: { type: 'string', default: '127.0.0.1' },
      tick: { type: 'string', default: '5s' },
      speed: { type: 'string', default: '1' },
      'no-mtls': { type: 'boolean', default: false },
      'cert-dir': { type: 'string', default: path.join(process.cwd(), '.data/kite-simulator/certs') },
      latency: { type: 'string', default: '0' },
      'rate-limit': { type: 'string', default: '0' },
      'rate-burst': { type: 'string', default: '2' },
      'fault-rate': { type: 'string', default: '0' },
      'fault-kinds': { type: 'string', default: 'rate-limit,overload' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const int = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number >= 0, got ${v}`);
    return n;
  };
  const groups = /^\d+$/.test(values.groups) ? int('groups', values.groups) : values.groups.split(',').filter(Boolean);
  return run({
    groups,
    simsPerGroup: int('sims', values.sims),
    ungroupedSims: int('ungrouped', values.ungrouped),
    seed: int('seed', values.seed),
    port: int('port', values.port),
    host: values.host,
    tickMs: durationMs(values.tick),
    speed: Number(values.speed),
    mtls: !values['no-mtls'],
    certDir: values['cert-dir'],
    latencyMs: durationMs(values.latency),
    rateLimit: { perSecond: Number(values['rate-limit']), burst: int('rate-burst', values['rate-burst']) },
    faults: {
      rate: Number(values['fault-rate']),
      kinds: values['fault-kinds'].split(',') as FaultKind[],
    },
  });
}

async function run(options: Parameters<typeof startKiteSimulator>[0] & object): Promise<void> {
  const sim = await startKiteSimulator(options);
  const { tls } = sim;
  const info = {
    url: sim.url,
    baseUrl: sim.baseUrl,
    ca: tls.caFile,
    clientCert: tls.clientCertFile,
    clientKey: tls.clientKeyFile,
    clientPfx: tls.pfxFile,
    clientPfxPassphraseFile: tls.passphraseFile,
    groups: sim.control.groups(),
  };
  process.stdout.write(`${JSON.stringify(info)}\n`);
  const curl = `curl --cacert ${tls.caFile} --cert ${tls.clientCertFile} --key ${tls.clientKeyFile}`;
  process.stderr.write(
    [
      `Kite simulator listening on ${sim.url}`,
      `  groups: ${Object.entries(info.groups)
        .map(([g, n]) => `${g} (${n})`)
        .join(', ')}`,
      `  list:     ${curl} '${sim.baseUrl}/Inventory/v13/r12/sim?startIndex=0&maxBatchSize=2'`,
      `  control:  ${curl} ${sim.url}/_sim/info`,
      `  advance:  ${curl} -X POST -d '{"by":"1h"}' ${sim.url}/_sim/clock/advance`,
      '',
    ].join('\n')
  );
  const stop = () => void sim.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: Error) => {
  process.stderr.write(`kite simulator: ${err.message}\n`);
  process.exit(1);
});
