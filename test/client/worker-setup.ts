/**
 * The worker the CLI tests run against. It runs the stand-in workflow (stand-in-workflows.ts), which has the
 * group workflow's contract (workflows/definitions.ts) and heartbeats ActivityProgress like the real one.
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import { testStack } from '../setup/stack';
import { createStandInActivities } from './stand-in-activities';

export interface TestWorker {
  stop(): Promise<void>;
}

export async function startTestWorker(taskQueue: string): Promise<TestWorker> {
  const connection = await NativeConnection.connect({ address: testStack.temporalAddress });
  const worker = await Worker.create({
    connection,
    taskQueue,
    workflowsPath: require.resolve('./stand-in-workflows'),
    activities: createStandInActivities({ sims: 5, stepMs: 250 }),
  });
  const running = worker.run();
  return {
    async stop() {
      worker.shutdown();
      await running;
      await connection.close();
    },
  };
}
