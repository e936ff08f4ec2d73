/**
 * Kite REST client: mutual TLS, paging, presence detail and a client-side rate budget. One instance per Kite
 * account (certificate); safe for concurrent calls, which share the rate budget.
 *
 * One retry layer per concern: a call re-sends a request only after Kite's 429 (POL.1005), to honour its
 * Retry-After (at most `rateLimitRetries` times). Every other failure (5xx, SVR.1006, timeouts, broken answers,
 * network) fails the call at once; Temporal's activity retry is the layer that tries again.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { createLogger, type Logger } from '../shared/log';
import { KiteApiError, kiteException, parseKiteError } from './errors';
import { realClock, TokenBucket, type Clock, type RateBudget } from '../shared/limits';
import { entriesOfSims, splitListAnswer, type KiteEntries, type PageShape } from './entries';
import type { GroupFilter, KitePresence, KiteSim } from './types';

export interface KiteClientOptions {
  /** Up to and including `/services/REST/GlobalM2M`; the client adds `/Inventory/v{n}/r12/...`.
   * @default 'https://m2m-api.telefonica.com:8010/services/REST/GlobalM2M' */
  baseUrl?: string;
  /** Inventory API version `n`. v6 and older cap `maxBatchSize` at 100, later versions at 1000. @default 13 */
  apiVersion?: number;
  /** Client certificate, PEM. Give `cert` + `key`, or `pfx` + `passphrase`. @default undefined */
  cert?: string | Buffer;
  /** Private key of `cert`, PEM. Never logged. @default undefined */
  key?: string | Buffer;
  /** PKCS#12 bundle as Kite support issues it (the file's bytes). @default undefined */
  pfx?: Buffer;
  /** Password of `pfx` (or of an encrypted `key`). Never logged. @default undefined */
  passphrase?: string;
  /** CA certificates to trust for Kite's server, PEM; replaces the system roots. @default the system roots */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Verify Kite's server certificate. Turn off only against a test server. @default true */
  rejectUnauthorized?: boolean;
  /** Request budget shared by all calls, re-sends after a 429 included; 0 or Infinity = unlimited (benchmarks).
   * Used only when `budget` is not given. @default 4 */
  requestsPerSecond?: number;
  /** The account's request budget, when it is shared with other clients (e.g. every worker's, in Redis); each
   * request, re-sends after a 429 included, takes one token.
   * @default a TokenBucket of `requestsPerSecond`, burst 1 */
  budget?: RateBudget;
  /** SIMs per list page; clamped to 1..cap of the version (100 on v6 and older, else 1000). @default 1000 */
  pageSize?: number;
  /** Whole-request timeout, from sending to the last body byte. @default 30000 */
  timeoutMs?: number;
  /**
   * Largest answer body read, in bytes; a longer one is cut off and fails with TOO_LARGE (not retried). A page
   * of 1000 SIMs is about 1.6 MB. @default 16777216 (16 MiB)
   */
  maxResponseBytes?: number;
  /**
   * Times one call re-sends a request Kite refused with 429 (POL.1005), each after Kite's Retry-After (1 s
   * without one, at most MAX_RETRY_AFTER_MS); a 429 also pauses the account's `budget` for every client. 0: a
   * 429 fails the call at once. No other failure is re-sent: Temporal retries the activity. @default 3
   */
  rateLimitRetries?: number;
  /** How group membership is resolved; a `search` filter adds its parameters to every list request.
   * @default { type: 'supervisionGroup' } */
  groupFilter?: GroupFilter;
  /**
   * Entries whose place in their page the client remembers (about 28 bytes each), so that the next listing splits
   * an unchanged entry by hashing it rather than walking its bytes (entries.ts). 0: none. @default 200000
   */
  splitHints?: number;
  /** Keep-alive connections to Kite at most. @default 4 */
  maxSockets?: number;
  /** @default createLogger({ component: 'kite-client' }) */
  logger?: Logger;
  /** Time source for the rate budget and the Retry-After waits; tests inject a fake one. @default the real clock */
  clock?: Clock;
}

/** One page of the inventory list; `nextIndex` is the cursor to resume from after this page. */
export interface KitePage {
  startIndex: number;
  nextIndex: number;
  /** Every SIM of the page, parsed (for a client's page, parsed on first use). */
  sims: KiteSim[];
  /** The same SIMs parsed only when asked, hashed over their bytes as Kite sent them (entries.ts). @default none */
  entries?: KiteEntries;
  /** True for the short (possibly empty) page that ends the list. */
  last: boolean;
}

export interface CallOptions {
  /** Aborts the request and any wait (rate budget, Retry-After), e.g. on activity cancellation. */
  signal?: AbortSignal;
  /**
   * Called every WAITING_BEAT_MS while the call waits (rate budget, request in flight, Retry-After), so that an
   * activity can heartbeat through a slow Kite. @default none
   */
  onWaiting?: () => void;
  /** `pages` only: fail with TOO_MANY_PAGES after this many pages (a ceiling from the known inventory). @default none */
  maxPages?: number;
}

/** How often `onWaiting` is called while a call waits. */
export const WAITING_BEAT_MS = 1_000;

export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** The default `rateLimitRetries`: re-sends of one request after Kite's 429, within one call. */
export const DEFAULT_RATE_LIMIT_RETRIES = 3;

/**
 * The longest one call waits for Kite's Retry-After before re-sending; the account budget's pause still holds
 * the whole Retry-After for the next request of a budget with a rate.
 */
export const MAX_RETRY_AFTER_MS = 15_000;

/** The default `splitHints`: about 6 MB of a worker's heap at most. */
export const DEFAULT_SPLIT_HINTS = 200_000;

export const DEFAULT_BASE_URL = 'https://m2m-api.telefonica.com:8010/services/REST/GlobalM2M';

/** The largest `maxBatchSize` Kite accepts for an Inventory version. */
export function pageCap(apiVersion: number): number {
  return apiVersion <= 6 ? 100 : 1000;
}

/** Reads certificate files into client options (PEM cert + key, or a PFX), for configuration loaders. */
export function tlsFromFiles(files: {
  certFile?: string;
  keyFile?: string;
  pfxFile?: string;
  passphrase?: string;
  caFile?: string;
}): Pick<KiteClientOptions, 'cert' | 'key' | 'pfx' | 'passphrase' | 'ca'> {
  const read = (file?: string) => (file ? readFileSync(file) : undefined);
  return {
    cert: read(files.certFile),
    key: read(files.keyFile),
    pfx: read(files.pfxFile),
    passphrase: files.passphrase,
    ca: read(files.caFile),
  };
}

const TLS_FAILURE = /^(ERR_SSL_|ERR_TLS_)|CERT|SIGNATURE|SELF_SIGNED|ISSUER/;

/** Errors of a connection that closed under the request (not one that could not be made). */
const CLOSED_UNDER_REQUEST = new Set(['ECONNRESET', 'EPIPE']);

/**
 * A transport failure as a KiteApiError: TLS for a certificate problem; DISCONNECTED when a kept-alive connection
 * that had just served a request closed under this one before Kite answered (a race with Kite's idle timeout: that
 * request's fault, not Kite's); NETWORK otherwise (Kite unreachable).
 */
function transportError(err: NodeJS.ErrnoException, where: string, reusedSocket: boolean): KiteApiError {
  if (err instanceof KiteApiError) return err;
  const code = err.code ?? '';
  if (TLS_FAILURE.test(code)) {
    const hint = code.includes('ALERT') ? 'Kite refused the client certificate' : 'TLS handshake failed';
    return new KiteApiError({ code: 'TLS', status: 0, where, text: `${hint} (${code}): check cert/key/pfx and ca` });
  }
  if (reusedSocket && CLOSED_UNDER_REQUEST.has(code)) {
    const text = `the kept-alive connection closed before Kite answered (${code})`;
    return new KiteApiError({ code: 'DISCONNECTED', status: 0, where, text });
  }
  return new KiteApiError({ code: 'NETWORK', status: 0, where, text: `${code || err.message}` });
}

export class KiteClient {
  /** The effective page size after clamping. */
  readonly pageSize: number;
  readonly apiVersion: number;
  private readonly url: URL;
  private readonly agent: https.Agent;
  private readonly budget: RateBudget;
  private readonly rateLimitRetries: number;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly search: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly splitHints: number;
  /** The last shape of each page by its start index, and how many entries they hold. */
  private readonly shapes = new Map<number, PageShape>();
  private shapedEntries = 0;

  constructor(options: KiteClientOptions = {}) {
    this.apiVersion = options.apiVersion ?? 13;
    if (!Number.isInteger(this.apiVersion) || this.apiVersion < 1) {
      throw new Error(`apiVersion must be a positive integer such as 13, got ${options.apiVersion}`);
    }
    this.url = new URL((options.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, ''));
    if (this.url.protocol !== 'https:') throw new Error(`Kite baseUrl must be https, got ${this.url.protocol}`);
    if (/\/Inventory\//.test(this.url.pathname)) {
      throw new Error('Kite baseUrl must end at .../services/REST/GlobalM2M; set the version with apiVersion');
    }
    this.pageSize = Math.min(Math.max(1, Math.floor(options.pageSize ?? 1000)), pageCap(this.apiVersion));
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.rateLimitRetries = options.rateLimitRetries ?? DEFAULT_RATE_LIMIT_RETRIES;
    if (!Number.isInteger(this.rateLimitRetries) || this.rateLimitRetries < 0) {
      throw new Error(`rateLimitRetries must be an integer >= 0 such as 3, got ${options.rateLimitRetries}`);
    }
    this.clock = options.clock ?? realClock;
    this.splitHints = options.splitHints ?? DEFAULT_SPLIT_HINTS;
    this.budget = options.budget ?? new TokenBucket({ perSecond: options.requestsPerSecond ?? 4 }, this.clock);
    this.log = options.logger ?? createLogger({ component: 'kite-client' });
    const filter = options.groupFilter ?? { type: 'supervisionGroup' };
    this.search = filter.type === 'search' ? new URLSearchParams(filter.params).toString() : '';
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: options.maxSockets ?? 4,
      rejectUnauthorized: options.rejectUnauthorized ?? true,
      secureContext: secureContext(options),
    });
  }

  /** One page of the inventory: `maxBatchSize` SIMs from `startIndex` (0-based), fewer at the end. */
  async listPage(startIndex: number, maxBatchSize = this.pageSize, call: CallOptions = {}): Promise<KiteSim[]> {
    return (await this.listEntries(startIndex, maxBatchSize, call)).all();
  }

  /** The same page with its SIMs parsed only when asked (entries.ts): what `pages` yields. */
  async listEntries(startIndex: number, maxBatchSize = this.pageSize, call: CallOptions = {}): Promise<KiteEntries> {
    if (!Number.isInteger(startIndex) || startIndex < 0) throw new Error(`startIndex must be >= 0, got ${startIndex}`);
    const size = Math.min(Math.max(1, Math.floor(maxBatchSize)), pageCap(this.apiVersion));
    const query = `startIndex=${startIndex}&maxBatchSize=${size}${this.search ? `&${this.search}` : ''}`;
    const where = `GET sim?${query}`;
    const raw = await this.getBody(`sim?${query}`, where, call);
    const split = splitListAnswer(raw, where, this.shapes.get(startIndex));
    if (split) {
      this.rememberShape(startIndex, split.shape);
      return split;
    }
    const body = parseAnswer(raw, where);
    const notAList = (text: string) => new KiteApiError({ code: 'BAD_RESPONSE', status: 200, where, text });
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw notAList(`the answer is not a SIM list but ${Array.isArray(body) ? 'an array' : typeof body}`);
    }
    const list = (body as { subscriptionData?: unknown }).subscriptionData;
    if (list === undefined) {
      const keys = Object.keys(body);
      if (keys.length) throw notAList(`the answer has no subscriptionData, only ${keys.slice(0, 5).join(', ')}`);
      return entriesOfSims([]); // an empty result may come as {}; fetch refuses an empty inventory where the group had members
    }
    if (Array.isArray(list)) return entriesOfSims(list as KiteSim[]);
    if (typeof list === 'object' && list !== null) return entriesOfSims([list as KiteSim]); // XML-to-JSON bridges unwrap 1-item lists
    throw notAList('subscriptionData is not a list');
  }

  /**
   * Pages the inventory from `startIndex` until a short page. Resume a failed run from the last page's `nextIndex`:
   * nothing is skipped or repeated as long as the inventory order is stable. The next page is requested while the
   * caller works on the current one; its failure surfaces only when the caller asks for it.
   *
   * Kite has no total, so the pages are checked: a short page must be the end (one more request confirms that
   * nothing follows it, else the page is read again and, if still short, the listing fails with BAD_RESPONSE); a
   * page that repeats more than half of the page before it (Kite ignoring `startIndex`) fails with
   * REPEATED_SIMS; more than `call.maxPages` pages fail with TOO_MANY_PAGES. A failure never ends the listing
   * early: what was not listed is never reported as gone.
   */
  async *pages(startIndex = 0, call: CallOptions = {}): AsyncGenerator<KitePage> {
    let index = startIndex;
    let count = 0;
    let previous = new Set<unknown>();
    let pending = this.listEntries(index, this.pageSize, call);
    for (;;) {
      let entries = await pending;
      if (call.maxPages !== undefined && ++count > call.maxPages) {
        const text = `more than ${call.maxPages} pages of ${this.pageSize} SIMs (the ceiling from the known inventory): Kite's paging does not end`;
        throw new KiteApiError({ code: 'TOO_MANY_PAGES', status: 200, where: `GET sim?startIndex=${index}`, text });
      }
      if (entries.length > 0 && entries.length < this.pageSize) {
        entries = await this.confirmShortPage(index, entries, call);
      }
      previous = rejectRepeats(entries, previous, index);
      const last = entries.length < this.pageSize;
      const nextIndex = index + entries.length;
      if (!last) {
        pending = this.listEntries(nextIndex, this.pageSize, call);
        pending.catch(() => undefined); // observed by the await above on the next round, or dropped if the caller stops
      }
      const page = entries;
      yield {
        startIndex: index,
        nextIndex,
        entries: page,
        get sims() {
          return page.all();
        },
        last,
      };
      if (last) return;
      index = nextIndex;
    }
  }

  /**
   * A short page ends the list only if nothing follows it; otherwise it was cut: it is read once more, and if it
   * is still short with more SIMs after it, the listing fails with BAD_RESPONSE (Temporal retries the fetch).
   */
  private async confirmShortPage(index: number, sims: KiteEntries, call: CallOptions): Promise<KiteEntries> {
    for (let readAgain = false; ; readAgain = true) {
      const after = await this.listEntries(index + sims.length, this.pageSize, call);
      if (after.length === 0) return sims;
      if (readAgain) {
        const text = `a short page of ${sims.length} SIMs at startIndex ${index} (page size ${this.pageSize}) was followed by ${after.length} more at startIndex ${index + sims.length}, twice: Kite's pages are truncated`;
        throw new KiteApiError({ code: 'BAD_RESPONSE', status: 200, where: `GET sim?startIndex=${index}`, text });
      }
      this.log.warn('kite answered a short page followed by more SIMs, reading it again', { index, got: sims.length }); // prettier-ignore
      sims = await this.listEntries(index, this.pageSize, call);
      if (sims.length >= this.pageSize || sims.length === 0) return sims;
    }
  }

  /**
   * The SIM's presence detail, or undefined when Kite's answer has none. Any failure is raised, SVC.1006 (Kite
   * does not know the SIM) included: the caller decides what a SIM it just listed without presence means.
   */
  async getPresence(icc: string, call: CallOptions = {}): Promise<KitePresence | undefined> {
    const path = `sim/icc:${encodeURIComponent(icc)}/presence`;
    const body = parseAnswer(await this.getBody(path, `GET ${path}`, call), `GET ${path}`);
    const detail = (body as { presenceDetailData?: unknown } | null)?.presenceDetailData;
    if (detail === undefined || detail === null) return undefined;
    if (typeof detail === 'object' && !Array.isArray(detail)) return detail as KitePresence;
    throw new KiteApiError({ code: 'BAD_RESPONSE', status: 200, where: `GET ${path}`, text: 'presenceDetailData is not an object' }); // prettier-ignore
  }

  /**
   * Keeps a page's shape as the hint for its next split (entries.ts), while the shapes kept hold at most
   * `splitHints` entries; the shape of a page whose index is not a multiple of the page size (a resumed listing
   * that started elsewhere) is not kept.
   */
  private rememberShape(startIndex: number, shape: PageShape): void {
    const before = this.shapes.get(startIndex)?.count ?? 0;
    if (startIndex % this.pageSize !== 0 || this.shapedEntries - before + shape.count > this.splitHints) return;
    this.shapes.set(startIndex, shape);
    this.shapedEntries += shape.count - before;
  }

  /** Closes the keep-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  private async getBody(path: string, where: string, call: CallOptions): Promise<Buffer> {
    const waiting = call.onWaiting ? setInterval(call.onWaiting, WAITING_BEAT_MS) : undefined;
    try {
      return await this.getBodyHonouringRetryAfter(path, where, call.signal);
    } finally {
      clearInterval(waiting);
    }
  }

  /**
   * Sends the request; after Kite's 429 sends it again once Kite's Retry-After has passed, at most
   * `rateLimitRetries` times. Any other failure is raised at once.
   */
  private async getBodyHonouringRetryAfter(path: string, where: string, signal?: AbortSignal): Promise<Buffer> {
    for (let resent = 0; ; resent++) {
      await this.budget.take(1, signal);
      try {
        return await this.once(path, where, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (!(err instanceof KiteApiError) || err.status !== 429) throw err;
        // Kite's budget is the account's: its 429 (POL.1005) pauses every client of the account, every worker's.
        const retryAfterMs = (err.retryAfterSec ?? 1) * 1000;
        await this.budget.pause(retryAfterMs);
        if (resent >= this.rateLimitRetries) throw err;
        const delay = Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
        this.log.warn("kite refused the request (429), sending it again after Kite's Retry-After", { code: err.code, resent, delay, where }); // prettier-ignore
        await this.clock.sleep(delay, signal);
      }
    }
  }

  /**
   * One request, without any retry: the body of a 2xx answer. Every failure is a KiteApiError (or the signal's
   * reason).
   */
  private once(path: string, where: string, signal?: AbortSignal): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const req = https.request({
        agent: this.agent,
        method: 'GET',
        hostname: this.url.hostname,
        port: this.url.port || 443,
        path: `${this.url.pathname}/Inventory/v${this.apiVersion}/r12/${path}`,
        headers: { accept: 'application/json' },
        signal,
      });
      const timer = setTimeout(() => {
        const text = `no complete answer within ${this.timeoutMs} ms`;
        req.destroy(new KiteApiError({ code: 'TIMEOUT', status: 0, where, text }));
      }, this.timeoutMs);
      const fail = (err: Error) => (clearTimeout(timer), reject(err));
      req.once('error', (err) => fail(transportError(err, where, req.reusedSocket)));
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const tooLarge = () => {
          const limit = this.maxResponseBytes;
          const text = `the answer is larger than ${limit} bytes (maxResponseBytes); lower pageSize, or raise maxResponseBytes if Kite's pages are really this large`;
          fail(new KiteApiError({ code: 'TOO_LARGE', status: res.statusCode ?? 0, where, text }));
          req.destroy();
        };
        if (Number(res.headers['content-length']) > this.maxResponseBytes) return tooLarge();
        res.on('data', (c: Buffer) => {
          if ((size += c.length) > this.maxResponseBytes) return tooLarge();
          chunks.push(c);
        });
        res.once('error', () => fail(badResponse(res.statusCode ?? 0, where, 'the connection broke mid-body')));
        res.once('end', () => {
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          if (!res.complete) return reject(badResponse(status, where, 'the body was cut off'));
          const body = Buffer.concat(chunks);
          if (status < 200 || status >= 300) {
            const retryAfter = Number(res.headers['retry-after']);
            const text = body.toString('utf8');
            return reject(parseKiteError(status, text, where, Number.isFinite(retryAfter) ? retryAfter : undefined));
          }
          resolve(body);
        });
      });
      req.end();
    });
  }
}

/**
 * A 2xx answer's JSON; an empty, malformed or exception body (an error under a 2xx) fails with Kite's error or
 * BAD_RESPONSE.
 */
function parseAnswer(body: Buffer, where: string): unknown {
  const text = body.toString('utf8');
  if (!text.trim()) throw badResponse(200, where, 'HTTP 200 with an empty body where JSON was expected');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    const kind = /^\s*</.test(text) ? 'an HTML or XML page' : 'malformed JSON';
    throw badResponse(200, where, `${kind} (${text.length} bytes) where JSON was expected`);
  }
  if (kiteException(json)) throw parseKiteError(200, text, where);
  return json;
}

/**
 * Fails when a page repeats more than half of the SIMs of the page before it (Kite ignoring `startIndex` answers
 * the same page again). Only the page before is kept: a listing's memory stays one page, not the inventory's ICCs
 * (a million ICCs held 61 MB of heap). Pages that repeat further back are caught by the paging ceiling.
 * Returns the page's ICCs, for the next page's check.
 */
function rejectRepeats(entries: KiteEntries, before: Set<unknown>, index: number): Set<unknown> {
  const listed = new Set<unknown>();
  let repeated = 0;
  for (let i = 0; i < entries.length; i++) {
    const peek = entries.peek(i);
    const id = peek ? peek.icc : (entries.sim(i) as { icc?: unknown } | null)?.icc;
    if (id === undefined) continue;
    if (before.has(id)) repeated++;
    listed.add(id);
  }
  if (repeated > 0 && repeated * 2 > entries.length) {
    const text = `the page at startIndex ${index} repeats ${repeated} of its ${entries.length} SIMs from the page before: Kite seems to ignore startIndex; stopped paging instead of looping`;
    throw new KiteApiError({ code: 'REPEATED_SIMS', status: 200, where: `GET sim?startIndex=${index}`, text });
  }
  return listed;
}

function badResponse(status: number, where: string, text: string): KiteApiError {
  return new KiteApiError({ code: 'BAD_RESPONSE', status, where, text });
}

/** Builds the TLS context once, so that a bad certificate or password fails at start-up with a clear message. */
function secureContext(o: KiteClientOptions): tls.SecureContext {
  if (o.pfx && (o.cert || o.key)) throw new Error('Kite client: give either pfx or cert + key, not both');
  if (!o.pfx && !!o.cert !== !!o.key) throw new Error('Kite client: cert and key must be given together');
  try {
    return tls.createSecureContext({ cert: o.cert, key: o.key, pfx: o.pfx, passphrase: o.passphrase, ca: o.ca });
  } catch (err) {
    const reason = (err as Error).message;
    const legacy = /unsupported/i.test(reason)
      ? "; a Kite .pfx with legacy encryption needs 'openssl pkcs12 -legacy' conversion or node --openssl-legacy-provider"
      : '';
    throw new Error(
      `Kite client certificate could not be loaded (${reason}): check cert/key or pfx/passphrase${legacy}`
    );
  }
}
