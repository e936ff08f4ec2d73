/**
 * The worker the CLI tests run against: the real group workflow and activities (through the shared sync
 * harness), reading an in-memory Kite inventory and publishing to recording targets named `mqtt` and `webhook`.
 */
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

export interface TestWorker {
  harness: SyncHarness;
  kite: MemoryKite;
  mqtt: RecordingTarget;
  taskQueue: string;
  stop(): Promise<void>;
}

export async function startTestWorker(): Promise<TestWorker> {
  const kite = new MemoryKite(2);
  const mqtt = new RecordingTarget('mqtt');
  const harness = await startSyncHarness({ kite, targets: [mqtt, new RecordingTarget('webhook')], batchSize: 2 });
  return { harness, kite, mqtt, taskQueue: harness.taskQueue, stop: () => harness.close() };
}
