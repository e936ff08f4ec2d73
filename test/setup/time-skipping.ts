/**
 * Temporal's time-skipping test server for the fast workflow tests, one per test file that needs it. It is the Java
 * program that `bash scripts/setup.sh --test-peers` fetches from Maven Central (scripts/test-server/pom.xml).
 *
 * `TestWorkflowEnvironment.createTimeSkipping` can run an existing binary, but gives it 5 s to listen, which a JVM
 * misses on a loaded 2-core machine. So the server is started here with a generous deadline, and the SDK's own
 * time-skipping environment is connected to it (the same factory `createTimeSkipping` uses, with `existing`).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { KITE_GROUP, KITE_SYNC_STATE } from '../../workflows/search-attributes';
import { TEST_SERVER_BIN } from './ports';
import { freePort, stop, waitForPort } from './processes';

interface EnvironmentFactory {
  create(options: {
    server: { type: 'existing' };
    address: string;
    supportsTimeSkipping: true;
  }): Promise<TestWorkflowEnvironment>;
}

export interface TimeSkippingServer {
  /** Time moves only when a test sleeps (`env.sleep`) or awaits a workflow result through `env.client`. */
  env: TestWorkflowEnvironment;
  stop(): Promise<void>;
}

export async function startTimeSkippingServer(): Promise<TimeSkippingServer> {
  if (!existsSync(TEST_SERVER_BIN)) {
    throw new Error(
      `Temporal's test server not found at ${TEST_SERVER_BIN}: run 'bash scripts/setup.sh --test-peers' first`
    );
  }
  const factory = TestWorkflowEnvironment as unknown as Partial<EnvironmentFactory>;
  if (typeof factory.create !== 'function') {
    throw new Error(
      '@temporalio/testing no longer has TestWorkflowEnvironment.create: adapt test/setup/time-skipping.ts'
    );
  }
  const port = await freePort();
  let output = '';
  const child = spawn(TEST_SERVER_BIN, [String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-2000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  try {
    await waitForPort(port, "Temporal's time-skipping test server", 90_000);
    const env = await factory.create({
      server: { type: 'existing' },
      address: `127.0.0.1:${port}`,
      supportsTimeSkipping: true,
    });
    // The group workflow upserts its search attributes; like any server, this one must know them first.
    const keyword = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
    await env.connection.operatorService.addSearchAttributes({
      namespace: env.namespace ?? 'default',
      searchAttributes: Object.fromEntries([KITE_GROUP, KITE_SYNC_STATE].map((key) => [key.name, keyword])),
    });
    return {
      env,
      async stop() {
        await env.teardown();
        await stop(child);
      },
    };
  } catch (err) {
    await stop(child);
    throw new Error(`${(err as Error).message}\ntest server output:\n${output}`);
  }
}
