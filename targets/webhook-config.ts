/** Settings of a webhook target (targets/webhook.ts): batched, HMAC-signed JSON POSTs. */
import { z } from 'zod';
import { strictSettings } from '../shared/settings';
import { commonTargetShape, intIn, text, url } from './schema';

export const WEBHOOK_DEFAULTS = {
  batchSize: 500,
  timeoutMs: 10_000,
  maxAttempts: 1,
  maxRetryDelayMs: 30_000,
  concurrency: 2,
  requestsPerSecond: 10,
} as const;

export const webhookTargetSchema = strictSettings({
  type: z.literal('webhook'),
  ...commonTargetShape,
  /** `http://` or `https://` URL to POST to. Treated as sensitive (it may carry a token): never logged. Required. */
  url: url(['https:', 'http:']),
  /** HMAC-SHA256 key for `X-Kite-Signature`, at least 16 characters. Secret. Required. */
  secret: text().refine((s) => s.length >= 16, 'must be at least 16 characters; use a long random value'),
  /** SIMs per POST. @default 500 */
  batchSize: intIn(1, 10_000).default(WEBHOOK_DEFAULTS.batchSize),
  /** Timeout of one POST, in ms. @default 10000 */
  timeoutMs: intIn(100, 300_000).default(WEBHOOK_DEFAULTS.timeoutMs),
  /**
   * POSTs of a batch within one publish call on 429, 5xx and network errors, the first included. Each try more
   * multiplies Temporal's attempts of the publish activity, which already retry the batch's SIMs (after the
   * receiver's Retry-After). @default 1: the publish activity and Temporal are the one retry layer
   */
  maxAttempts: intIn(1, 20).default(WEBHOOK_DEFAULTS.maxAttempts),
  /** Longest Retry-After (or backoff) honoured in place; longer ones end the attempt as `throttled`. @default 30000 */
  maxRetryDelayMs: intIn(0, 600_000).default(WEBHOOK_DEFAULTS.maxRetryDelayMs),
  /** Batches in flight at once. @default 2 */
  concurrency: intIn(1, 100).default(WEBHOOK_DEFAULTS.concurrency),
  /** POSTs started per second. @default 10 */
  requestsPerSecond: intIn(1, 10_000).default(WEBHOOK_DEFAULTS.requestsPerSecond),
  /** POSTs allowed at once after a quiet spell (the bucket's burst); shared, like the rate, by every worker. @default 1 */
  burst: intIn(1, 100_000).default(1),
});

/** Batched, HMAC-signed JSON POSTs to an HTTP endpoint. */
export type WebhookTargetConfig = z.output<typeof webhookTargetSchema>;
