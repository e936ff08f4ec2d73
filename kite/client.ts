/**
 * Kite REST client: mutual TLS, paging, presence detail, a client-side rate budget and retries with backoff.
 * One instance per Kite account (certificate); safe for concurrent calls, which share the rate budget.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { createLogger, type Logger } from '../shared/log';
import { KiteApiError, parseKiteError } from './errors';
import { realClock, TokenBucket, type Clock, type RateBudget } from '../shared/limits';
import type { GroupFilter, KitePresence, KiteSim } from './types';

export interface KiteRetryOptions {
  /** Attempts per request, the first included. @default 5 */
  maxAttempts?: number;
  /** First backoff; doubles per attempt, with jitter (half to full value). @default 500 */
  baseDelayMs?: number;
  /** Longest backoff, also the cap for Kite's Retry-After. @default 15000 */
  maxDelayMs?: number;
}

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
  /** Request budget shared by all calls, retries included; 0 or Infinity = unlimited (benchmarks). Used only
   * when `budget` is not given. @default 4 */
  requestsPerSecond?: number;
  /** The account's request budget, when it is shared with other clients (e.g. every worker's, in Redis); each
   * request, retries included, takes one token. @default a TokenBucket of `requestsPerSecond`, burst 1 */
  budget?: RateBudget;
  /** SIMs per list page; clamped to 1..cap of the version (100 on v6 and older, else 1000). @default 1000 */
  pageSize?: number;
  /** Whole-request timeout, from sending to the last body byte. @default 30000 */
  timeoutMs?: number;
  /** Retries of SVR.1006, POL.*, 5xx, timeouts and broken responses. */
  retry?: KiteRetryOptions;
  /** How group membership is resolved; a `search` filter adds its parameters to every list request.
   * @default { type: 'supervisionGroup' } */
  groupFilter?: GroupFilter;
  /** Keep-alive connections to Kite at most. @default 4 */
  maxSockets?: number;
  /** @default createLogger({ component: 'kite-client' }) */
  logger?: Logger;
  /** Time source for the rate budget and backoff; tests inject a fake one. @default the real clock */
  clock?: Clock;
}

/** One page of the inventory list; `nextIndex` is the cursor to resume from after this page. */
export interface KitePage {
  startIndex: number;
  nextIndex: number;
  sims: KiteSim[];
  /** True for the short (possibly empty) page that ends the list. */
  last: boolean;
}

export interface CallOptions {
  /** Aborts the request and any backoff wait (e.g. on activity cancellation). */
  signal?: AbortSignal;
}

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

function transportError(err: NodeJS.ErrnoException, where: string): KiteApiError {
  if (err instanceof KiteApiError) return err;
  const code = err.code ?? '';
  if (TLS_FAILURE.test(code)) {
    const hint = code.includes('ALERT') ? 'Kite refused the client certificate' : 'TLS handshake failed';
    return new KiteApiError({ code: 'TLS', status: 0, where, text: `${hint} (${code}): check cert/key/pfx and ca` });
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
  private readonly retry: Required<KiteRetryOptions>;
  private readonly timeoutMs: number;
  private readonly search: string;
  private readonly log: Logger;
  private readonly clock: Clock;

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
    this.retry = { maxAttempts: 5, baseDelayMs: 500, maxDelayMs: 15_000, ...options.retry };
    this.clock = options.clock ?? realClock;
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
    if (!Number.isInteger(startIndex) || startIndex < 0) throw new Error(`startIndex must be >= 0, got ${startIndex}`);
    const size = Math.min(Math.max(1, Math.floor(maxBatchSize)), pageCap(this.apiVersion));
    const query = `startIndex=${startIndex}&maxBatchSize=${size}${this.search ? `&${this.search}` : ''}`;
    const where = `GET sim?${query}`;
    const body = await this.getJson(`sim?${query}`, where, call.signal);
    const list = (body as { subscriptionData?: unknown } | null)?.subscriptionData;
    if (list === undefined) return []; // an empty result may come as {}
    if (Array.isArray(list)) return list as KiteSim[];
    if (typeof list === 'object' && list !== null) return [list as KiteSim]; // XML-to-JSON bridges unwrap 1-item lists
    throw new KiteApiError({ code: 'BAD_RESPONSE', status: 200, where, text: 'subscriptionData is not a list' });
  }

  /**
   * Pages the inventory from `startIndex` until a short page. Resume a failed run from the last page's `nextIndex`:
   * nothing is skipped or repeated as long as the inventory order is stable. The next page is requested while the
   * caller works on the current one; its failure surfaces only when the caller asks for it.
   */
  async *pages(startIndex = 0, call: CallOptions = {}): AsyncGenerator<KitePage> {
    let index = startIndex;
    let pending = this.listPage(index, this.pageSize, call);
    for (;;) {
      const sims = await pending;
      const last = sims.length < this.pageSize;
      const nextIndex = index + sims.length;
      if (!last) {
        pending = this.listPage(nextIndex, this.pageSize, call);
        pending.catch(() => undefined); // observed by the await above on the next round, or dropped if the caller stops
      }
      yield { startIndex: index, nextIndex, sims, last };
      if (last) return;
      index = nextIndex;
    }
  }

  /** The SIM's presence detail, or undefined when Kite has none (or no longer knows the SIM: SVC.1006). */
  async getPresence(icc: string, call: CallOptions = {}): Promise<KitePresence | undefined> {
    const path = `sim/icc:${encodeURIComponent(icc)}/presence`;
    try {
      const body = await this.getJson(path, `GET ${path}`, call.signal);
      const detail = (body as { presenceDetailData?: unknown } | null)?.presenceDetailData;
      return typeof detail === 'object' && detail !== null ? (detail as KitePresence) : undefined;
    } catch (err) {
      if (err instanceof KiteApiError && err.code === 'SVC.1006') return undefined;
      throw err;
    }
  }

  /** Closes the keep-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  private async getJson(path: string, where: string, signal?: AbortSignal): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      await this.budget.take(1, signal);
      try {
        return await this.once(path, where, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const error = transportError(err as NodeJS.ErrnoException, where);
        if (!error.retryable || attempt >= this.retry.maxAttempts) throw error;
        const delay = this.backoff(attempt, error.retryAfterSec);
        this.log.warn('kite request failed, retrying', {
          code: error.code,
          status: error.status,
          attempt,
          delay,
          where,
        });
        await this.clock.sleep(delay, signal);
      }
    }
  }

  private backoff(attempt: number, retryAfterSec?: number): number {
    const full = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    const jittered = full / 2 + (Math.random() * full) / 2;
    const asked = retryAfterSec !== undefined ? Math.min(retryAfterSec * 1000, this.retry.maxDelayMs) : 0;
    return Math.max(jittered, asked);
  }

  private once(path: string, where: string, signal?: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
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
      req.once('error', fail);
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('error', () => fail(badResponse(res.statusCode ?? 0, where, 'the connection broke mid-body')));
        res.once('end', () => {
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          if (!res.complete) return reject(badResponse(status, where, 'the body was cut off'));
          const text = Buffer.concat(chunks).toString('utf8');
          if (status < 200 || status >= 300) {
            const retryAfter = Number(res.headers['retry-after']);
            return reject(parseKiteError(status, text, where, Number.isFinite(retryAfter) ? retryAfter : undefined));
          }
          try {
            resolve(text ? JSON.parse(text) : {});
          } catch {
            reject(badResponse(status, where, `malformed JSON (${text.length} bytes)`));
          }
        });
      });
      req.end();
    });
  }
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
