/**
 * Connectivity events across a worker SIGKILL: a cycle in which every event type happens to 30 SIMs each is
 * killed while its events are being delivered. A new worker process finishes the cycle; each real change reaches
 * the target, always under one id, and duplicates stay within the events in flight when the worker died. Real
 * worker processes, Temporal server, Redis, the Kite simulator and a webhook receiver.
 */
import { Client, Connection } from '@temporalio/client';
import type { EventType } from '../../record';
import { startKiteSimulator, type KiteSimulator } from '../../simulator';
import { statusQuery, syncNowSignal, workflowIdForGroup, type GroupConfig } from '../../workflows/definitions';
import { groupSyncWorkflow } from '../../workflows';
import { groupVisibility } from '../../workflows/search-attributes';
import { tempDir } from '../setup/processes';
import { testStack, uniqueName } from '../setup/stack';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';
import { simulatorWorkerEnv, startWorkerProcess, type WorkerProcess } from '../support/worker-process';
import { statusAfterKill } from '../support/query-after-kill';
import { waitUntil } from '../support/wait-until';

const GROUP = 'events-crash';
const PER_TYPE = 30;
/** SIMs per events page the publish step sends before it commits them: the window a crash may send twice. */
const BATCH = 10;

let sim: KiteSimulator;
let receiver: WebhookReceiver;
let connection: Connection;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  sim = await startKiteSimulator({
    groups: [GROUP],
    simsPerGroup: 300,
    ungroupedSims: 40,
    seed: 14,
    certDir: tempDir('certs'),
  });
  receiver = await startWebhookReceiver();
  connection = await Connection.connect({ address: testStack.temporalAddress });
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await connection?.close();
  await receiver?.close();
  await sim?.close();
});

const kb = (n: number) => ({ consumptionDaily: { data: { value: n * 1024 } } });

test('each event type is emitted once per real change across a worker SIGKILL; duplicates only within the in-flight window', async () => {
  const c = sim.control;
  // Disjoint sets of SIMs, one per event type, chosen among SIMs for which the change is real.
  const taken = new Set<string>();
  const pick = (from: string[], ok: (icc: string) => boolean) => {
    const chosen = from.filter((icc) => !taken.has(icc) && ok(icc)).slice(0, PER_TYPE);
    expect(chosen).toHaveLength(PER_TYPE);
    chosen.forEach((icc) => taken.add(icc));
    return chosen;
  };
  const members = c.iccs(GROUP);
  const inSession = (icc: string) => ['GPRS', 'IP reachability'].includes(c.getPresence(icc).level as string);
  const traffic = (icc: string) => ['ACTIVE', 'TEST'].includes(c.getSim(icc).lifeCycleStatus as string);
  const sets: Record<EventType, string[]> = {
    presenceLost: pick(members, inSession),
    presenceRestored: pick(members, inSession),
    imeiChanged: pick(members, (icc) => c.getSim(icc).imei !== undefined),
    operatorChanged: pick(members, (icc) => c.getSim(icc).operator !== undefined),
    countryChanged: pick(members, (icc) => c.getSim(icc).country !== undefined),
    lifeCycleChanged: pick(members, traffic),
    usageSpike: pick(members, () => true),
    leftGroup: pick(members, () => true),
    joinedGroup: c.iccs(null).slice(0, PER_TYPE),
  };
  for (const icc of sets.usageSpike) c.setSim(icc, kb(0));

  const taskQueue = uniqueName('events-crash');
  const env = {
    ...simulatorWorkerEnv(sim, taskQueue),
    KITE_PUBLISH_BATCH_SIZE: String(BATCH),
    KITE_PUBLISH_IN_FLIGHT: '1',
    KITE_TARGETS: JSON.stringify({
      hook: {
        type: 'webhook',
        url: receiver.url,
        secret: 'events-crash-secret-0123456789',
        batchSize: 5,
        concurrency: 1,
      },
    }),
  };
  workers.push(await startWorkerProcess(env));
  const config: GroupConfig = {
    group: GROUP,
    enabled: true,
    intervalMs: 3_600_000,
    targets: ['hook'],
    maxCyclesPerRun: 2, // the crash cycle runs after continue-as-new
    events: { types: Object.keys(sets) as EventType[], usageSpikeMinDays: 1, usageSpikeMinKb: 100 },
  };
  const handle = await new Client({ connection }).workflow.start(groupSyncWorkflow, {
    taskQueue,
    workflowId: workflowIdForGroup(`${GROUP}-${taskQueue}`),
    args: [{ config }],
    typedSearchAttributes: groupVisibility(config).searchAttributes,
  });
  /** Waits for cycle `n` and returns the status with that cycle's summary; signals it first unless `signal` is false. */
  const cycle = async (n: number, signal = n > 1) => {
    if (signal) await handle.signal(syncNowSignal);
    await waitUntil(
      async () => {
        const status = await statusAfterKill(handle);
        return status !== undefined && status.cyclesCompleted >= n && status.phase === 'idle';
      },
      `cycle ${n} completes`,
      180_000
    );
    const status = await handle.query(statusQuery);
    // A later cycle would replace the summary this test reads: only the signals below start cycles.
    expect(status.lastCycle?.cycle).toBe(n);
    return status;
  };

  // Cycles 1-3 set the stage: the spike SIMs get a day of 1,000 kB behind them (their baseline), and the SIMs whose
  // presence comes back lose it first.
  await cycle(1);
  for (const icc of sets.usageSpike) c.setSim(icc, kb(1_000));
  await cycle(2);
  for (const icc of sets.usageSpike) c.setSim(icc, kb(10)); // the daily reset
  for (const icc of sets.presenceRestored) c.setSim(icc, { presence: { level: 'unknown' } });
  await cycle(3);
  const before = receiver.events.length;
  expect(receiver.events.filter((e) => e.type === 'presenceLost')).toHaveLength(PER_TYPE);

  // Cycle 4: one real change of each type per chosen SIM, delivered slowly; the worker dies halfway through.
  for (const icc of sets.presenceLost) c.setSim(icc, { presence: { level: 'unknown' } });
  for (const icc of sets.presenceRestored) c.setSim(icc, { presence: { level: 'GPRS' } });
  sets.imeiChanged.forEach((icc, i) => c.setSim(icc, { imei: `35693803${String(500_000 + i).padStart(6, '0')}1` }));
  for (const icc of sets.operatorChanged) c.setSim(icc, { operator: 'Crash Test Mobile' });
  for (const icc of sets.countryChanged) c.setSim(icc, { country: 'XZ' });
  for (const icc of sets.lifeCycleChanged) c.setSim(icc, { lifeCycleStatus: 'SUSPENDED' });
  for (const icc of sets.usageSpike) c.setSim(icc, kb(6_000));
  c.moveToGroup(sets.leftGroup, null);
  c.moveToGroup(sets.joinedGroup, GROUP);
  const expected = Object.values(sets).flat().length;
  receiver.delayMs = 300; // 54 POSTs of events, one at a time: about 16 s
  await handle.signal(syncNowSignal);
  await waitUntil(() => receiver.events.length - before >= expected / 3, 'a third of the events delivered', 180_000);
  await workers[0].kill('SIGKILL');
  const deliveredBeforeCrash = receiver.events.length - before;
  expect(deliveredBeforeCrash).toBeLessThan(expected);
  receiver.delayMs = 0;
  const standby = await startWorkerProcess(env);
  workers.push(standby);
  // The syncNow above started cycle 4; a second signal now would queue a cycle 5 that can replace its summary.
  const status = await cycle(4, false);
  expect(status.lastCycle).toMatchObject({ outcome: 'completed', events: expected, left: PER_TYPE });

  const events = receiver.events.slice(before);
  for (const [type, iccs] of Object.entries(sets)) {
    const got = events.filter((e) => e.type === type);
    // Every real change arrived, and only those.
    expect([...new Set(got.map((e) => e.iccid))].sort()).toEqual([...iccs].sort());
    // One id per change, however often it was delivered.
    for (const icc of iccs) expect(new Set(got.filter((e) => e.iccid === icc).map((e) => e.id)).size).toBe(1);
  }
  const duplicates = events.length - expected;
  console.log(`events crash test: ${deliveredBeforeCrash} events before SIGKILL, ${duplicates} delivered twice`);
  // A page of queued events is committed once the target took it all: at most that page goes again (HSCAN's
  // COUNT is a hint, so allow twice the batch).
  expect(duplicates).toBeLessThanOrEqual(2 * BATCH);
  expect(standby.output()).toContain('publish resumed after a failed attempt');

  // Nothing more to say: a cycle without changes emits no event.
  await cycle(5);
  expect(receiver.events.length - before).toBe(events.length);
  await handle.terminate();
}, 600_000);
