/**
 * One retry layer: with the targets' defaults, a webhook batch or a shadow update is sent once per publish
 * attempt, and Temporal's attempts (after the peer's Retry-After) are the only retries. Counted at the peers: a
 * webhook receiver that answers 503, 503, 429 and then 204; moto behind a proxy that answers the first three
 * shadow updates with 503, 429, 503. Before, the webhook posted each batch up to 5 times per attempt and the
 * AWS SDK sent each request up to 3 times. Real workflow, Temporal server, Redis, moto.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseTargetConfig, type AwsTargetConfig, type WebhookTargetConfig } from '../../targets/config';
import { AwsIotTarget } from '../../targets/aws';
import { WebhookTarget } from '../../targets/webhook';
import { startMoto, type MotoServer } from '../setup/moto';
import { MemoryKite } from '../support/memory-kite';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';
import { isShadowRequest, startFaultProxy, type FaultProxy } from '../targets/fault-proxy';
import { quietLogger } from '../targets/fixtures';

const SIMS = 3; // one webhook batch; one shadow update each

let moto: MotoServer;
let proxy: FaultProxy;
let receiver: http.Server;
let posts: number[];
let harness: SyncHarness;
const kite = new MemoryKite();

beforeAll(async () => {
  moto = await startMoto();
  proxy = await startFaultProxy(moto.url);
  const shadowFaults = [503, 429, 503];
  proxy.inject = (req) => {
    if (!isShadowRequest(req) || !shadowFaults.length) return undefined;
    const status = shadowFaults.shift()!;
    const type = status === 429 ? 'ThrottlingException' : 'ServiceUnavailableException';
    return { status, headers: { 'x-amzn-errortype': type, 'retry-after': '1' }, body: '{"message":"injected"}' };
  };
  posts = [];
  const answers = [503, 503, 429];
  receiver = http.createServer((req, res) => {
    req.resume();
    req.once('end', () => {
      posts.push(Date.now());
      const status = answers.shift() ?? 204;
      res.writeHead(status, status === 429 ? { 'retry-after': '1' } : {}).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const hook = new WebhookTarget(
    parseTargetConfig(
      {
        type: 'webhook',
        url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/kite`,
        secret: 'one-retry-layer-secret-0123456789',
      },
      'hook'
    ) as WebhookTargetConfig,
    { logger: quietLogger() }
  );
  const aws = new AwsIotTarget(
    parseTargetConfig(
      {
        type: 'aws',
        region: 'eu-west-1',
        endpoint: proxy.url,
        controlEndpoint: proxy.url,
        credentials: { accessKeyId: 'testing', secretAccessKey: 'testing-secret-key' },
      },
      'aws'
    ) as AwsTargetConfig,
    { logger: quietLogger() }
  );
  harness = await startSyncHarness({ kite, targets: [hook, aws] });
}, 60_000);

afterAll(async () => {
  await harness?.close();
  await proxy?.close();
  await moto?.stop();
  await new Promise((resolve) => receiver?.close(resolve));
});

test('a batch or a shadow update is sent once per publish attempt; Temporal retries it', async () => {
  kite.addSims('layer-fleet', SIMS);
  const handle = await harness.start('layer-fleet');
  const status = await harness.waitForCycles(handle, 1, 120_000);

  expect(status.lastCycle).toMatchObject({ outcome: 'completed', inGroup: SIMS });
  expect(status.lastCycle?.targets).toMatchObject({ hook: { published: SIMS }, aws: { published: SIMS } });
  // Webhook: 503, 503, 429, then 204: four POSTs of the one batch, one per attempt.
  expect(posts).toHaveLength(4);
  expect(posts[3] - posts[2]).toBeGreaterThanOrEqual(950); // the 429's Retry-After, as the next retry delay
  // AWS: three shadow updates refused once each (the first three requests), then every SIM's update once more.
  const shadowUpdates = proxy.seen.filter((r) => r.method === 'POST' && /\/shadow/.test(r.path));
  expect(shadowUpdates).toHaveLength(SIMS + 3);
  const { events } = await handle.fetchHistory();
  const publishAttempts = events!.flatMap((e) => {
    const started = e.activityTaskStartedEventAttributes;
    return started ? [started.attempt ?? 1] : [];
  });
  // The webhook's publish needed 4 attempts, the shadow updates at most 4 (the faults may share attempts).
  expect(Math.max(...publishAttempts)).toBe(4);
  await handle.terminate();
}, 180_000);
