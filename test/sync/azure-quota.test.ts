/**
 * An Azure hub whose daily message quota is spent, on the real stack: the real workflow and activities on the
 * test Temporal server, the Azure target against the IoT Hub double, `kite-cc status` in-process. The target
 * pauses until 00:00 UTC (of the double's clock, which the test moves to the next UTC day); the cycle completes
 * with the changes pending instead of retrying for hours, and `status` (text and JSON), the Web UI's current
 * details and the metrics say until when, and which limit it is: the hub's own quota (403002) or the connector's
 * own `dailyMessageBudget` (the hub refused nothing). The next UTC day publishes the rest, nothing lost.
 */
import type { MetricMeter, MetricTags } from '@temporalio/common';
import { createLogger } from '../../shared/log';
import { createAzureTarget, parseAzureTargetConfig } from '../../targets/azure';
import { nextUtcMidnight } from '../../targets/azure/tiers';
import { createConnectorMetrics, metricsHooks, METRIC_NAMES } from '../../worker/metrics';
import { syncNowSignal } from '../../workflows/definitions';
import { AzureIotHubDouble } from '../azure-double';
import { uniqueName } from '../setup/stack';
import { cliStatus } from '../support/cli-status';
import { MemoryKite } from '../support/memory-kite';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

/** A metric meter that remembers the last value of each gauge series, as Prometheus would scrape it. */
function recordingMeter(): { meter: MetricMeter; gauge(name: string, tags: MetricTags): number | undefined } {
  const gauges = new Map<string, number>();
  const key = (name: string, tags: MetricTags) => `${name}${JSON.stringify(tags)}`;
  const ignore = () => ({ add: () => undefined, record: () => undefined, set: () => undefined });
  const meter = {
    createCounter: ignore,
    createHistogram: ignore,
    createUpDownCounter: ignore,
    createGauge: (name: string) => ({
      set: (value: number, tags: MetricTags = {}) => gauges.set(key(name, tags), value),
    }),
    withTags: () => meter,
  } as unknown as MetricMeter;
  return { meter, gauge: (name, tags) => gauges.get(key(name, tags)) };
}

const detailsOf = async (handle: { query<R>(name: string): Promise<R> }) =>
  (await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata')).currentDetails ?? '';

let hub: AzureIotHubDouble;
/** A hub with room to spare, for the target whose own daily budget runs out first. */
let roomyHub: AzureIotHubDouble;
let harness: SyncHarness;
const kite = new MemoryKite();
const metrics = recordingMeter();

function azureTarget(name: string, on: AzureIotHubDouble, extra: Record<string, unknown> = {}) {
  const config = parseAzureTargetConfig(
    {
      connectionString: on.serviceConnectionString,
      serviceUrl: on.serviceUrl,
      deviceHost: on.deviceHost,
      ca: on.ca,
      maxConnections: 1,
      ...extra,
    },
    name
  );
  return createAzureTarget(config, { logger: createLogger({}, { level: 'error' }), now: () => on.clock.now() });
}

beforeAll(async () => {
  // 3 billed messages a day: three SIMs' first records fit, the other two wait for the next UTC day.
  hub = await AzureIotHubDouble.start({ limits: { dailyMessages: 3 } });
  roomyHub = await AzureIotHubDouble.start();
  harness = await startSyncHarness({
    kite,
    // `azure`: the hub's quota runs out (the connector's budget is the S1 default, 400,000).
    // `azure-budget`: the connector's own budget of 3 runs out; the hub would take 400,000.
    targets: [azureTarget('azure', hub), azureTarget('azure-budget', roomyHub, { dailyMessageBudget: 3 })],
    onOutcomes: metricsHooks(createConnectorMetrics(metrics.meter)).onOutcomes,
  });
}, 60_000);
afterAll(async () => {
  await harness?.close();
  await hub?.stop();
  await roomyHub?.stop();
});

const status = (group: string, json = false) => cliStatus(harness.taskQueue, group, json);

test('a spent daily quota pauses the target until 00:00 UTC; status, details and metrics say so; the next day publishes the rest', async () => {
  const group = uniqueName('quota');
  const iccs = kite.addSims(group, 5);
  const handle = await harness.start(group, { targets: ['azure'] });
  const first = await harness.waitForCycles(handle, 1, 90_000);

  // The cycle completes (it does not retry until midnight): 3 published, 2 pending, paused until 00:00 UTC.
  const midnight = nextUtcMidnight(hub.clock.now());
  const midnightText = new Date(midnight).toISOString().slice(0, 10) + ' 00:00:00 UTC';
  expect(first.lastCycle).toMatchObject({ outcome: 'completed' });
  expect(first.lastCycle!.targets.azure).toMatchObject({ published: 3, pending: 2, pausedUntil: midnight });
  // The hub refused: the reason names the hub's quota, not the connector's own budget (which has 399,997 left).
  const reason = first.lastCycle!.targets.azure.pauseReason!;
  expect(reason).toMatch(/^hub localhost refused with 403002 IotHubQuotaExceeded: the hub's own daily message quota/);
  expect(reason).not.toMatch(/budget/);

  const text = await status(group);
  expect(text).toMatch(new RegExp(`^paused +azure until ${midnightText} \\(hub localhost refused with 403002`, 'm'));
  const report = JSON.parse(await status(group, true)) as { paused: Record<string, { until: string }> };
  expect(report.paused).toEqual({ azure: { until: new Date(midnight).toISOString(), reason } });
  expect(await detailsOf(handle)).toContain(`**Target paused:** azure until ${midnightText} (hub localhost refused`);
  const gauge = (cause: string) => metrics.gauge(METRIC_NAMES.targetPausedUntil, { group, target: 'azure', cause });
  expect(gauge('hub-quota')).toBe(midnight / 1000);
  expect(gauge('daily-budget')).toBeUndefined();

  // Still the same day: a cycle sends nothing and stays paused.
  const billed = hub.billedMessagesTotal;
  await handle.signal(syncNowSignal);
  const second = await harness.waitForCycles(handle, 2, 60_000);
  expect(second.lastCycle!.targets.azure).toMatchObject({ published: 0, pending: 2, pausedUntil: midnight });
  expect(hub.billedMessagesTotal).toBe(billed);

  // The next UTC day: the rest goes out, the pause is gone everywhere, nothing was lost.
  hub.advanceToNextUtcDay();
  await handle.signal(syncNowSignal);
  const third = await harness.waitForCycles(handle, 3, 60_000);
  expect(third.lastCycle!.targets.azure).toMatchObject({ published: 2, pending: 0 });
  expect(third.lastCycle!.targets.azure.pausedUntil).toBeUndefined();
  expect(await status(group)).not.toMatch(/^paused/m);
  expect(JSON.parse(await status(group, true))).toMatchObject({ paused: {} });
  expect(await detailsOf(handle)).not.toContain('Target paused');
  expect(gauge('hub-quota')).toBe(0);
  for (const icc of iccs) expect(hub.reported(icc, 'kite')).toMatchObject({ iccid: icc });
}, 240_000);

test("the connector's own daily budget spent: status and metrics name that budget, not the hub's quota", async () => {
  const group = uniqueName('budget');
  const iccs = kite.addSims(group, 5);
  const handle = await harness.start(group, { targets: ['azure-budget'] });
  const first = await harness.waitForCycles(handle, 1, 90_000);

  const midnight = nextUtcMidnight(roomyHub.clock.now());
  expect(first.lastCycle!.targets['azure-budget']).toMatchObject({ published: 3, pending: 2, pausedUntil: midnight });
  const reason = first.lastCycle!.targets['azure-budget'].pauseReason!;
  expect(reason).toMatch(
    /^the connector's daily message budget for hub localhost is spent \(dailyMessageBudget: 3 messages.*the hub did not refuse anything/
  );
  expect(reason).not.toMatch(/403002|IotHubQuotaExceeded/);
  // The hub never refused a thing: no 403 at all.
  expect(roomyHub.restLog.filter((e) => e.status === 403)).toEqual([]);
  expect(roomyHub.billedMessagesToday()).toBe(3);

  expect(await status(group)).toMatch(/^paused +azure-budget until .* \(the connector's daily message budget/m);
  const report = JSON.parse(await status(group, true)) as { paused: Record<string, { reason: string }> };
  expect(report.paused['azure-budget'].reason).toBe(reason);
  const gauge = (cause: string) =>
    metrics.gauge(METRIC_NAMES.targetPausedUntil, { group, target: 'azure-budget', cause });
  expect(gauge('daily-budget')).toBe(midnight / 1000);
  expect(gauge('hub-quota')).toBeUndefined();

  roomyHub.advanceToNextUtcDay();
  await handle.signal(syncNowSignal);
  const second = await harness.waitForCycles(handle, 2, 60_000);
  expect(second.lastCycle!.targets['azure-budget']).toMatchObject({ published: 2, pending: 0 });
  expect(gauge('daily-budget')).toBe(0);
  for (const icc of iccs) expect(roomyHub.reported(icc, 'kite')).toMatchObject({ iccid: icc });
}, 240_000);
