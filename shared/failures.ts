/**
 * The failure types of the sync activities, by name. The code that fails uses them (as an ApplicationFailure's
 * type, or an Error's name, which Temporal takes as the type), and the workflow lists the ones that retrying
 * cannot fix. Pure and import-free: workflow code may use it.
 */
export const FailureType = {
  /** A group's configuration names a target the worker does not have. */
  UnknownTarget: 'UnknownTarget',
  /** Kite refused the client certificate (TLS handshake, 401 or 403). */
  KiteAuth: 'KiteAuthError',
  /** Kite answered with an error that retrying cannot fix (e.g. a bad request). */
  KiteApi: 'KiteApiError',
  /** Several presence reads failed and none succeeded: Kite's presence service looks down. Retried. */
  KitePresenceOutage: 'KitePresenceOutage',
  /** The worker's configuration is invalid. */
  Config: 'ConfigError',
  /** A group name that cannot be a workflow id and Redis hash tag. */
  InvalidGroupName: 'InvalidGroupName',
  /** Too many of a group's SIMs vanished at once: probably a truncated inventory, not real leavers. */
  SuspiciousInventoryDrop: 'SuspiciousInventoryDrop',
  /** A publish attempt left SIMs the target throttled or failed unacknowledged; Temporal retries the activity. */
  TargetUnavailable: 'TargetUnavailable',
} as const;

export type FailureType = (typeof FailureType)[keyof typeof FailureType];

/** Failures that retrying cannot fix: bad configuration, rejected credentials, an implausible inventory. */
export const NON_RETRYABLE_FAILURES: readonly FailureType[] = [
  FailureType.UnknownTarget,
  FailureType.KiteAuth,
  FailureType.Config,
  FailureType.SuspiciousInventoryDrop,
  FailureType.InvalidGroupName,
];
