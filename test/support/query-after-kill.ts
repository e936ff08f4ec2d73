import type { WorkflowHandle } from '@temporalio/client';
import { GrpcCode, grpcCode } from '../../cli/errors-map';
import { statusQuery, type GroupStatus } from '../../workflows/definitions';

/**
 * The group's status, or `undefined` while Temporal still routes queries to a worker that was just killed: a query
 * goes first to the dead worker's sticky queue, and the server may refuse it as a failed precondition ("no poller
 * seen for task queue recently") until it notices the worker is gone. Any other failure is thrown.
 */
export async function statusAfterKill(handle: WorkflowHandle): Promise<GroupStatus | undefined> {
  try {
    return await handle.query(statusQuery);
  } catch (err) {
    if (grpcCode(err) === GrpcCode.FAILED_PRECONDITION) return undefined;
    throw err;
  }
}
