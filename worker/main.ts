/**
 * The worker process: configuration from the environment (and KITE_CONFIG_FILE), one worker on the task queue,
 * graceful shutdown on SIGTERM/SIGINT that lets in-flight activities finish, then closes Redis and connections.
 * An invalid configuration, found at start, exits with code 2.
 */
import { setFlagsFromString } from 'node:v8';
import { createLogger, routeProcessDiagnostics } from '../shared/log';
import { INVALID_CONFIGURATION_EXIT_CODE } from '../shared/config-error';
import { ConfigError, loadConfig } from './config';
import { installRuntime, metricsHooks } from './metrics';
import { startWorker } from './worker';

/**
 * V8 counts the external memory of Buffers (every Kite page arrives as about 3 MB of them: TLS chunks, then the
 * body) towards its old generation, and under the image's 256 MB heap cap it lets that generation grow only 1.3×
 * past what a collection left: a settled cycle then ran a full mark-compact every four or five pages, which cost
 * a 100,000-SIM steady-state cycle about a third of its time (BENCHMARKS.md). Growing it 2× keeps the heap under
 * the same cap. `KITE_HEAP_GROWING_PERCENT` overrides it (0: V8's own), and a `--heap-growing-percent` given to node
 * itself wins. Node does not allow the flag in NODE_OPTIONS, hence here.
 */
const HEAP_GROWING_PERCENT = 100;

async function main(): Promise<void> {
  if (!process.execArgv.some((arg) => arg.startsWith('--heap-growing-percent'))) {
    const percent = process.env.KITE_HEAP_GROWING_PERCENT ?? String(HEAP_GROWING_PERCENT);
    if (!/^\d+$/.test(percent)) {
      throw new ConfigError(
        'KITE_HEAP_GROWING_PERCENT',
        `must be a whole number of percent such as 100, got '${percent}'`
      );
    }
    setFlagsFromString(`--heap-growing-percent=${percent}`);
  }
  const logger = createLogger({ component: 'worker' });
  routeProcessDiagnostics(logger.child({ component: 'node' }));
  const config = loadConfig(process.env, (message, setting) => logger.warn(message, { setting }));
  const { metrics } = installRuntime({ prometheusBindAddress: config.metricsAddress });
  const running = await startWorker(config, logger, metricsHooks(metrics));
  logger.info('worker started', {
    taskQueue: config.temporal.taskQueue,
    namespace: config.temporal.namespace,
    temporal: config.temporal.address,
    targets: Object.keys(config.targets),
    metrics: config.metricsAddress,
  });
  try {
    await running.worker.run(); // returns once a shutdown signal has drained the worker
  } finally {
    await running.close();
    logger.info('worker stopped');
  }
}

main().catch((err) => {
  const logger = createLogger({ component: 'worker' });
  if (err instanceof ConfigError) {
    logger.error(`invalid configuration: ${err.message}`, { setting: err.setting });
    process.exit(INVALID_CONFIGURATION_EXIT_CODE);
  }
  logger.error('worker failed', { error: err });
  process.exit(1);
});
