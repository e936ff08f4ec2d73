import { readFileSync } from 'node:fs';
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
    expect(await pagesOf(none)).toEqual([{ startIndex: 0, nextIndex: 0, sims: [], last: true }]);
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
    client = clientOf(sim, { pageSize: 10, timeoutMs: 300, retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } });
    expected = sim.control.iccs();
  });
  afterEach(() => sim.control.clearFaults());
  afterAll(async () => {
    client.close();
    await sim.close();
  });

  it.each<FaultKind>(['rate-limit', 'overload', 'server-error', 'malformed-json', 'truncated', 'hang'])(
    '%s is retried to success with nothing lost or repeated',
    async (kind) => {
      const before = sim.control.stats().faultsInjected;
      sim.control.setFaults({ sequence: ['ok', kind, kind] }); // the second page fails twice
      const sims = await allSims(client);
      expect(sims.map((s) => s.icc)).toEqual(expected);
      expect(sim.control.stats().faultsInjected - before).toBe(2);
    }
  );

  it('gives up after maxAttempts with Kite code and text, and a resume from the cursor loses nothing', async () => {
    sim.control.setFaults({ sequence: ['ok', 'overload', 'overload', 'overload'] });
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
    expect(err).toMatchObject({ code: 'SVR.1006', status: 503, retryable: true });
    expect(err.text).toMatch(/overloaded/);
    expect(cursor).toBe(10);
    seen.push(...(await allSims(client, cursor)).map((s) => s.icc as string));
    expect(seen).toEqual(expected);
  });

  it('ends latency beyond the timeout in a TIMEOUT error after maxAttempts', async () => {
    sim.control.setFaults({ latencyMs: 300 });
    const impatient = clientOf(sim, { timeoutMs: 100, retry: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 1 } });
    const err = await failure(impatient.listPage(0));
    impatient.close();
    expect(err).toMatchObject({ code: 'TIMEOUT', status: 0, retryable: true });
    expect(err.message).toMatch(/no complete answer within 100 ms/);
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
    client = clientOf(sim, { pageSize: 10, retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } });
    expected = sim.control.iccs();
  });
  afterEach(() => sim.control.clearFaults());
  afterAll(async () => {
    client.close();
    await sim.close();
  });

  it.each<FaultKind>(['empty-200', 'no-content', 'error-200', 'html', 'short-page'])(
    'a %s answer for a middle page is not the end of the list: nothing is lost',
    async (kind) => {
      sim.control.setFaults({ sequence: ['ok', kind] });
      const sims = await allSims(client);
      expect(sims.map((s) => s.icc)).toEqual(expected);
    }
  );

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

  it("counts a presence answer that is not JSON as the SIM's failure, after retries", async () => {
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
