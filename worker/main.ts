/**
 * The worker process: configuration from the environment (and KITE_CONFIG_FILE), one worker on the task queue,
 * graceful shutdown on SIGTERM/SIGINT that lets in-flight activities finish, then closes Redis and connections.
 */
import { createLogger } from '../shared/log';
import { ConfigError, loadConfig } from './config';
import { installRuntime, metricsHooks } from './metrics';
import { startWorker } from './worker';

async function main(): Promise<void> {
  const logger = createLogger({ component: 'worker' });
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    logger.error(`invalid configuration: ${err.message}`, { setting: err.setting });
    process.exitCode = 2;
    return;
  }
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
  createLogger({ component: 'worker' }).error('worker failed', { error: err });
  process.exit(1);
});
