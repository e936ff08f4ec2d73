/** Defaults that the worker, the CLI and the bench share. */

/** The Temporal frontend when `KITE_TEMPORAL_ADDRESS` is not set. */
export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';
/** The worker's Prometheus endpoint when `KITE_METRICS_ADDRESS` is not set. */
export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9464';
/** The environment variable that sets the lowest log level written (`debug`, `info`, `warn`, `error`). */
export const LOG_LEVEL_VARIABLE = 'KITE_LOG_LEVEL';
/** The task queue of the workers and of new group workflows when `KITE_TASK_QUEUE` is not set. */
export const DEFAULT_TASK_QUEUE = 'kite-cloud-connector';
