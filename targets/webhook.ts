/**
 * Webhook target: SIM changes as batched JSON POSTs, signed with HMAC-SHA256.
 *
 * Request: `POST <url>`, `Content-Type: application/json`, body
 * `{"target":"<name>","group":"<group>","deliveryId":"<uuid>","items":[{"iccid","deviceId","full","patch"}]}`
 * (`patch` as the connector's contract: changed keys, `null` for a removed key, every key when `full`).
 * Connectivity events go in their own POSTs, `items` empty and `events: [{id, type, group, iccid, deviceId,
 * before, after, at, …}]` (record/events.ts); a receiver drops an event id it already handled.
 *
 * Headers:
 * - `X-Kite-Timestamp`: Unix time in seconds when this attempt was signed.
 * - `X-Kite-Signature`: `sha256=<hex HMAC-SHA256(secret, "<X-Kite-Timestamp>.<raw body>")>`.
 * - `X-Kite-Delivery`: the batch's id, the same on every retry of that batch.
 *
 * How a receiver verifies: read the raw body bytes before parsing; compute the HMAC over the timestamp header,
 * a `.`, and the raw body; compare with the signature header in constant time (`crypto.timingSafeEqual`);
 * refuse timestamps more than a few minutes from its clock (replay); use `X-Kite-Delivery` to drop a batch it
 * already processed (delivery is at least once). The timestamp is signed with the body so that an old body
 * cannot be replayed under a fresh timestamp.
 *
 * Answers: 2xx accepts the whole batch. 429, 5xx, 408 and network errors make the batch `throttled` (with the
 * receiver's Retry-After, seconds or an HTTP date) or `retryable`: the publish activity fails the attempt and
 * Temporal retries it after that delay, so by default a batch is POSTed once per attempt (`maxAttempts` allows
 * more tries within a call, each waiting for Retry-After or a backoff up to `maxRetryDelayMs`). A 429 also pauses
 * the URL's shared budget for Retry-After, so every worker's batches wait. Any other status (400, 401, 404, 413, a
 * redirect...) fails the whole batch as permanent.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { mapPool } from '../shared/concurrency';
import {
  backoffMs,
  localBudgets,
  parseRetryAfter,
  peerId,
  sleepUnlessAborted,
  type Budgets,
  type RateBudget,
} from '../shared/limits';
import { createLogger, redact, scrub, type Logger } from '../shared/log';
import type { WebhookTargetConfig } from './webhook-config';
import {
  abortedOutcome,
  type EventItem,
  type PublishContext,
  type PublishItem,
  type PublishOutcome,
  type Target,
} from './target';

export const SIGNATURE_HEADER = 'x-kite-signature';
export const TIMESTAMP_HEADER = 'x-kite-timestamp';
export const DELIVERY_HEADER = 'x-kite-delivery';

export interface WebhookTargetDeps {
  logger?: Logger;
  /** @default localBudgets() */
  budgets?: Budgets;
}

/** The signature header value for a timestamp (Unix seconds, as sent) and the exact body bytes. */
export function webhookSignature(secret: string, timestamp: string, rawBody: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex')}`;
}

/** What one POST attempt came to. */
type Attempt =
  | { kind: 'ok' }
  | { kind: 'retry'; throttled: boolean; retryAfterMs?: number; why: string }
  | { kind: 'permanent'; why: string };

export class WebhookTarget implements Target {
  readonly name: string;
  readonly itemsPerSecond: number;
  private readonly rate: RateBudget;
  private readonly log: Logger;
  /** Host only: the URL's path or query may carry a token. */
  private readonly host: string;

  constructor(
    private readonly config: WebhookTargetConfig,
    deps: WebhookTargetDeps = {}
  ) {
    this.name = config.name;
    this.log = (deps.logger ?? createLogger()).child({ target: config.name, type: 'webhook' });
    this.rate = (deps.budgets ?? localBudgets()).rate(peerId('webhook', config.url), {
      perSecond: config.requestsPerSecond,
      burst: config.burst,
    });
    this.host = new URL(config.url).host;
    this.itemsPerSecond = config.requestsPerSecond * config.batchSize;
  }

  async publish(items: PublishItem[], signal?: AbortSignal, context?: PublishContext): Promise<PublishOutcome[]> {
    return this.inBatches(
      items,
      signal,
      (batch) => ({
        items: batch.map(({ iccid, deviceId, full, patch }) => ({ iccid, deviceId, full, patch })),
      }),
      context
    );
  }

  /** Connectivity events: the same signed POST with `items` empty and the SIMs' events, oldest first, in `events`. */
  async publishEvents(items: EventItem[], signal?: AbortSignal, context?: PublishContext): Promise<PublishOutcome[]> {
    return this.inBatches(
      items,
      signal,
      (batch) => ({
        items: [],
        events: batch.flatMap(({ deviceId, events }) => events.map((event) => ({ ...event, deviceId }))),
      }),
      context
    );
  }

  private async inBatches<T extends { iccid: string }>(
    items: T[],
    signal: AbortSignal | undefined,
    content: (batch: T[]) => Record<string, unknown>,
    context?: PublishContext
  ): Promise<PublishOutcome[]> {
    const batches: T[][] = [];
    for (let i = 0; i < items.length; i += this.config.batchSize)
      batches.push(items.slice(i, i + this.config.batchSize));
    const results = await mapPool(batches, this.config.concurrency, (batch) =>
      this.sendBatch(batch, content(batch), signal, context)
    );
    return results.flat();
  }

  private async sendBatch(
    batch: { iccid: string }[],
    content: Record<string, unknown>,
    signal?: AbortSignal,
    context?: PublishContext
  ) {
    const deliveryId = randomUUID();
    const body = JSON.stringify({ target: this.name, group: context?.group, deliveryId, ...content });
    let last: Attempt = { kind: 'retry', throttled: false, why: 'not attempted' };
    for (let attempt = 1; attempt <= this.config.maxAttempts; attempt++) {
      if (signal?.aborted) return batch.map(abortedOutcome);
      try {
        await this.rate.take(1, signal);
      } catch {
        return batch.map(abortedOutcome);
      }
      last = await this.post(body, deliveryId, signal);
      if (last.kind === 'retry' && last.throttled) await this.rate.pause(last.retryAfterMs ?? backoffMs(attempt));
      if (last.kind !== 'retry' || attempt === this.config.maxAttempts) break;
      const delay = last.retryAfterMs ?? backoffMs(attempt - 1);
      if (delay > this.config.maxRetryDelayMs) break;
      this.log.debug('webhook retry', { host: this.host, deliveryId, attempt, delayMs: delay, why: last.why });
      if (!(await sleepUnlessAborted(delay, signal))) return batch.map(abortedOutcome);
    }
    return this.outcomes(batch, last, deliveryId);
  }

  private outcomes(batch: { iccid: string }[], result: Attempt, deliveryId: string): PublishOutcome[] {
    if (result.kind === 'ok') return batch.map((i) => ({ iccid: i.iccid, status: 'ok' }));
    const reason = this.clean(`webhook ${this.host} (delivery ${deliveryId}): ${result.why}`);
    this.log.warn('webhook batch failed', { host: this.host, deliveryId, items: batch.length, reason });
    if (result.kind === 'permanent') return batch.map((i) => ({ iccid: i.iccid, status: 'permanent', reason }));
    if (result.throttled) {
      const retryAfterMs = result.retryAfterMs ?? backoffMs(this.config.maxAttempts);
      return batch.map((i) => ({ iccid: i.iccid, status: 'throttled', retryAfterMs, reason }));
    }
    return batch.map((i) => ({ iccid: i.iccid, status: 'retryable', reason }));
  }

  /** One signed POST; never throws. */
  private async post(body: string, deliveryId: string, signal?: AbortSignal): Promise<Attempt> {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const timeout = AbortSignal.timeout(this.config.timeoutMs);
    let response: Response;
    try {
      response = await fetch(this.config.url, {
        method: 'POST',
        body,
        redirect: 'manual',
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        headers: {
          'content-type': 'application/json',
          [TIMESTAMP_HEADER]: timestamp,
          [SIGNATURE_HEADER]: webhookSignature(this.config.secret, timestamp, body),
          [DELIVERY_HEADER]: deliveryId,
        },
      });
    } catch (err) {
      const why = timeout.aborted ? `no answer within ${this.config.timeoutMs} ms` : networkError(err);
      return { kind: 'retry', throttled: false, why };
    }
    const text = await response.text().catch(() => '');
    const status = `${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`;
    if (response.ok) return { kind: 'ok' };
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
    if (response.status === 429) return { kind: 'retry', throttled: true, retryAfterMs, why: `throttled (${status})` };
    if (response.status >= 500 || response.status === 408) {
      return { kind: 'retry', throttled: false, retryAfterMs, why: `server error (${status})` };
    }
    return {
      kind: 'permanent',
      why: `refused the batch (${status}); fix the request or the receiver, retrying will not help`,
    };
  }

  private clean(text: string): string {
    return scrub(redact(text), [this.config.secret, ...urlSecrets(this.config.url)]);
  }

  async close(): Promise<void> {}
}

/** The URL and the parts of it that may be tokens (path segments, query values), for scrubbing echoes. */
function urlSecrets(raw: string): string[] {
  const url = new URL(raw);
  const parts = [raw, url.pathname + url.search, ...url.pathname.split('/'), ...url.searchParams.values()];
  return parts.filter((p) => p.length >= 8);
}

function networkError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return `network error: ${cause?.code ?? cause?.message ?? (err as Error).message}`;
}

export function createWebhookTarget(config: WebhookTargetConfig, deps: WebhookTargetDeps = {}): WebhookTarget {
  return new WebhookTarget(config, deps);
}
