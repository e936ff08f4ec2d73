/** Turns SDK and gRPC errors into {@link CliError}s that say what went wrong and what to do. */
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { ClientSettings } from './connection';
import { unreachableError } from './connection';
import { CliError, ExitCode } from './errors';
import { innermostMessage } from '../workflows/definitions';

/** The gRPC status codes the CLI tells apart (numbers from the gRPC spec; grpc-js is not a direct dependency). */
export const GrpcCode = {
  CANCELLED: 1,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  FAILED_PRECONDITION: 9,
  PERMISSION_DENIED: 7,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

/** The gRPC status code of `err` or of one of its causes. */
export function grpcCode(err: unknown): number | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    if (typeof e.code === 'number') return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

export function notRunningError(group: string, detail = 'has no running workflow'): CliError {
  return new CliError(`group ${group} ${detail}: run \`kite-cc start ${group}\``, ExitCode.notFound);
}

/** Maps any error of a command about `group` to a CliError. */
export function toCliError(err: unknown, settings: ClientSettings, group?: string): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof WorkflowNotFoundError) {
    return group ? notRunningError(group) : new CliError(err.message, ExitCode.notFound);
  }
  if (err instanceof WorkflowUpdateFailedError) {
    return new CliError(`the workflow rejected the configuration: ${innermostMessage(err)}`, ExitCode.usage);
  }
  const code = grpcCode(err);
  if (code === GrpcCode.UNAVAILABLE) return unreachableError(settings, innermostMessage(err));
  if (code === GrpcCode.NOT_FOUND && /namespace/i.test(innermostMessage(err))) {
    return new CliError(
      `namespace ${settings.namespace} does not exist on ${settings.address}: set KITE_TEMPORAL_NAMESPACE`,
      ExitCode.notFound
    );
  }
  if (code === GrpcCode.UNAUTHENTICATED || code === GrpcCode.PERMISSION_DENIED) {
    return new CliError(
      `Temporal at ${settings.address} refused the credentials (${innermostMessage(err)}): ` +
        'check KITE_TEMPORAL_API_KEY or KITE_TEMPORAL_TLS_CERT/KEY',
      ExitCode.failure
    );
  }
  return new CliError(innermostMessage(err), ExitCode.failure);
}
