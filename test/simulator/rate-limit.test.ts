/**
 * The simulator's account budget, as strict as Kite's: requests beyond about N/s per account (client
 * certificate) answer 429 POL.1005 with a Retry-After, counted over every connection; admitted requests take the
 * configured latency. Real HTTPS with mTLS, one new connection per request.
 */
import https from 'node:https';
import { KiteApiError } from '../../kite';
import type { KiteSimulator } from '../../simulator';
import { TokenBucket } from '../../shared/limits';
import { AccountBudgets } from '../../simulator/rate-limit';
import { clientOf, simulator } from '../kite/helpers';

const LIST = '/services/REST/GlobalM2M/Inventory/v13/r12/sim?startIndex=0&maxBatchSize=1';

/** One GET on a new connection; status, Retry-After and body. */
function get(sim: KiteSimulator, agent = 'test'): Promise<{ status: number; retryAfter?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${sim.url}${LIST}`, {
      ca: sim.tls.ca,
      cert: sim.tls.cert,
      key: sim.tls.key,
      agent: false,
      headers: { 'user-agent': agent },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          retryAfter: res.headers['retry-after'] as string | undefined,
          body: Buffer.concat(chunks).toString('utf8'),
        })
      );
    });
    req.end();
  });
}

describe('Kite simulator account budget', () => {
  let sim: KiteSimulator;
  afterEach(() => sim?.close());

  it('answers 429 POL.1005 with Retry-After beyond the budget, over all connections of the account', async () => {
    sim = await simulator({ groups: 1, simsPerGroup: 5, rateLimit: { perSecond: 1, burst: 2 } });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => get(sim, `client-${i % 3}`)));

    const log = sim.control.requestLog();
    const seconds = (log[log.length - 1].at - log[0].at) / 1000; // TLS handshakes spread the arrivals
    const admitted = answers.filter((a) => a.status === 200).length;
    const refused = answers.filter((a) => a.status === 429);
    expect(admitted).toBeGreaterThanOrEqual(2); // the burst
    expect(admitted).toBeLessThanOrEqual(2 + Math.floor(seconds));
    expect(refused).toHaveLength(12 - admitted);
    for (const a of refused) {
      expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(a.body)).toEqual({
        ClientException: {
          exceptionCategory: 'POL',
          exceptionId: '1005',
          text: 'Request rate per period control not pass.',
        },
      });
    }
    expect(sim.control.stats().rateLimit).toMatchObject({ perSecond: 1, burst: 2, admitted, limited: 12 - admitted });
    expect(log.map((e) => e.status).sort()).toEqual(answers.map((a) => a.status).sort());
  });

  it('admits a client that keeps to the budget, and counts its peak per second', async () => {
    sim = await simulator({ groups: 1, simsPerGroup: 5, rateLimit: { perSecond: 4, burst: 2 } });
    const budget = new TokenBucket({ perSecond: 4 });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      await budget.take();
      statuses.push((await get(sim)).status);
    }
    expect(statuses).toEqual(Array(10).fill(200));
    const { peakPerSecond, limited } = sim.control.stats().rateLimit;
    expect(limited).toBe(0);
    expect(peakPerSecond).toBeGreaterThanOrEqual(4);
    expect(peakPerSecond).toBeLessThanOrEqual(6); // rate + burst
  });

  it("the Kite client reads it as a retryable POL.1005 with Kite's Retry-After", async () => {
    sim = await simulator({ groups: 1, simsPerGroup: 5, rateLimit: { perSecond: 1, burst: 1 } });
    await get(sim); // spends the only token
    const client = clientOf(sim, { rateLimitRetries: 0 });
    const error = await client.listPage(0).catch((e: unknown) => e);
    client.close();

    expect(error).toBeInstanceOf(KiteApiError);
    expect(error).toMatchObject({ code: 'POL.1005', status: 429, retryable: true, retryAfterSec: 1 });
  });

  it('takes a new budget from the moment it is set: unlimited, then 1/s', async () => {
    sim = await simulator({ groups: 1, simsPerGroup: 5 });
    const unlimited = await Promise.all(Array.from({ length: 6 }, () => get(sim)));
    expect(unlimited.map((a) => a.status)).toEqual(Array(6).fill(200));

    sim.control.setRateLimit({ perSecond: 1, burst: 1 });
    const limited = await Promise.all(Array.from({ length: 8 }, () => get(sim)));
    const log = sim.control.requestLog().slice(6);
    const seconds = (log[log.length - 1].at - log[0].at) / 1000;
    const admitted = limited.filter((a) => a.status === 200).length;
    expect(admitted).toBeGreaterThanOrEqual(1);
    expect(admitted).toBeLessThanOrEqual(1 + Math.floor(seconds));
    expect(sim.control.stats().rateLimit).toMatchObject({ perSecond: 1, burst: 1, admitted: 6 + admitted });
  });

  it('delays every admitted request by the configured latency; the budget is unlimited by default', async () => {
    sim = await simulator({ groups: 1, simsPerGroup: 5, latencyMs: 300 });
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 10 }, () => get(sim)));

    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(sim.control.stats().rateLimit).toMatchObject({ perSecond: 0, limited: 0, admitted: 10 });
  });
});

describe('the account budget at scale (in process, a fake clock)', () => {
  test('the request log keeps the last 100,000 requests in order, and the peak per second is exact', () => {
    let now = 0;
    const budgets = new AccountBudgets({ perSecond: 0 }, () => now);
    const total = 100_000 + 5;
    for (let i = 0; i < total; i++) {
      now = Math.floor(i / 10); // 10 requests per ms: 10,000 per second
      budgets.take('account', `/r${i}`);
    }
    const log = budgets.requestLog();
    expect(log).toHaveLength(100_000);
    expect(log[0].path).toBe('/r5');
    expect(log[log.length - 1].path).toBe(`/r${total - 1}`);
    expect(log.every((entry, i) => i === 0 || entry.at >= log[i - 1].at)).toBe(true);
    expect(budgets.snapshot().peakPerSecond).toBe(10_000);
  });
});
