/**
 * Azure IoT Hub target. In `reported` mode each SIM is published "as the device does": its device identity is
 * ensured with the service SDK's Registry, then a short MQTT connection as that device (device SDK) patches the
 * reported properties: connect → get twin → patch(es) → close, through a bounded pool, one connection per device
 * id at a time. In `tags` mode the service API patches the twin's tags instead.
 */
import type { Registry } from 'azure-iothub';
import { createLogger, type Logger } from '../../shared/log';
import type { PublishContext, PublishItem, PublishOutcome, Target } from '../target';
import { parseServiceConnectionString, type AzureTargetConfig } from './config';
import { DeviceSession } from './device';
import { classifyServiceError, type Failure } from './errors';
import { Identities, type KeyResult } from './identity';
import { KeyedLock, Semaphore, sleepUnlessAborted } from '../../shared/limits';
import { budgetReason, HubBudget } from './rate';
import { createRegistry, type RegistryHandle } from './service';

export type { AzureTargetConfig } from './config';
export { parseAzureTargetConfig } from './config';

export interface AzureTargetDeps {
  logger?: Logger;
}

/** An item with its position in the `publish` call, so outcomes come back in order. */
interface Entry {
  item: PublishItem;
  index: number;
}

/** Used when the hub throttles without saying for how long and no budget pause applies. */
const DEFAULT_THROTTLE_MS = 10_000;

function toOutcome(iccid: string, failure: Failure): PublishOutcome {
  if (failure.kind === 'throttled') {
    return {
      iccid,
      status: 'throttled',
      retryAfterMs: failure.retryAfterMs ?? DEFAULT_THROTTLE_MS,
      reason: failure.reason,
    };
  }
  return { iccid, status: failure.kind, reason: failure.reason };
}

class AzureIotHubTarget implements Target {
  readonly name: string;
  private readonly log: Logger;
  private readonly service: RegistryHandle;
  private readonly registry: Registry;
  private readonly identities: Identities;
  private readonly twinBudget: HubBudget;
  private readonly pool: Semaphore;
  private readonly locks = new KeyedLock();
  private readonly deviceHost: string;
  private closed = false;

  constructor(
    private readonly config: AzureTargetConfig & { name?: string },
    logger: Logger
  ) {
    this.name = config.name ?? 'azure';
    this.log = logger.child({ target: this.name });
    const creds = parseServiceConnectionString(config.connectionString, `targets.${this.name}`);
    this.service = createRegistry(creds, config.serviceUrl, config.ca);
    this.registry = this.service.registry;
    const identityBudget = new HubBudget(config.identityOpsPerMinute, 60_000);
    this.identities = new Identities(this.registry, identityBudget, config.keyCacheSize, this.log);
    this.twinBudget = new HubBudget(config.twinUpdatesPerSecond, 1_000);
    this.pool = new Semaphore(config.maxConnections);
    this.deviceHost = config.deviceHost ?? creds.hostName;
  }

  async publish(items: PublishItem[], signal?: AbortSignal, _context?: PublishContext): Promise<PublishOutcome[]> {
    const outcomes: PublishOutcome[] = new Array(items.length);
    if (this.closed || signal?.aborted) {
      const reason = this.closed ? 'target closed' : 'aborted';
      return items.map((item) => ({ iccid: item.iccid, status: 'retryable', reason }));
    }
    const keys = await this.identities.ensure(
      items.map((item) => ({ deviceId: item.deviceId, likelyNew: item.full })),
      signal
    );
    await Promise.all(
      [...groupByDevice(items)].map(([deviceId, entries]) =>
        this.publishDevice(deviceId, entries, keys.get(deviceId)!, outcomes, signal)
      )
    );
    return outcomes;
  }

  /** All of one device's items, in order, under the device's lock. */
  private async publishDevice(
    deviceId: string,
    entries: Entry[],
    key: KeyResult,
    outcomes: PublishOutcome[],
    signal?: AbortSignal
  ): Promise<void> {
    const settle = (from: number, failure: Failure) => {
      for (const e of entries.slice(from)) outcomes[e.index] = toOutcome(e.item.iccid, failure);
    };
    if (!key.ok) return settle(0, key.failure);
    await this.locks.run(deviceId, async () => {
      const release = await this.pool.acquire();
      try {
        const done =
          this.config.mode === 'tags'
            ? await this.patchTags(deviceId, entries, outcomes, signal)
            : await this.patchReported(deviceId, key.key, entries, outcomes, signal);
        if (done.failure) settle(done.next, done.failure);
      } finally {
        release();
      }
    });
  }

  /** Connect as the device and send its patches in order; stops at the first failure. */
  private async patchReported(
    deviceId: string,
    key: string,
    entries: Entry[],
    outcomes: PublishOutcome[],
    signal?: AbortSignal
  ): Promise<{ next: number; failure?: Failure }> {
    const admitted = await this.admitTwin(signal);
    if (admitted) return { next: 0, failure: admitted };
    const opts = {
      host: this.deviceHost,
      deviceId,
      key,
      ca: this.config.ca,
      timeoutMs: this.config.operationTimeoutMs,
      signal,
    };
    const opened = await DeviceSession.open(opts);
    if (!opened.ok) return { next: 0, failure: this.deviceFailure(deviceId, opened.failure) };
    const session = opened.value;
    try {
      const twin = await session.getTwin();
      if (!twin.ok) return { next: 0, failure: this.deviceFailure(deviceId, twin.failure) };
      for (let i = 0; i < entries.length; i++) {
        const notAdmitted = i > 0 ? await this.admitTwin(signal) : undefined;
        if (notAdmitted) return { next: i, failure: notAdmitted };
        const sent = await session.patchReported(twin.value, entries[i].item.patch);
        if (!sent.ok) return { next: i, failure: this.deviceFailure(deviceId, sent.failure) };
        outcomes[entries[i].index] = { iccid: entries[i].item.iccid, status: 'ok' };
        this.twinBudget.succeeded();
      }
      return { next: entries.length };
    } finally {
      await session.close();
    }
  }

  /** Back-end-only mode: PATCH /twins/{id} with the tags, in order; stops at the first failure. */
  private async patchTags(
    deviceId: string,
    entries: Entry[],
    outcomes: PublishOutcome[],
    signal?: AbortSignal
  ): Promise<{ next: number; failure?: Failure }> {
    for (let i = 0; i < entries.length; i++) {
      const notAdmitted = await this.admitTwin(signal);
      if (notAdmitted) return { next: i, failure: notAdmitted };
      try {
        // '*' is the SDK's "any etag": the connector is the only writer of these tags.
        await this.registry.updateTwin(deviceId, { tags: entries[i].item.patch }, '*');
      } catch (err) {
        return { next: i, failure: this.twinFailure(classifyServiceError(err, 'twin tags patch')) };
      }
      outcomes[entries[i].index] = { iccid: entries[i].item.iccid, status: 'ok' };
      this.twinBudget.succeeded();
    }
    return { next: entries.length };
  }

  /** One twin-update token, or a throttled failure when the wait would be too long. */
  private async admitTwin(signal?: AbortSignal): Promise<Failure | undefined> {
    const r = this.twinBudget.reserve(1);
    if (!r.ok)
      return { kind: 'throttled', reason: budgetReason('twin update', r.paused), retryAfterMs: r.retryAfterMs };
    if (await sleepUnlessAborted(r.waitMs, signal)) return undefined;
    this.twinBudget.refund(1);
    return { kind: 'retryable', reason: 'aborted' };
  }

  private deviceFailure(deviceId: string, failure: Failure): Failure {
    if (failure.status === 401 || failure.status === 404) this.identities.forget(deviceId);
    if (failure.dropped) this.twinBudget.dropped();
    return this.twinFailure(failure);
  }

  /** A 429 pauses twin updates for every device, and the outcome says how long. */
  private twinFailure(failure: Failure): Failure {
    if (failure.kind === 'throttled')
      failure = { ...failure, retryAfterMs: this.twinBudget.throttled(failure.retryAfterMs) };
    this.log.warn('azure twin update failed', { kind: failure.kind, reason: failure.reason });
    return failure;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.service.close();
  }
}

function groupByDevice(items: PublishItem[]): Map<string, Entry[]> {
  const groups = new Map<string, Entry[]>();
  items.forEach((item, index) => {
    const group = groups.get(item.deviceId);
    if (group) group.push({ item, index });
    else groups.set(item.deviceId, [{ item, index }]);
  });
  return groups;
}

/** Builds the target from validated settings (see `parseAzureTargetConfig`). */
export function createAzureTarget(config: AzureTargetConfig & { name?: string }, deps: AzureTargetDeps = {}): Target {
  return new AzureIotHubTarget(config, deps.logger ?? createLogger());
}
