/**
 * A SIM whose ICC Kite sends unusable (letters, none, a number, F-padded) keeps its place in the group under its
 * last known ICC: the cycle counts it as `bad-icc`, forgets nothing and publishes nothing of it, and once Kite's
 * ICC is good again only real changes go out. Real workflow, Temporal server, Redis, Kite client and simulator.
 */
import { kiteSourceFromClients } from '../../activities/kite-source';
import type { KiteSimulator } from '../../simulator';
import { runCli } from '../../cli/cli';
import { syncNowSignal } from '../../workflows/definitions';
import { testStack } from '../setup/stack';
import { clientOf, simulator } from '../kite/helpers';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

const GROUP = 'icc-fleet';
let sim: KiteSimulator;
let harness: SyncHarness;
const cloud = new RecordingTarget('cloud');

beforeAll(async () => {
  sim = await simulator({ groups: [GROUP], simsPerGroup: 20 });
  const kite = kiteSourceFromClients(() => clientOf(sim, { pageSize: 7 }));
  harness = await startSyncHarness({ kite, targets: [cloud] });
});
afterAll(async () => {
  await harness?.close();
  await sim?.close();
});

/** `kite-cc sim <group> <iccid>` on this harness's workflow and Redis state: what it prints. */
async function simCommand(icc: string): Promise<string> {
  let stdout = '';
  const code = await runCli(['sim', GROUP, icc], {
    env: {
      KITE_TEMPORAL_ADDRESS: testStack.temporalAddress,
      KITE_TASK_QUEUE: harness.taskQueue,
      KITE_REDIS_URL: testStack.redisUrl,
      KITE_REDIS_PREFIX: harness.prefix,
    },
    stdout: { write: (t: string) => (stdout += t), isTTY: false },
    stderr: { write: () => undefined },
  });
  expect(code).toBe(0);
  return stdout;
}

test('SIMs whose ICC became unusable are counted under their last known ICC, not forgotten, and resume with a patch', async () => {
  const iccs = sim.control.iccs(GROUP);
  const handle = await harness.start(GROUP);
  await harness.waitForCycles(handle, 1);
  expect(cloud.drain().size).toBe(20);

  sim.control.breakSim(iccs[0], 'bad-icc');
  sim.control.breakSim(iccs[1], 'no-icc');
  sim.control.setSim(iccs[2], { icc: Number(iccs[2]) });
  sim.control.setSim(iccs[3], { icc: `${iccs[3]}F` });
  sim.control.setSim(iccs[4], { alias: 'changed-meanwhile' });
  await handle.signal(syncNowSignal);
  const broken = await harness.waitForCycles(handle, 2);
  expect(broken.lastCycle).toMatchObject({
    outcome: 'completed',
    inGroup: 16,
    invalid: 4,
    invalidReasons: { 'bad-icc': 4 },
    left: 0,
  });
  expect([...cloud.drain().keys()]).toEqual([iccs[4]]);
  const invalid = await harness.redis.hgetall(`${harness.prefix}:{${GROUP}}:invalid:2`);
  expect(Object.keys(invalid).sort()).toEqual(iccs.slice(0, 4).sort());
  // The operator sees which SIM went bad, and that its targets still hold it.
  const shown = await simCommand(iccs[2]);
  expect(shown).toMatch(/^rejected by the fetch of cycle 2: bad-icc/m);
  expect(shown).toMatch(/^ {2}holds: \{.*"iccid":"\d+"/m);

  for (const icc of iccs.slice(0, 4)) sim.control.resetSim(icc);
  sim.control.setSim(iccs[0], { alias: 'renamed-after-repair' });
  await handle.signal(syncNowSignal);
  const repaired = await harness.waitForCycles(handle, 3);
  expect(repaired.lastCycle).toMatchObject({ outcome: 'completed', inGroup: 20, invalid: 0, left: 0 });
  // Still known: nothing is republished in full, only the one change.
  expect(cloud.drain()).toEqual(new Map([[iccs[0], [{ alias: 'renamed-after-repair' }]]]));
  await handle.terminate();
});
