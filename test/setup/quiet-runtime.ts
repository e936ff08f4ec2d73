/** Keeps the SDK's own logs to warnings and errors, so test output shows what matters. */
import { DefaultLogger, Runtime } from '@temporalio/worker';

try {
  Runtime.install({ logger: new DefaultLogger((process.env.KITE_TEST_SDK_LOG_LEVEL as 'WARN') ?? 'WARN') });
} catch {
  // Already installed by an earlier test file in this process.
}
