import { readFileSync } from 'node:fs';
import net from 'node:net';
import { isInGroup, KiteApiError, KiteClient, mapSim, type KitePage } from '../../kite';
import { parseKiteError } from '../../kite/errors';
import type { FaultKind, KiteSimulator } from '../../simulator';
import { allSims, clientOf, quiet, simulator } from './helpers';

async function pagesOf(client: KiteClient, from = 0): Promise<KitePage[]> {
  const pages: KitePage[] = [];
  for await (const page of client.pages(from)) pages.push(page);
  return pages;
}

async function failure(promise: Promise<unknown>): Promise<KiteApiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e
  );
  if (!(err instanceof KiteApiError)) throw new Error(`expected a KiteApiError, got ${String(err)}`);
  return err;
}

/** Pages from the start until a failure; returns the SIMs listed, the cursor to resume from and the failure. */
async function pagesUntilFailure(client: KiteClient): Promise<{ seen: string[]; cursor: number; err: KiteApiError }> {
  const seen: string[] = [];
  let cursor = 0;
  const err = await failure(
    (async () => {
      for await (const page of client.pages(0)) {
        seen.push(...page.sims.map((s) => s.icc as string));
        cursor = page.nextIndex;
      }
    })()
  );
  return { seen, cursor, err };
}

describe('KiteClient paging', () => {
  let sim: KiteSimulator;
  let client: KiteClient;
  beforeAll(async () => {
    sim = await simulator({ groups: ['fleet-a', 'fleet-b'], simsPerGroup: 10 }); // 20 SIMs
    client = clientOf(sim, { pageSize: 10 });
  });
  afterAll(async () => {
    client.close();
    await sim.close();
  });

  it('pages an exact multiple of the page size and ends with an empty last page', async () => {
    const pages = await pagesOf(client);
    expect(pages.map((p) => [p.startIndex, p.sims.length, p.last])).toEqual([
      [0, 10, false],
      [10, 10, false],
      [20, 0, true],
    ]);
    expect(pages.flatMap((p) => p.sims.map((s) => s.icc))).toEqual(sim.control.iccs());
  });

  it('stops at a last page short by one', async () => {
    const short = clientOf(sim, { pageSize: 7 }); // 20 = 7 + 7 + 6
    const pages = await pagesOf(short);
    short.close();
    expect(pages.map((p) => [p.sims.length, p.last])).toEqual([
      [7, false],
      [7, false],
      [6, true],
    ]);
  });

  it('resumes from a cursor without skipping or repeating', async () => {
    const first = (await pagesOf(client))[0];
    const rest = await allSims(client, first.nextIndex);
    expect([...first.sims, ...rest].map((s) => s.icc)).toEqual(sim.control.iccs());
  });

  it('handles an empty group, by supervisionGroup and by search', async () => {
    sim.control.moveToGroup(sim.control.iccs('fleet-b'), null);
    try {
      const sims = await allSims(client);
      expect(sims).toHaveLength(20);
      expect(sims.filter((s) => isInGroup(s, 'fleet-b'))).toHaveLength(0);
      expect(sims.filter((s) => isInGroup(s, 'fleet-a'))).toHaveLength(10);
    } finally {
      sim.control.moveToGroup(sim.control.iccs(null), 'fleet-b');
    }
    const none = clientOf(sim, { groupFilter: { type: 'search', params: { customField_1: 'no-such-fleet' } } });
    const pages = (await pagesOf(none)).map(({ startIndex, nextIndex, sims, last }) => ({
      startIndex,
      nextIndex,
      sims,
      last,
    }));
    expect(pages).toEqual([{ startIndex: 0, nextIndex: 0, sims: [], last: true }]);
    none.close();
  });

  it('sends search parameters and Kite applies them', async () => {
    const target = sim.control.iccs()[3];
    sim.control.setSim(target, { customField1: 'fleet-x' });
    const search = clientOf(sim, { groupFilter: { type: 'search', params: { customField_1: 'fleet-x' } } });
    const sims = await allSims(search);
    search.close();
    expect(sims.map((s) => s.icc)).toEqual([target]);
    expect(isInGroup(sims[0], 'x', { type: 'search', params: { customField_1: 'fleet-x' } })).toBe(true);
  });

  it('clamps the page size to 100 on v6', async () => {
    const v6 = clientOf(sim, { apiVersion: 6, pageSize: 1000 });
    expect(v6.pageSize).toBe(100);
    expect(await v6.listPage(0, 5000)).toHaveLength(20);
    v6.close();
  });

  it('returns presence detail, and raises SVC.1006 for a SIM Kite does not know (the caller decides)', async () => {
    const icc = sim.control.iccs()[0];
    expect(await client.getPresence(icc)).toEqual(sim.control.getPresence(icc));
    expect(await failure(client.getPresence('8934000000000000000'))).toMatchObject({ code: 'SVC.1006', status: 404 });
  });
});

describe('KiteClient TLS', () => {
  let sim: KiteSimulator;
  beforeAll(async () => {
    sim = await simulator({ groups: 1, simsPerGroup: 3 });
  });
  afterAll(() => sim.close());

  it('is refused without a client certificate, with a non-retryable TLS error', async () => {
    const anonymous = new KiteClient({ baseUrl: sim.baseUrl, ca: sim.tls.ca, requestsPerSecond: 0, logger: quiet });
    const err = await failure(anonymous.listPage(0));
    anonymous.close();
    expect(err).toMatchObject({ code: 'TLS', retryable: false, status: 0 });
    expect(sim.control.stats().requests.list).toBe(0);
  });

  it('lets anonymous clients in when the simulator runs without mTLS', async () => {
    const open = await simulator({ groups: 1, simsPerGroup: 2, mtls: false });
    const anonymous = new KiteClient({ baseUrl: open.baseUrl, ca: open.tls.ca, requestsPerSecond: 0, logger: quiet });
    expect(await allSims(anonymous)).toHaveLength(2);
    anonymous.close();
    await open.close();
  });

  it('connects with a PFX and its password', async () => {
    const client = clientOf(sim, { cert: undefined, key: undefined, pfx: sim.tls.pfx, passphrase: sim.tls.passphrase });
    expect(await allSims(client)).toHaveLength(3);
    client.close();
  });

  it('names a wrong PFX password without revealing it', () => {
    const wrong = 'not-the-password-42';
    const make = () => new KiteClient({ pfx: readFileSync(sim.tls.pfxFile), passphrase: wrong, logger: quiet });
    expect(make).toThrow(/client certificate could not be loaded/);
    expect(make).not.toThrow(new RegExp(wrong));
  });

  it('refuses a baseUrl that already names the Inventory path', () => {
    expect(() => new KiteClient({ baseUrl: `${sim.baseUrl}/Inventory/v13/r12` })).toThrow(/apiVersion/);
  });
});

describe('KiteClient faults', () => {
  let sim: KiteSimulator;
  let client: KiteClient;
  let expected: string[];
  beforeAll(async () => {
    sim = await simulator({ groups: 1, simsPerGroup: 25 });
    client = clientOf(sim, { pageSize: 10, timeoutMs: 300 });
    expected = sim.control.iccs();
  });
  afterEach(() => sim.control.clearFaults());
  afterAll(async () => {
    client.close();
    await sim.close();
  });

  it.each<[FaultKind, string]>([
    ['overload', 'SVR.1006'],
    ['server-error', 'SVR.1000'],
    ['malformed-json', 'BAD_RESPONSE'],
    ['truncated', 'BAD_RESPONSE'],
    ['hang', 'TIMEOUT'],
  ])(
    '%s fails the call at once, retryable (Temporal retries the activity): a resume from the cursor loses nothing and repeats nothing',
    async (kind, code) => {
      const before = sim.control.stats().requests.list;
      sim.control.setFaults({ sequence: ['ok', kind, kind] }); // the second page would fail twice
      const { seen, cursor, err } = await pagesUntilFailure(client);
      expect(err).toMatchObject({ code, retryable: true });
      expect(err.message).toMatch(/sim\?startIndex=10\b/);
      expect(sim.control.stats().requests.list - before).toBe(2); // the second page was asked for once
      expect(cursor).toBe(10);
      sim.control.clearFaults();
      seen.push(...(await allSims(client, cursor)).map((s) => s.icc as string));
      expect(seen).toEqual(expected);
    }
  );

  it("keeps Kite's code and text in the failure", async () => {
    sim.control.setFaults({ sequence: ['ok', 'overload'] });
    const { err } = await pagesUntilFailure(client);
    expect(err).toMatchObject({ code: 'SVR.1006', status: 503, retryable: true });
    expect(err.text).toMatch(/overloaded/);
  });

  it("re-sends a request refused with 429 after Kite's Retry-After, up to rateLimitRetries times", async () => {
    const before = sim.control.requestLog().length;
    sim.control.setFaults({ sequence: ['rate-limit', 'rate-limit'] });
    expect(await client.listPage(0)).toHaveLength(10); // the third send is answered
    let sends = sim.control.requestLog().slice(before);
    expect(sends).toHaveLength(3);
    for (let i = 1; i < sends.length; i++) expect(sends[i].at - sends[i - 1].at).toBeGreaterThanOrEqual(950); // Retry-After: 1

    const once = clientOf(sim, { rateLimitRetries: 1 });
    const start = sim.control.requestLog().length;
    sim.control.setFaults({ sequence: ['rate-limit', 'rate-limit', 'rate-limit'] });
    const err = await failure(once.listPage(0));
    once.close();
    expect(err).toMatchObject({ code: 'POL.1005', status: 429, retryable: true });
    sends = sim.control.requestLog().slice(start);
    expect(sends).toHaveLength(2); // the first send and one re-send: the third 429 is never asked for
  });

  it('refuses a rateLimitRetries that is not a whole number >= 0', () => {
    expect(() => clientOf(sim, { rateLimitRetries: -1 })).toThrow(/rateLimitRetries must be an integer >= 0/);
  });

  it('ends latency beyond the timeout in a TIMEOUT error at once', async () => {
    const before = sim.control.stats().requests.list;
    sim.control.setFaults({ latencyMs: 300 });
    const impatient = clientOf(sim, { timeoutMs: 100 });
    const err = await failure(impatient.listPage(0));
    impatient.close();
    expect(err).toMatchObject({ code: 'TIMEOUT', status: 0, retryable: true });
    expect(err.message).toMatch(/no complete answer within 100 ms/);
    expect(sim.control.stats().requests.list - before).toBe(1);
  });

  it('tells a kept-alive connection closed under one request (DISCONNECTED) from Kite unreachable (NETWORK)', async () => {
    const icc = expected[0];
    const one = clientOf(sim, { maxSockets: 1 });
    expect(await one.getPresence(icc)).toBeDefined(); // the connection is now kept alive
    sim.control.setFaults({ sequence: ['reset'] });
    const err = await failure(one.getPresence(icc));
    expect(err).toMatchObject({ code: 'DISCONNECTED', status: 0, retryable: true });
    expect(err.text).toMatch(/kept-alive connection closed before Kite answered/);
    expect(await one.getPresence(icc)).toBeDefined(); // a new connection: Kite is there
    one.close();

    // A port nothing listens on: no connection at all.
    const free = net.createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as net.AddressInfo).port;
    await new Promise((resolve) => free.close(resolve));
    const gone = clientOf(sim, { baseUrl: `https://127.0.0.1:${port}/services/REST/GlobalM2M` });
    const unreachable = await failure(gone.listPage(0));
    gone.close();
    expect(unreachable).toMatchObject({ code: 'NETWORK', retryable: true });
  });

  it('does not retry an authorization failure (403 wins over its POL code)', async () => {
    const before = sim.control.stats().requests.list;
    sim.control.setFaults({ sequence: ['auth'] });
    const err = await failure(client.listPage(0));
    expect(err).toMatchObject({ code: 'POL.1000', status: 403, retryable: false });
    expect(sim.control.stats().requests.list - before).toBe(1);
  });

  it('raises an unsupported search (SVR.1003) at once, with Kite code and text', async () => {
    const before = sim.control.stats().requests.list;
    const search = clientOf(sim, { groupFilter: { type: 'search', params: { stalledDays: '3' } } });
    const err = await failure(search.listPage(0));
    search.close();
    expect(err).toMatchObject({ code: 'SVR.1003', status: 501, retryable: false });
    expect(err.message).toMatch(/stalledDays is not implemented/);
    expect(sim.control.stats().requests.list - before).toBe(1);
  });

  it('broken SIMs are rejected one by one and the others still map', async () => {
    const icc = expected[4];
    const reason = sim.control.breakSim(icc, 'bad-date');
    const results = (await allSims(client)).map((s) => mapSim(s));
    sim.control.resetSim(icc);
    expect(results.filter((r) => !r.ok)).toEqual([{ ok: false, reason }]);
    expect(reason).toBe('bad-date:activationDate');
  });
});

describe('KiteClient refuses what is not an inventory', () => {
  let sim: KiteSimulator;
  let client: KiteClient;
  let expected: string[];
  beforeAll(async () => {
    sim = await simulator({ groups: 1, simsPerGroup: 25 });
    client = clientOf(sim, { pageSize: 10 });
    expected = sim.control.iccs();
  });
  afterEach(() => sim.control.clearFaults());
  afterAll(async () => {
    client.close();
    await sim.close();
  });

  it.each<[FaultKind, string]>([
    ['empty-200', 'BAD_RESPONSE'],
    ['no-content', 'BAD_RESPONSE'],
    ['error-200', 'SVR.1006'],
    ['html', 'BAD_RESPONSE'],
  ])(
    'a %s answer for a middle page is not the end of the list: the listing fails (%s, retryable) and a resume from the cursor loses nothing',
    async (kind, code) => {
      sim.control.setFaults({ sequence: ['ok', kind] });
      const { seen, cursor, err } = await pagesUntilFailure(client);
      expect(err).toMatchObject({ code, retryable: true });
      expect(cursor).toBe(10);
      seen.push(...(await allSims(client, cursor)).map((s) => s.icc as string));
      expect(seen).toEqual(expected);
    }
  );

  it('a short answer for a middle page is read once more: nothing is lost', async () => {
    const before = sim.control.stats().requests.list;
    sim.control.setFaults({ sequence: ['ok', 'short-page'] });
    const sims = await allSims(client);
    expect(sims.map((s) => s.icc)).toEqual(expected);
    // Pages 0, 10 (short), 15 (more follow), 10 again, 20 (the last, short), 25 (nothing follows).
    expect(sim.control.stats().requests.list - before).toBe(6);
  });

  it.each<[FaultKind, string]>([
    ['empty-200', 'BAD_RESPONSE'],
    ['no-content', 'BAD_RESPONSE'],
    ['error-200', 'SVR.1006'],
    ['html', 'BAD_RESPONSE'],
  ])('a %s answer that persists fails the listing with %s, never an empty inventory', async (kind, code) => {
    sim.control.setFaults({ rate: 1, kinds: [kind], only: 'list' });
    const err = await failure(allSims(client));
    expect(err.code).toBe(code);
    expect(err.message).toMatch(/sim\?startIndex=0/);
  });

  it('a short page followed by more SIMs, every time, fails with what Kite answered', async () => {
    sim.control.setFaults({ rate: 1, kinds: ['short-page'], only: 'list' });
    const err = await failure(allSims(client));
    expect(err).toMatchObject({ code: 'BAD_RESPONSE' });
    expect(err.text).toMatch(/short page of 5 SIMs at startIndex 0 .*followed by/);
  });

  it('stops at once when Kite ignores startIndex, instead of paging forever', async () => {
    const before = sim.control.stats().requests.list;
    sim.control.setFaults({ rate: 1, kinds: ['ignore-start-index'], only: 'list' });
    const err = await failure(allSims(client));
    expect(err).toMatchObject({ code: 'REPEATED_SIMS', retryable: false });
    expect(err.text).toMatch(/startIndex/);
    expect(sim.control.stats().requests.list - before).toBeLessThanOrEqual(3);
  }, 10_000);

  it('stops at the paging ceiling the caller derives from the known inventory', async () => {
    const err = await failure(
      (async () => {
        for await (const page of client.pages(0, { maxPages: 2 })) void page;
      })()
    );
    expect(err).toMatchObject({ code: 'TOO_MANY_PAGES', retryable: false });
    expect(err.text).toMatch(/more than 2 pages/);
  });

  it('cuts an endless body at the response limit and names the limit', async () => {
    const limited = clientOf(sim, { maxResponseBytes: 256 * 1024 });
    sim.control.setFaults({ sequence: ['endless'] });
    const err = await failure(limited.listPage(0));
    expect(err).toMatchObject({ code: 'TOO_LARGE', retryable: false });
    expect(err.text).toMatch(/262144 bytes.*maxResponseBytes/);
    sim.control.clearFaults();
    expect(await limited.listPage(0)).toHaveLength(25); // a normal page fits
    limited.close();
  });

  it('calls onWaiting while a slow request is in flight, so the caller can heartbeat', async () => {
    sim.control.setFaults({ latencyMs: 2_500, only: 'list' });
    const patient = clientOf(sim, { timeoutMs: 10_000 });
    let beats = 0;
    const sims = await patient.listPage(0, 10, { onWaiting: () => beats++ });
    patient.close();
    expect(sims).toHaveLength(10);
    expect(beats).toBeGreaterThanOrEqual(2);
  });

  it("counts a presence answer that is not JSON as the SIM's failure, at once", async () => {
    const icc = expected[3];
    sim.control.setFaults({ presenceBySim: { [icc]: 'html' } });
    expect(await failure(client.getPresence(icc))).toMatchObject({ code: 'BAD_RESPONSE' });
    expect(await client.getPresence(expected[4])).toEqual(sim.control.getPresence(expected[4]));
  });
});

describe('parseKiteError', () => {
  it('reads category and id, a code in the text, and falls back to the HTTP status', () => {
    const body = (o: unknown) => JSON.stringify(o);
    expect(parseKiteError(404, body({ ClientException: { exceptionCategory: 'SVC', exceptionId: '1006', text: 'Sim icc:1 not found' } }))).toMatchObject({ code: 'SVC.1006', retryable: false, text: 'Sim icc:1 not found' }); // prettier-ignore
    expect(parseKiteError(500, body({ ServerException: { text: 'SVR.1006: system overloaded' } }))).toMatchObject({ code: 'SVR.1006', retryable: true }); // prettier-ignore
    expect(parseKiteError(502, '<html>Bad gateway</html>')).toMatchObject({ code: 'HTTP_502', retryable: true });
    expect(parseKiteError(400, '')).toMatchObject({ code: 'HTTP_400', retryable: false, text: 'HTTP 400' });
  });

  it('recognises a Kite error body with either field alone', () => {
    const body = (o: unknown) => JSON.stringify({ ClientException: o });
    expect(parseKiteError(404, body({ exceptionId: 'SVC.1006', text: 'Resource not found' }))).toMatchObject({ code: 'SVC.1006', retryable: false }); // prettier-ignore
    expect(parseKiteError(404, body({ exceptionId: '1006', text: 'Resource not found' }))).toMatchObject({ code: 'SVC.1006' }); // prettier-ignore
    expect(parseKiteError(503, JSON.stringify({ ServerException: { exceptionId: 1006 } }))).toMatchObject({ code: 'SVR.1006', retryable: true }); // prettier-ignore
    expect(parseKiteError(400, body({ exceptionCategory: 'SVC', text: 'Invalid value' }))).toMatchObject({ code: 'SVC', retryable: false }); // prettier-ignore
    expect(parseKiteError(200, body({ exceptionCategory: 'SVR', exceptionId: '1006' }))).toMatchObject({ code: 'SVR.1006', retryable: true }); // prettier-ignore
  });
});
