import { CancelledFailure, Context } from '@temporalio/activity';

/**
 * Temporal reports an activity as cancelled only when it throws CancelledFailure. These turn a cancellation
 * request (the group was disabled mid-cycle) into one, at safe points and in place of the abort errors that
 * cancelled requests raise.
 */
export function throwIfCancelled(): void {
  const ctx = Context.current();
  if (ctx.cancellationSignal.aborted) throw new CancelledFailure(String(ctx.cancellationSignal.reason ?? 'cancelled'));
}

export async function whileNotCancelled<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throwIfCancelled();
    throw err;
  }
}
