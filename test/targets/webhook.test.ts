/**
 * The webhook target against a local node:http receiver that verifies signatures the way the target's
 * documentation tells receivers to, and answers with scripted statuses.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseTargetConfig, type WebhookTargetConfig } from '../../targets/config';
import { parseRetryAfter } from '../../shared/limits';
import type { SimEvent } from '../../record';
import type { EventItem, PublishItem } from '../../targets/target';
import { WebhookTarget } from '../../targets/webhook';
import { freePort } from '../setup/processes';
import { fullItem, patchItem, quietLogger, sampleRecord } from './fixtures';

const SECRET = 'whsec-test-0123456789abcdef';

interface Delivery {
  at: number;
  headers: http.IncomingHttpHeaders;
  raw: string;
  body: { target: string; group?: string; deliveryId: string; items: PublishItem[]; events?: unknown[] };
  signatureValid: boolean;
}

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Never answer (to test the timeout). */
  hang?: boolean;
}

/** What a receiver does: HMAC over "<timestamp>.<raw body>", compared in constant time. */
function verify(headers: http.IncomingHttpHeaders, raw: string): boolean {
  const timestamp = String(headers['x-kite-timestamp']);
  const given = Buffer.from(String(headers['x-kite-signature']));
  const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(`${timestamp}.${raw}`).digest('hex')}`);
  const fresh = Math.abs(Date.now() / 1000 - Number(timestamp)) < 300;
  return fresh && given.length === expected.length && timingSafeEqual(given, expected);
}

let server: http.Server;
let url: string;
let deliveries: Delivery[];
/** Scripted answers, one per request; when empty, 200. */
let answers: Answer[];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString();
      deliveries.push({
        at: Date.now(),
        headers: req.headers,
        raw,
        body: JSON.parse(raw),
        signatureValid: verify(req.headers, raw),
      });
      const answer = answers.shift() ?? { status: 200 };
      if (answer.hang) return;
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/kite`;
});

beforeEach(() => {
  deliveries = [];
  answers = [];
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function webhook(overrides: Record<string, unknown> = {}): WebhookTarget {
  const raw = { type: 'webhook', url, secret: SECRET, ...overrides };
  return new WebhookTarget(parseTargetConfig(raw, 'hook') as WebhookTargetConfig, { logger: quietLogger() });
}

describe('webhook target', () => {
  it('posts signed batches of at most batchSize, and every SIM gets its outcome in order', async () => {
    const items = Array.from({ length: 7 }, () => fullItem(sampleRecord()));
    items[6] = patchItem(items[6].iccid, { ip: null, dailyData: 1.5 });

    const outcomes = await webhook({ batchSize: 3 }).publish(items, undefined, { group: 'fleet-a' });

    expect(outcomes).toEqual(items.map((i) => ({ iccid: i.iccid, status: 'ok' })));
    expect(deliveries.map((d) => d.body.items.length)).toEqual([3, 3, 1]);
    // The body carries each SIM's change (iccid, deviceId, full, patch), not the state the target will hold.
    expect(deliveries.flatMap((d) => d.body.items)).toEqual(
      items.map(({ iccid, deviceId, full, patch }) => ({ iccid, deviceId, full, patch }))
    );
    for (const d of deliveries) {
      expect(d.signatureValid).toBe(true);
      expect(d.headers['content-type']).toBe('application/json');
      expect(d.body).toMatchObject({ target: 'hook', group: 'fleet-a' });
      expect(d.headers['x-kite-delivery']).toBe(d.body.deliveryId);
    }
    // The signature covers the body and the timestamp: changing either breaks it.
    const d = deliveries[0];
    expect(verify(d.headers, d.raw.replace('fleet-a', 'fleet-b'))).toBe(false);
    expect(verify({ ...d.headers, 'x-kite-timestamp': String(Number(d.headers['x-kite-timestamp']) + 1) }, d.raw)).toBe(
      false
    );
  });

  it('posts connectivity events as an events array, signed like every batch, items empty', async () => {
    const event = (iccid: string, type: SimEvent['type']): SimEvent => ({
      id: `${iccid}-${type}`,
      type,
      group: 'fleet-a',
      iccid,
      before: 'a',
      after: 'b',
      at: 1_764_000_000_000,
    });
    const items: EventItem[] = [
      { iccid: '1', deviceId: 'dev-1', events: [event('1', 'imeiChanged'), event('1', 'operatorChanged')] },
      { iccid: '2', deviceId: 'dev-2', events: [event('2', 'leftGroup')] },
    ];
    expect(await webhook({ batchSize: 1 }).publishEvents(items, undefined, { group: 'fleet-a' })).toEqual([
      { iccid: '1', status: 'ok' },
      { iccid: '2', status: 'ok' },
    ]);
    expect(deliveries).toHaveLength(2);
    expect(deliveries.every((d) => d.signatureValid && d.body.items.length === 0)).toBe(true);
    expect(deliveries.flatMap((d) => d.body.events)).toEqual([
      { ...event('1', 'imeiChanged'), deviceId: 'dev-1' },
      { ...event('1', 'operatorChanged'), deviceId: 'dev-1' },
      { ...event('2', 'leftGroup'), deviceId: 'dev-2' },
    ]);
  });

  it('by default POSTs a batch once per call: a 5xx or a 429 is left to the next attempt, after Retry-After', async () => {
    answers = [{ status: 503 }, { status: 429, headers: { 'retry-after': '1' } }];
    const target = webhook();
    const item = fullItem(sampleRecord());

    expect(await target.publish([item])).toEqual([{ iccid: item.iccid, status: 'retryable', reason: expect.stringMatching(/503/) }]); // prettier-ignore
    expect(await target.publish([item])).toEqual([
      { iccid: item.iccid, status: 'throttled', retryAfterMs: 1000, reason: expect.stringMatching(/429/) },
    ]);
    expect(deliveries).toHaveLength(2);
    // The 429 paused the URL's budget: the next call, even at once, waits for the Retry-After.
    expect(await target.publish([item])).toEqual([{ iccid: item.iccid, status: 'ok' }]);
    expect(deliveries).toHaveLength(3);
    expect(deliveries[2].at - deliveries[1].at).toBeGreaterThanOrEqual(950);
  });

  it('with maxAttempts > 1, honours Retry-After on 429 before retrying, and keeps the delivery id', async () => {
    answers = [{ status: 429, headers: { 'retry-after': '1' } }];
    const item = fullItem(sampleRecord());

    expect(await webhook({ maxAttempts: 2 }).publish([item])).toEqual([{ iccid: item.iccid, status: 'ok' }]);
    expect(deliveries).toHaveLength(2);
    expect(deliveries[1].at - deliveries[0].at).toBeGreaterThanOrEqual(990);
    expect(deliveries[1].body.deliveryId).toBe(deliveries[0].body.deliveryId);
    expect(deliveries.every((d) => d.signatureValid)).toBe(true);
  });

  it('retries 5xx with backoff, then gives up as retryable', async () => {
    answers = [{ status: 503 }, { status: 500 }, { status: 502 }];
    const item = fullItem(sampleRecord());

    const [outcome] = await webhook({ maxAttempts: 3 }).publish([item]);
    expect(outcome).toMatchObject({ iccid: item.iccid, status: 'retryable' });
    expect((outcome as { reason: string }).reason).toMatch(/502/);
    expect(deliveries).toHaveLength(3);
  });

  it('returns throttled at once when Retry-After is longer than maxRetryDelayMs', async () => {
    answers = [{ status: 429, headers: { 'retry-after': '120' } }];
    const items = [fullItem(sampleRecord()), fullItem(sampleRecord())];

    const outcomes = await webhook({ maxAttempts: 3, maxRetryDelayMs: 5000 }).publish(items);
    expect(outcomes).toEqual(
      items.map((i) => ({ iccid: i.iccid, status: 'throttled', retryAfterMs: 120_000, reason: expect.any(String) }))
    );
    expect(deliveries).toHaveLength(1);
  });

  it('fails the whole batch as permanent on 400, without retrying', async () => {
    answers = [{ status: 400, body: 'patch.dailyData: expected integer' }];
    const items = [fullItem(sampleRecord()), fullItem(sampleRecord())];

    const outcomes = await webhook().publish(items);
    expect(outcomes.map((o) => o.status)).toEqual(['permanent', 'permanent']);
    expect((outcomes[0] as { reason: string }).reason).toMatch(/400 Bad Request: patch.dailyData: expected integer/);
    expect(deliveries).toHaveLength(1);
  });

  it('only fails the batch that was refused', async () => {
    answers = [{ status: 200 }, { status: 404 }];
    const items = [fullItem(sampleRecord()), fullItem(sampleRecord())];

    const outcomes = await webhook({ batchSize: 1, concurrency: 1 }).publish(items);
    expect(outcomes.map((o) => o.status)).toEqual(['ok', 'permanent']);
  });

  it('reports a receiver that does not answer in time as retryable', async () => {
    answers = [{ status: 0, hang: true }];
    const [outcome] = await webhook({ timeoutMs: 200, maxAttempts: 1 }).publish([fullItem(sampleRecord())]);
    expect(outcome).toMatchObject({ status: 'retryable', reason: expect.stringMatching(/no answer within 200 ms/) });
  });

  it('reports a refused connection as retryable', async () => {
    const closed = `http://127.0.0.1:${await freePort()}/`;
    const [outcome] = await webhook({ url: closed, maxAttempts: 1 }).publish([fullItem(sampleRecord())]);
    expect(outcome).toMatchObject({ status: 'retryable', reason: expect.stringMatching(/ECONNREFUSED/) });
  });

  it('answers every item when cancelled', async () => {
    const items = [fullItem(sampleRecord()), fullItem(sampleRecord())];
    const outcomes = await webhook().publish(items, AbortSignal.abort());
    expect(outcomes.map((o) => [o.iccid, o.status])).toEqual(items.map((i) => [i.iccid, 'retryable']));
    expect(deliveries).toHaveLength(0);
  });
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('2', now)).toBe(2000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});
