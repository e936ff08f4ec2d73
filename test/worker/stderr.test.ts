/** The worker process writes only JSON lines to stderr, Node's own warnings included. */
import path from 'node:path';
import { testStack, uniqueName } from '../setup/stack';
import { startWorkerProcess } from '../support/worker-process';

test("every line on the worker's stderr is one JSON object, also Node's warnings", async () => {
  const worker = await startWorkerProcess({
    KITE_TEMPORAL_ADDRESS: testStack.temporalAddress,
    KITE_TASK_QUEUE: uniqueName('stderr'),
    KITE_REDIS_URL: testStack.redisUrl,
    KITE_TARGETS: JSON.stringify({ sink: { type: 'null' } }),
    NODE_OPTIONS: `--require ${path.join(__dirname, 'many-abort-listeners.js')}`,
  });
  await worker.kill('SIGTERM');
  const lines = worker.output().trimEnd().split('\n');
  const parsed = lines.map((line) => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`not a JSON line on the worker's stderr: ${line}`);
    }
  });
  expect(parsed).toContainEqual(
    expect.objectContaining({ level: 'warn', warning: 'MaxListenersExceededWarning', component: 'node' })
  );
  expect(parsed).toContainEqual(expect.objectContaining({ msg: 'worker stopped' }));
});
