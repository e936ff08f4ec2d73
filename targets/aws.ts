/**
 * AWS IoT Core target: each SIM is a thing; its record is the `state.reported` of the thing's classic or named
 * shadow. A back end may write `reported` directly (AWS does not restrict who writes which section), so unlike
 * Azure no per-device connection is needed.
 *
 * Per SIM: CreateThing on its first publish (identity fields as attributes; "already exists" is success), then
 * UpdateThingShadow `{"state":{"reported":patch}}`. A shadow update that finds no thing (404) creates the thing
 * and retries once, which also covers things deleted behind our back. Things are not created on every process
 * start for every SIM: CreateThing is limited to 15 TPS per account, so a restart would crawl.
 */
import { CreateThingCommand, IoTClient } from '@aws-sdk/client-iot';
import { IoTDataPlaneClient, PublishCommand, UpdateThingShadowCommand } from '@aws-sdk/client-iot-data-plane';
import { mapPoolByKey } from '../shared/concurrency';
import { localBudgets, parseRetryAfter, peerId, type Budgets, type RateBudget } from '../shared/limits';
import { createLogger, redact, scrub, type Logger } from '../shared/log';
import type { AwsTargetConfig } from './aws-config';
import { resolveAwsEndpoint } from './aws-endpoint';
import {
  abortedOutcome,
  type EventItem,
  type PublishContext,
  type PublishItem,
  type PublishOutcome,
  type Target,
} from './target';

/**
 * AWS counts 8 KB over the desired + reported state of the *stored, merged* document, metadata excluded. The
 * target only sees the patch, so it guards the serialized `{"reported":patch}`: exact on a first publish (the
 * patch is the whole record), a lower bound afterwards. A merged document that still grows past 8 KB is
 * refused by AWS with 413, which maps to the same permanent outcome.
 */
export const SHADOW_STATE_LIMIT_BYTES = 8 * 1024;
const THING_NAME = /^[a-zA-Z0-9:_-]{1,128}$/;
/** Without a thing type AWS allows three attributes: the SIM's stable identity. */
const THING_ATTRIBUTES = ['iccid', 'imei', 'alias'] as const;
const ATTRIBUTE_VALUE_FORBIDDEN = /[^a-zA-Z0-9_.,@/:#=[\]-]/g;
const KNOWN_THINGS_MAX = 100_000;
/** The next attempt's delay when AWS throttles without a Retry-After (the SDK's throttling backoff starts at 0.5 s). */
const DEFAULT_THROTTLE_MS = 2_000;

export interface AwsTargetDeps {
  logger?: Logger;
  /** @default localBudgets() */
  budgets?: Budgets;
}

/** A set that forgets its oldest entries beyond `max`, so memory stays bounded on huge fleets. */
class BoundedSet {
  private readonly items = new Set<string>();
  constructor(private readonly max: number) {}
  has(key: string): boolean {
    return this.items.has(key);
  }
  add(key: string): void {
    this.items.delete(key);
    this.items.add(key);
    if (this.items.size > this.max) this.items.delete(this.items.values().next().value!);
  }
  delete(key: string): void {
    this.items.delete(key);
  }
}

interface AwsErrorLike {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $response?: { headers?: Record<string, string | undefined> };
}

export class AwsIotTarget implements Target {
  readonly name: string;
  private readonly iot: IoTClient;
  private data: IoTDataPlaneClient;
  readonly itemsPerSecond: number;
  private readonly knownThings = new BoundedSet(KNOWN_THINGS_MAX);
  private readonly shadowRate: RateBudget;
  private readonly thingRate: RateBudget;
  private readonly log: Logger;
  private readonly secrets: string[];
  private readonly common: ConstructorParameters<typeof IoTDataPlaneClient>[0] & object;

  constructor(
    private readonly config: AwsTargetConfig,
    deps: AwsTargetDeps = {}
  ) {
    this.name = config.name;
    this.log = (deps.logger ?? createLogger()).child({ target: config.name, type: 'aws' });
    const common = {
      region: config.region,
      // A copy: the SDK annotates the credentials object it is given.
      credentials: config.credentials && { ...config.credentials },
      maxAttempts: config.maxAttempts,
      requestHandler: {
        requestTimeout: config.timeoutMs,
        connectionTimeout: config.timeoutMs,
        // The budgets and the publish's in-flight window bound the requests; the SDK's default of 50 sockets would
        // queue requests the budget already let go, and send them in a bunch above the rate once sockets free up.
        httpAgent: { maxSockets: Infinity },
        httpsAgent: { maxSockets: Infinity },
      },
    };
    this.common = common;
    this.iot = new IoTClient({ ...common, endpoint: config.controlEndpoint });
    this.data = new IoTDataPlaneClient({ ...common, endpoint: config.endpoint });
    // A first publish passes CreateThing's budget, usually the tighter one.
    this.itemsPerSecond = config.createThings
      ? Math.min(config.thingsPerSecond, config.requestsPerSecond)
      : config.requestsPerSecond;
    const budgets = deps.budgets ?? localBudgets();
    const account = awsAccountPeer(config);
    this.shadowRate = budgets.rate(`${account}:shadow`, { perSecond: config.requestsPerSecond, burst: config.burst });
    this.thingRate = budgets.rate(`${account}:create-thing`, { perSecond: config.thingsPerSecond });
    const c = config.credentials;
    this.secrets = [c?.secretAccessKey, c?.sessionToken].filter((s): s is string => !!s);
  }

  /**
   * At worker start: an endpoint of another region than `region`, or a shadow endpoint DescribeEndpoint
   * disagrees with, is a ConfigError naming the setting; without `endpoint`, the account's own is used.
   */
  async ready(signal?: AbortSignal): Promise<void> {
    const endpoint = await resolveAwsEndpoint(this.config, this.iot, signal);
    if (endpoint && endpoint !== this.config.endpoint) {
      this.data.destroy();
      this.data = new IoTDataPlaneClient({ ...this.common, endpoint });
      this.log.info('using the account’s shadow endpoint from DescribeEndpoint', { region: this.config.region });
    }
  }

  async publish(items: PublishItem[], signal?: AbortSignal): Promise<PublishOutcome[]> {
    const outcomes = await mapPoolByKey(
      items,
      (item) => item.deviceId,
      this.config.concurrency,
      (item) => this.publishOne(item, signal)
    );
    const failed = outcomes.filter((o) => o.status !== 'ok');
    if (failed.length) {
      this.log.warn('some shadow updates failed', { items: items.length, failed: failed.length, first: failed[0] });
    }
    return outcomes;
  }

  /** Each event as one iot-data Publish (QoS 1) on the SIM's events topic; ok once AWS accepted them all. */
  async publishEvents(items: EventItem[], signal?: AbortSignal, context?: PublishContext): Promise<PublishOutcome[]> {
    return mapPoolByKey(
      items,
      (item) => item.deviceId,
      this.config.concurrency,
      async (item) => {
        const values: Record<string, string | undefined> = {
          group: context?.group,
          iccid: item.iccid,
          deviceId: item.deviceId,
        };
        let problem: string | undefined;
        const topic = this.config.eventsTopicTemplate.replace(/\{(\w+)\}/g, (_, field: string) => {
          const value = values[field];
          if (!value || /[/+#\0]/.test(value)) problem ??= `events topic: {${field}} is empty or holds /, +, # or NUL`;
          return value ?? '';
        });
        if (problem) return permanent(item, problem);
        try {
          for (const event of item.events) {
            if (signal?.aborted) return abortedOutcome(item);
            const payload = new TextEncoder().encode(JSON.stringify(event));
            const command = paced(new PublishCommand({ topic, qos: 1, payload }), this.shadowRate, signal);
            await this.data.send(command, { abortSignal: signal });
          }
          return { iccid: item.iccid, status: 'ok' };
        } catch (err) {
          return this.outcomeFor(item, withOperation(err, 'Publish') as AwsErrorLike, signal);
        }
      }
    );
  }

  private async publishOne(item: PublishItem, signal?: AbortSignal): Promise<PublishOutcome> {
    if (signal?.aborted) return abortedOutcome(item);
    const thing = item.deviceId;
    if (!THING_NAME.test(thing)) {
      return permanent(
        item,
        `thing name '${thing}' is not valid for AWS IoT ([a-zA-Z0-9:_-]{1,128}); check deviceIdTemplate`
      );
    }
    const payload = JSON.stringify({ state: { reported: item.patch } });
    const size = Buffer.byteLength(JSON.stringify({ reported: item.patch }));
    if (size > SHADOW_STATE_LIMIT_BYTES) {
      return permanent(item, `reported state is ${size} bytes, over the ${SHADOW_STATE_LIMIT_BYTES}-byte shadow limit`);
    }
    try {
      if (this.config.createThings && item.full && !this.knownThings.has(thing)) await this.ensureThing(item, signal);
      await this.updateShadow(thing, payload, signal).catch(async (err: unknown) => {
        if (!this.config.createThings || !isNotFound(err)) throw err;
        this.knownThings.delete(thing);
        await this.ensureThing(item, signal);
        await this.updateShadow(thing, payload, signal);
      });
      return { iccid: item.iccid, status: 'ok' };
    } catch (err) {
      return this.outcomeFor(item, err as AwsErrorLike, signal);
    }
  }

  private async ensureThing(item: PublishItem, signal?: AbortSignal): Promise<void> {
    const command = paced(
      new CreateThingCommand({ thingName: item.deviceId, attributePayload: { attributes: thingAttributes(item) } }),
      this.thingRate,
      signal
    );
    try {
      await this.iot.send(command, { abortSignal: signal });
    } catch (err) {
      // Exists with other attributes: the thing is there, which is all the shadow needs.
      if ((err as AwsErrorLike).name !== 'ResourceAlreadyExistsException') throw withOperation(err, 'CreateThing');
    }
    this.knownThings.add(item.deviceId);
  }

  private async updateShadow(thingName: string, payload: string, signal?: AbortSignal): Promise<void> {
    const command = paced(
      new UpdateThingShadowCommand({
        thingName,
        shadowName: this.config.shadowName,
        payload: new TextEncoder().encode(payload),
      }),
      this.shadowRate,
      signal
    );
    await this.data.send(command, { abortSignal: signal });
    this.knownThings.add(thingName);
  }

  /** Maps an error that survived the SDK's own retries to an outcome. */
  private outcomeFor(
    item: { iccid: string; deviceId: string },
    err: AwsErrorLike,
    signal?: AbortSignal
  ): PublishOutcome {
    if (signal?.aborted) return abortedOutcome(item);
    const status = err.$metadata?.httpStatusCode;
    const name = err.name ?? 'Error';
    const where = `${(err as { operation?: string }).operation ?? 'UpdateThingShadow'} ${item.deviceId}`;
    const attempts = err.$metadata?.attempts ? ` after ${err.$metadata.attempts} attempt(s)` : '';
    const text = (what: string) =>
      this.clean(`${where}: ${what} (${status ?? 'no response'} ${name}: ${err.message ?? ''})`);
    if (status === 429 || /Throttling|TooManyRequests|LimitExceeded/.test(name)) {
      const retryAfterMs = retryAfterOf(err) ?? DEFAULT_THROTTLE_MS;
      return { iccid: item.iccid, status: 'throttled', retryAfterMs, reason: text(`throttled${attempts}`) };
    }
    if (status === 413 || name === 'RequestEntityTooLargeException') {
      return permanent(item, text('the merged shadow would exceed 8 KB; use a named shadow or fewer keys'));
    }
    if (status === 401 || status === 403 || /Unauthorized|Forbidden|AccessDenied|InvalidSignature/.test(name)) {
      return permanent(item, text('not authorised: check the credentials and the IAM policy'));
    }
    if (name === 'CredentialsProviderError') {
      return permanent(item, text('no AWS credentials: set credentials or configure the default provider chain'));
    }
    if (status === 404)
      return permanent(item, text(this.config.createThings ? 'not found' : 'no such thing and createThings is off'));
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 409) {
      return permanent(item, text('rejected'));
    }
    return { iccid: item.iccid, status: 'retryable', reason: text(`failed${attempts}`) };
  }

  private clean(text: string): string {
    return scrub(redact(text), this.secrets).slice(0, 500);
  }

  async close(): Promise<void> {
    this.iot.destroy();
    this.data.destroy();
  }
}

function permanent(item: { iccid: string }, reason: string): PublishOutcome {
  return { iccid: item.iccid, status: 'permanent', reason };
}

function isNotFound(err: unknown): boolean {
  const e = err as AwsErrorLike;
  return e.$metadata?.httpStatusCode === 404 || e.name === 'ResourceNotFoundException';
}

function withOperation(err: unknown, operation: string): unknown {
  if (err && typeof err === 'object') Object.assign(err, { operation });
  return err;
}

function retryAfterOf(err: AwsErrorLike): number | undefined {
  const headers = err.$response?.headers ?? {};
  const amz = headers['x-amz-retry-after'];
  if (amz && /^\d+$/.test(amz)) return Number(amz);
  return parseRetryAfter(headers['retry-after']);
}

/** Identity fields as thing attributes, with characters AWS refuses in attribute values replaced by `_`. */
function thingAttributes(item: PublishItem): Record<string, string> {
  const attributes: Record<string, string> = { iccid: item.iccid };
  for (const key of THING_ATTRIBUTES) {
    const value = item.patch[key];
    if (typeof value === 'string' && value !== '') {
      attributes[key] = value.replace(ATTRIBUTE_VALUE_FORBIDDEN, '_').slice(0, 800);
    }
  }
  return attributes;
}

/**
 * `command`, each of its attempts (the SDK's own retries included) sent once `budget` gives a token. The token is
 * taken in the request's last step before the HTTP handler, after serializing, resolving the endpoint and signing,
 * so what those steps cost a busy worker (a fresh one compiling, say) does not come between a token and its send;
 * and no retry of the SDK's leaves without a token.
 */
function paced<C extends { middlewareStack: { add(m: unknown, o: object): void } }>(
  command: C,
  budget: RateBudget,
  signal?: AbortSignal
): C {
  const takeToken =
    (next: (args: unknown) => Promise<unknown>) =>
    async (args: unknown): Promise<unknown> => {
      await budget.take(1, signal);
      return next(args);
    };
  command.middlewareStack.add(takeToken, { step: 'deserialize', priority: 'low', name: 'kiteRateBudget' });
  return command;
}

/** The AWS account as a rate-budget peer: its data endpoint (account-specific for ATS) and region. */
export function awsAccountPeer(config: Pick<AwsTargetConfig, 'endpoint' | 'region'>): string {
  return peerId('aws', config.endpoint ?? 'default', config.region);
}

export function createAwsIotTarget(config: AwsTargetConfig, deps: AwsTargetDeps = {}): AwsIotTarget {
  return new AwsIotTarget(config, deps);
}
