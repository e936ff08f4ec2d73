/**
 * The webhook receiver example of the README, run as it is printed there (a user copies it into receiver.js),
 * against the real webhook target: what the README says a receiver checks is what the target signs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTargetConfig, type WebhookTargetConfig } from '../../targets/config';
import { WebhookTarget, webhookSignature } from '../../targets/webhook';
import { waitUntil } from '../support/wait-until';
import { fullItem, patchItem, quietLogger, sampleRecord } from './fixtures';

const SECRET = 'whsec-readme-0123456789';

/** The ```js block of README.md that starts with `// receiver.js`. */
function readmeReceiver(): string {
  const readme = readFileSync(path.resolve(__dirname, '../../README.md'), 'utf8');
  const match = /```js\n(\/\/ receiver\.js[\s\S]*?)```/.exec(readme);
  if (!match) throw new Error('README.md has no ```js block starting with // receiver.js');
  return match[1];
}

let dir: string;
let receiver: ChildProcess;
let url: string;
let printed: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kite-receiver-'));
  writeFileSync(path.join(dir, 'receiver.js'), readmeReceiver());
  receiver = spawn(process.execPath, ['receiver.js'], {
    cwd: dir,
    env: { PATH: process.env.PATH, WEBHOOK_SECRET: SECRET, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  printed = '';
  let stderr = '';
  receiver.stdout!.on('data', (chunk: Buffer) => (printed += chunk.toString()));
  receiver.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await waitUntil(() => /listening on \d+/.test(stderr), 'the README receiver listens', 30_000);
  url = `http://127.0.0.1:${/listening on (\d+)/.exec(stderr)![1]}/kite`;
});

afterAll(() => {
  receiver?.kill();
  rmSync(dir, { recursive: true, force: true });
});

function webhook(secret: string): WebhookTarget {
  const config = parseTargetConfig({ type: 'webhook', url, secret }, 'hook') as WebhookTargetConfig;
  return new WebhookTarget(config, { logger: quietLogger() });
}

test("the README's receiver accepts the target's signed deliveries and reads their items", async () => {
  const full = fullItem(sampleRecord());
  const patch = patchItem(sampleRecord().iccid, { ip: null, dailyData: 2.5 });
  const outcomes = await webhook(SECRET).publish([full, patch], undefined, { group: 'fleet-a' });
  expect(outcomes).toEqual([
    { iccid: full.iccid, status: 'ok' },
    { iccid: patch.iccid, status: 'ok' },
  ]);
  await waitUntil(() => printed.trim().split('\n').length >= 2, 'the receiver printed both SIMs');
  expect(
    printed
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
  ).toEqual([
    { iccid: full.iccid, full: true, patch: full.patch },
    { iccid: patch.iccid, full: false, patch: { ip: null, dailyData: 2.5 } },
  ]);
});

test("the README's receiver refuses a wrong secret, an altered body and an old timestamp", async () => {
  const item = fullItem(sampleRecord());
  const [outcome] = await webhook('not-the-right-secret-at-all').publish([item]);
  expect(outcome).toMatchObject({ iccid: item.iccid, status: 'permanent', reason: expect.stringMatching(/401/) });

  const post = (body: string, timestamp: number, signedBody = body) =>
    fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-kite-timestamp': String(timestamp),
        'x-kite-signature': webhookSignature(SECRET, String(timestamp), signedBody),
        'x-kite-delivery': `d-${timestamp}-${body.length}`,
      },
      body,
    });
  const body = JSON.stringify({ target: 'hook', deliveryId: 'x', items: [] });
  const now = Math.floor(Date.now() / 1000);
  expect((await post(body, now)).status).toBe(204);
  expect((await post(body.replace('hook', 'evil'), now, body)).status).toBe(401);
  expect((await post(body, now - 3600)).status).toBe(401);
});
