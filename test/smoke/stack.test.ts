/** The stack really runs: a workflow on the Temporal dev server runs an activity that writes to Redis. */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import type Redis from 'ioredis';
import { testRedis, testStack, uniqueName } from '../setup/stack';
import { createSmokeActivities } from './activities';
import { smokeWorkflow } from './workflows';

let redis: Redis;
let connection: Connection;
let nativeConnection: NativeConnection;

beforeAll(async () => {
  redis = testRedis();
  connection = await Connection.connect({ address: testStack.temporalAddress });
  nativeConnection = await NativeConnection.connect({ address: testStack.temporalAddress });
});

afterAll(async () => {
  await connection?.close();
  await nativeConnection?.close();
  redis?.disconnect();
});

test('a workflow runs an activity that writes to Redis', async () => {
  const taskQueue = uniqueName('smoke');
  const key = `smoke:${taskQueue}`;
  const worker = await Worker.create({
    connection: nativeConnection,
    taskQueue,
    workflowsPath: require.resolve('./workflows'),
    activities: createSmokeActivities(redis),
  });
  const client = new Client({ connection });
  const result = await worker.runUntil(
    client.workflow.execute(smokeWorkflow, { taskQueue, workflowId: taskQueue, args: [key, 'hello'] })
  );
  expect(result).toBe('hello');
  expect(await redis.get(key)).toBe('hello');
  const history = await client.workflow.getHandle(taskQueue).fetchHistory();
  expect(history.events?.some((e) => e.activityTaskCompletedEventAttributes)).toBe(true);
});

test('the search attributes the connector needs are registered', async () => {
  const client = new Client({ connection });
  const custom = await client.connection.operatorService.listSearchAttributes({ namespace: 'default' });
  expect(Object.keys(custom.customAttributes ?? {})).toEqual(expect.arrayContaining(['KiteGroup', 'KiteSyncState']));
});
