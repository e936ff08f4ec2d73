/**
 * Run by metrics.test.ts in its own process (a Runtime installs once per process): installs the Runtime with
 * Prometheus on the given address, records connector metrics, connects to Temporal so the SDK's own metrics
 * exist too, prints `ready`, and shuts down when stdin closes.
 */
import { NativeConnection, Runtime } from '@temporalio/worker';
import { installRuntime, metricsHooks } from '../../worker/metrics';

async function main(): Promise<void> {
  const [bindAddress, temporalAddress] = process.argv.slice(2);
  const { metrics } = installRuntime({ prometheusBindAddress: bindAddress, logLevel: 'info' });
  metrics.simsFetched('fleet-a', 120);
  metrics.simsChanged('fleet-a', 'mqtt', 7);
  metrics.simsChanged('fleet-a', 'mqtt', 0); // ignored
  metrics.cycleDuration('fleet-a', 42_000);
  const hooks = metricsHooks(metrics);
  hooks.onOutcomes(
    'fleet-a',
    'mqtt',
    [
      { iccid: '1', status: 'ok' },
      { iccid: '2', status: 'ok' },
      { iccid: '3', status: 'permanent', reason: 'too large' },
      { iccid: '4', status: 'throttled', retryAfterMs: 1000, reason: '429' },
    ],
    180
  );
  hooks.onProgress('fleet-b', 3);
  hooks.onDiff('fleet-b', 'aws', 4);
  Runtime.instance().logger.warn('hello from the sdk logger', { workflowId: 'wf-1' });
  const connection = temporalAddress ? await NativeConnection.connect({ address: temporalAddress }) : undefined;
  process.stdout.write('ready\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once('end', resolve));
  await connection?.close();
  await Runtime.instance().shutdown();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
