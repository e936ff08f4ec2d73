/**
 * Azure IoT Hub target.
 * - `module` mode (default): each SIM's record goes to the reported properties of the module `moduleId` under its
 *   device id, over the module's own MQTT connection. A device holding its id (the customer's real device) is
 *   never disconnected: a module is a separate identity with its own connection.
 * - `reported` mode: the device twin's reported properties, only for devices the connector created.
 * - `tags` mode: twin tags through the service API.
 * Connections are open → patch(es) → close through a bounded pool, one per identity at a time, authenticated
 * with tokens signed by the connection string's policy on the identity's behalf (no registry lookup per SIM;
 * each identity's own key only when the policy lacks DeviceConnect). Patches go straight to the documented
 * topic, one billed message per update. Budgets per hub (identity operations, connections, twin updates, the
 * daily message budget) follow the tier; throttling shows as 429s, as closed connections and slow CONNACKs.
 */
import type { Registry } from 'azure-iothub';
import { SharedAccessSignature } from 'azure-iothub';
import { createLogger, type Logger } from '../../shared/log';
import type { EventItem, PublishContext, PublishItem, PublishOutcome, Target } from '../target';
import { azureBudgets, parseServiceConnectionString, type AzureTargetConfig, type ServiceCredentials } from './config';
import { DailyMessageBudget, type Spend } from './daily-budget';
import { classifyServiceError, type Failure } from './errors';
import { ThrottleSignals, type ThrottleSignalOptions } from './hub-signals';
import { Identities, invalidDeviceId } from './identity';
import {
  KeyedLock,
  LocalDailyBudget,
  localBudgets,
  peerId,
  Semaphore,
  sleepUnlessAborted,
  type Budgets,
  type RateLimit,
} from '../../shared/limits';
import { budgetReason, HubBudget, pacedLimit, registryLimit } from './rate';
import { createRegistry, type RegistryHandle } from './service';
import { billedMessages } from './tiers';
import { TlsReuse, TwinSession, type SessionFailure } from './twin-session';

export type { AzureTargetConfig } from './config';
export { parseAzureTargetConfig } from './config';

export interface AzureTargetDeps {
  logger?: Logger;
  /** The hub's budgets per operation class and its daily messages; the worker shares them in Redis. @default this process only */
  budgets?: Budgets;
  /** Time for the daily budget when `budgets` is not given (tests move it to the next UTC day). @default Date.now */
  now?: () => number;
  /** When closed connections and slow CONNACKs count as throttling. @default 3 within 10 s; CONNACK ≥ 5 s */
  throttleSignals?: ThrottleSignalOptions;
}

/** An item (a record patch, or a SIM's events) with its position in the call, so outcomes come back in order. */
interface Entry {
  item: PublishItem | EventItem;
  index: number;
}

/** Used when the hub throttles without saying for how long and no budget pause applies. */
const DEFAULT_THROTTLE_MS = 10_000;
/** SAS tokens signed for one connection live this long. */
const TOKEN_TTL_S = 3600;

const POLICY_NEEDS = {
  module: 'RegistryReadWrite and DeviceConnect',
  reported: 'RegistryReadWrite, ServiceConnect and DeviceConnect',
  tags: 'ServiceConnect (and RegistryReadWrite to create missing devices)',
} as const;

function toOutcome(iccid: string, failure: Failure): PublishOutcome {
  if (failure.kind === 'throttled') {
    return {
      iccid,
      status: 'throttled',
      retryAfterMs: failure.retryAfterMs ?? DEFAULT_THROTTLE_MS,
      reason: failure.reason,
      ...(failure.pausedUntil ? { pausedUntil: failure.pausedUntil } : {}),
      ...(failure.pauseCause ? { pauseCause: failure.pauseCause } : {}),
    };
  }
  return { iccid, status: failure.kind, reason: failure.reason };
}

class AzureIotHubTarget implements Target {
  readonly name: string;
  /** Twin updates per second as the connector paces them: the hub's tightest steady budget for publishing. */
  readonly itemsPerSecond: number;
  private readonly log: Logger;
  private readonly creds: ServiceCredentials;
  private readonly service: RegistryHandle;
  private readonly registry: Registry;
  private readonly identities: Identities;
  private readonly identityBudget: HubBudget;
  private readonly twinBudget: HubBudget;
  private readonly connectionBudget: HubBudget;
  private readonly daily: DailyMessageBudget;
  private readonly signals: ThrottleSignals;
  private readonly messageChunkBytes: number;
  private readonly pool: Semaphore;
  private readonly locks = new KeyedLock();
  private readonly deviceHost: string;
  private readonly tls: TlsReuse;
  private readonly policyHint: string;
  /** False once the hub refused a policy-signed token for an enabled identity: the policy lacks DeviceConnect. */
  private policyConnects = true;
  private lastQuotaProbe = 0;
  private closed = false;

  constructor(
    private readonly config: AzureTargetConfig,
    deps: AzureTargetDeps
  ) {
    this.name = config.name;
    this.log = (deps.logger ?? createLogger()).child({ target: this.name });
    this.creds = parseServiceConnectionString(config.connectionString, `targets.${this.name}`);
    this.service = createRegistry(this.creds, config.serviceUrl, config.ca);
    this.registry = this.service.registry;
    const budgets = azureBudgets(config);
    // One bucket per hub and operation class, whichever worker or target instance talks to the hub.
    const peer = peerId('azure-iothub', this.creds.hostName.toLowerCase());
    const shared = deps.budgets ?? localBudgets();
    // Every class runs a little under the hub's rate, so that requests sent the moment their token exists never
    // find the hub's bucket empty. Identity operations keep most of the hub's burst (a bulk call counts each
    // device, up to 100 at once; see `registryLimit`); the classes the hub counts per second take a small one
    // (see `pacedLimit`) and space this process's requests one hub token apart, so a stall does not bunch them.
    const bucket = (cls: string, capacity: number, periodMs: number, limit: RateLimit) =>
      new HubBudget(shared.rate(`${peer}:${cls}`, limit), capacity, periodMs, {
        burst: limit.burst,
        spaceSends: periodMs === 1_000,
      });
    const identities = budgets.identityOpsPerMinute;
    this.identityBudget = bucket('identity', identities, 60_000, registryLimit(identities));
    const twin = pacedLimit(budgets.twinUpdatesPerSecond, 1_000);
    this.twinBudget = bucket('twin-update', budgets.twinUpdatesPerSecond, 1_000, twin);
    this.itemsPerSecond = twin.perSecond;
    const connections = pacedLimit(budgets.connectionsPerSecond, 1_000);
    this.connectionBudget = bucket('connection', budgets.connectionsPerSecond, 1_000, connections);
    this.messageChunkBytes = budgets.messageChunkBytes;
    const now = deps.now ?? Date.now;
    this.daily = new DailyMessageBudget(
      this.creds.hostName,
      budgets.dailyMessageBudget,
      deps.budgets
        ? deps.budgets.daily(`${peer}:messages`, budgets.dailyMessageBudget)
        : new LocalDailyBudget(budgets.dailyMessageBudget, now),
      now
    );
    this.signals = new ThrottleSignals(deps.throttleSignals ?? {}, () => {
      const ms = this.twinBudget.throttled();
      this.connectionBudget.throttled(ms);
      this.log.warn('azure hub is shedding connections: pausing twin updates and connections', { pauseMs: ms });
      return ms;
    });
    this.policyHint =
      `policy '${this.creds.keyName}' was refused; mode '${config.mode}' needs a policy with ` +
      `${POLICY_NEEDS[config.mode]} (e.g. iothubowner)`;
    this.identities = new Identities(
      this.registry,
      this.identityBudget,
      { mode: config.mode, moduleId: config.moduleId, keyCacheSize: config.keyCacheSize, policyHint: this.policyHint },
      this.log
    );
    this.pool = new Semaphore(config.maxConnections);
    this.deviceHost = config.deviceHost ?? this.creds.hostName;
    this.tls = new TlsReuse(config.ca);
  }

  async publish(items: PublishItem[], signal?: AbortSignal, _context?: PublishContext): Promise<PublishOutcome[]> {
    return this.deliver(items, signal);
  }

  /**
   * Each event as one device-to-cloud message of the SIM's identity (module or device), with the application
   * property `kiteEvent=<type>` for IoT Hub message routing, `$.mid` its id, JSON content; billed like any message.
   */
  async publishEvents(items: EventItem[], signal?: AbortSignal): Promise<PublishOutcome[]> {
    if (this.config.mode === 'tags') {
      const reason = "mode 'tags' has no device connection to send events on; use mode 'module' or 'reported'";
      return items.map((item) => ({ iccid: item.iccid, status: 'permanent', reason }));
    }
    return this.deliver(items, signal);
  }

  private async deliver(items: (PublishItem | EventItem)[], signal?: AbortSignal): Promise<PublishOutcome[]> {
    const outcomes: PublishOutcome[] = new Array(items.length);
    if (this.closed || signal?.aborted) {
      const reason = this.closed ? 'target closed' : 'aborted';
      return items.map((item) => ({ iccid: item.iccid, status: 'retryable', reason }));
    }
    const groups = groupByDevice(items);
    for (const [deviceId, entries] of groups) {
      const invalid = invalidDeviceId(deviceId);
      if (invalid) {
        for (const e of entries) outcomes[e.index] = toOutcome(e.item.iccid, invalid);
        groups.delete(deviceId);
      }
    }
    if (this.config.mode !== 'tags') {
      const paused = this.daily.paused();
      if (paused && !paused.ok) {
        return fill(items, outcomes, spentFailure(paused));
      }
    }
    const firsts = [...groups]
      .filter(([, entries]) => entries.some((e) => 'full' in e.item && e.item.full))
      .map(([id]) => id);
    const ensured = await this.identities.ensure(firsts, signal);
    if ([...ensured.values()].some((f) => f.quotaExceeded)) {
      const spent = this.daily.exhaust('hub-quota');
      if (!spent.ok) return fill(items, outcomes, spentFailure(spent));
    }
    await Promise.all(
      [...groups].map(([deviceId, entries]) => {
        const failure = ensured.get(deviceId);
        if (failure) {
          for (const e of entries) outcomes[e.index] = toOutcome(e.item.iccid, failure);
          return undefined;
        }
        return this.publishDevice(deviceId, entries, outcomes, signal);
      })
    );
    return outcomes;
  }

  /** All of one identity's items, in order, under its lock and a place in the connection pool. */
  private async publishDevice(
    deviceId: string,
    entries: Entry[],
    outcomes: PublishOutcome[],
    signal?: AbortSignal
  ): Promise<void> {
    const lockKey = this.config.mode === 'module' ? `${deviceId}/${this.config.moduleId}` : deviceId;
    await this.locks.run(lockKey, async () => {
      const release = await this.pool.acquire();
      try {
        const done =
          this.config.mode === 'tags'
            ? await this.patchTags(deviceId, entries, outcomes, signal)
            : await this.patchOverMqtt(deviceId, entries, outcomes, signal);
        if (done.failure)
          for (const e of entries.slice(done.next)) outcomes[e.index] = toOutcome(e.item.iccid, done.failure);
      } finally {
        release();
      }
    });
  }

  /** The SAS for a connection: signed by the policy on the identity's behalf, or by the identity's own key. */
  private async password(
    deviceId: string,
    signal?: AbortSignal
  ): Promise<{ ok: true; sas: string } | { ok: false; failure: Failure }> {
    const moduleId = this.config.mode === 'module' ? this.config.moduleId : undefined;
    const resource = `${this.creds.hostName}/devices/${deviceId}${moduleId ? `/modules/${moduleId}` : ''}`;
    const expiry = Math.floor(Date.now() / 1000) + TOKEN_TTL_S;
    if (this.policyConnects) {
      return {
        ok: true,
        sas: SharedAccessSignature.create(resource, this.creds.keyName, this.creds.key, expiry).toString(),
      };
    }
    const key = await this.identities.key(deviceId, moduleId, signal);
    if (!key.ok) return key;
    return { ok: true, sas: SharedAccessSignature.create(resource, '', key.key, expiry).toString() };
  }

  /** Connect as the module (or device) and send its patches in order; stops at the first failure. */
  private async patchOverMqtt(
    deviceId: string,
    entries: Entry[],
    outcomes: PublishOutcome[],
    signal?: AbortSignal
  ): Promise<{ next: number; failure?: Failure }> {
    const moduleId = this.config.mode === 'module' ? this.config.moduleId : undefined;
    let opened: Awaited<ReturnType<typeof TwinSession.open>> | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const notAdmitted = await this.admit(this.connectionBudget, 'connection', signal);
      if (notAdmitted) return { next: 0, failure: notAdmitted };
      const password = await this.password(deviceId, signal);
      if (!password.ok) return { next: 0, failure: password.failure };
      opened = await TwinSession.open({
        connectHost: this.deviceHost,
        hubHost: this.creds.hostName,
        deviceId,
        moduleId,
        password: password.sas,
        ca: this.config.ca,
        tls: this.tls,
        timeoutMs: this.config.operationTimeoutMs,
        signal,
      });
      if (opened.ok || !opened.failure.unauthorized) break;
      // Refused: a missing or disabled identity, a regenerated key, or a policy without DeviceConnect.
      if (!this.policyConnects) this.identities.forget(deviceId, moduleId);
      const diagnosis = await this.identities.diagnose(deviceId, signal);
      if ('failure' in diagnosis) return { next: 0, failure: diagnosis.failure };
      if (diagnosis.retry === 'policy-refused' && this.policyConnects) {
        this.policyConnects = false;
        this.log.warn('azure hub refused a token signed by the policy: falling back to each identity key', {
          policy: this.creds.keyName,
        });
      }
    }
    if (!opened) return { next: 0, failure: { kind: 'retryable', reason: 'not connected' } };
    if (!opened.ok) return { next: 0, failure: await this.sessionFailure(deviceId, opened.failure) };
    const session = opened.value;
    try {
      const paused = this.signals.connack(session.connackMs);
      if (paused)
        this.log.warn('azure CONNACKs are slow: the hub is shaping traffic', { connackMs: session.connackMs });
      for (let i = 0; i < entries.length; i++) {
        const item = entries[i].item;
        if ('events' in item) {
          const failure = await this.sendEvents(deviceId, session, item);
          if (failure) return { next: i, failure };
          outcomes[entries[i].index] = { iccid: item.iccid, status: 'ok' };
          this.connectionBudget.succeeded();
          continue;
        }
        const notAdmitted = await this.admit(this.twinBudget, 'twin update', signal);
        if (notAdmitted) return { next: i, failure: notAdmitted };
        const body = JSON.stringify(item.patch);
        const spent = await this.daily.spend(billedMessages(Buffer.byteLength(body), this.messageChunkBytes));
        if (!spent.ok) return { next: i, failure: spentFailure(spent) };
        const sent = await session.patchReported(item.patch);
        if (!sent.ok) return { next: i, failure: await this.sessionFailure(deviceId, sent.failure) };
        outcomes[entries[i].index] = { iccid: entries[i].item.iccid, status: 'ok' };
        this.twinBudget.succeeded();
        this.connectionBudget.succeeded();
      }
      return { next: entries.length };
    } finally {
      await session.close();
    }
  }

  /** One SIM's events, each a device-to-cloud message within the daily budget; the first failure stops. */
  private async sendEvents(deviceId: string, session: TwinSession, item: EventItem): Promise<Failure | undefined> {
    for (const event of item.events) {
      const body = JSON.stringify(event);
      const spent = await this.daily.spend(billedMessages(Buffer.byteLength(body), this.messageChunkBytes));
      if (!spent.ok) return spentFailure(spent);
      const properties = { kiteEvent: event.type, '$.mid': event.id, '$.ct': 'application/json', '$.ce': 'utf-8' };
      const sent = await session.sendEvent(body, properties);
      if (!sent.ok) return this.sessionFailure(deviceId, sent.failure);
    }
    return undefined;
  }

  /** Back-end-only mode: PATCH /twins/{id} with the tags, in order; creates a missing device once. */
  private async patchTags(
    deviceId: string,
    entries: Entry[],
    outcomes: PublishOutcome[],
    signal?: AbortSignal
  ): Promise<{ next: number; failure?: Failure }> {
    let created = false;
    for (let i = 0; i < entries.length; i++) {
      const notAdmitted = await this.admit(this.twinBudget, 'twin update', signal);
      if (notAdmitted) return { next: i, failure: notAdmitted };
      try {
        // '*' is the SDK's "any etag": the connector is the only writer of these tags.
        await this.registry.updateTwin(deviceId, { tags: (entries[i].item as PublishItem).patch }, '*'); // tags mode sends no events
      } catch (err) {
        const failure = await this.serviceFailure(err, 'twin tags patch');
        if (failure.status === 404 && !created) {
          created = true;
          const made = await this.identities.ensureDevice(deviceId, signal);
          if (!made) {
            i--;
            continue;
          }
          return { next: i, failure: made };
        }
        return { next: i, failure };
      }
      outcomes[entries[i].index] = { iccid: entries[i].item.iccid, status: 'ok' };
      this.twinBudget.succeeded();
    }
    return { next: entries.length };
  }

  /** One token of `budget`, or a throttled failure when the wait would be too long. */
  private async admit(budget: HubBudget, operation: string, signal?: AbortSignal): Promise<Failure | undefined> {
    const r = await budget.reserve(1);
    if (!r.ok) return { kind: 'throttled', reason: budgetReason(operation, r.paused), retryAfterMs: r.retryAfterMs };
    if ((await sleepUnlessAborted(r.waitMs, signal)) && (await budget.turn(signal))) return undefined;
    await budget.refund(1);
    return { kind: 'retryable', reason: 'aborted' };
  }

  /** Classifies a device-side failure: throttling signals, quota, a 429 status. */
  private async sessionFailure(deviceId: string, failure: SessionFailure): Promise<Failure> {
    if (failure.closedAfterConnect && (await this.quotaExceeded(deviceId))) {
      const spent = this.daily.exhaust('hub-quota');
      if (!spent.ok) return spentFailure(spent);
    }
    if (failure.status === 429) {
      const ms = this.twinBudget.throttled(failure.retryAfterMs);
      failure = { ...failure, kind: 'throttled', retryAfterMs: ms };
    } else if (failure.closedByHub) {
      const paused = this.signals.signal();
      if (paused)
        failure = { ...failure, kind: 'throttled', reason: `${failure.reason} (hub throttling)`, retryAfterMs: paused };
      else this.twinBudget.dropped();
    }
    this.log.warn('azure twin update failed', { kind: failure.kind, reason: failure.reason });
    return failure;
  }

  /**
   * The hub closed a connection right after accepting it: past its daily quota it does exactly that. One cheap
   * registry call (at most every 10 s) tells: 403 IotHubQuotaExceeded.
   */
  private async quotaExceeded(deviceId: string): Promise<boolean> {
    if (Date.now() - this.lastQuotaProbe < 10_000) return false;
    this.lastQuotaProbe = Date.now();
    // An identity operation like any other: only when the hub's identity budget has one to spare right now.
    const r = await this.identityBudget.reserve(1, 0);
    if (!r.ok) return false;
    try {
      await this.registry.get(deviceId);
      return false;
    } catch (err) {
      return classifyServiceError(err, 'quota probe').quotaExceeded === true;
    }
  }

  /** Classifies a service-API error; a 429 pauses twin updates, a 403002 the whole target until 00:00 UTC. */
  private async serviceFailure(err: unknown, operation: string): Promise<Failure> {
    let failure = classifyServiceError(err, operation);
    if (failure.quotaExceeded) {
      const spent = this.daily.exhaust('hub-quota');
      if (!spent.ok) return spentFailure(spent);
    }
    if (failure.kind === 'throttled')
      failure = { ...failure, retryAfterMs: this.twinBudget.throttled(failure.retryAfterMs) };
    if (failure.status === 401)
      failure = { ...failure, kind: 'retryable', reason: `${failure.reason}: ${this.policyHint}` };
    this.log.warn('azure twin update failed', { kind: failure.kind, reason: failure.reason });
    return failure;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.service.close();
  }
}

/** The daily budget said no: throttled, and paused until 00:00 UTC when it is spent. */
function spentFailure(spent: Exclude<Spend, { ok: true }>): Failure {
  const { reason, retryAfterMs, pausedUntil, pauseCause } = spent;
  return { kind: 'throttled', reason, retryAfterMs, ...(pausedUntil ? { pausedUntil, pauseCause } : {}) };
}

function fill(items: { iccid: string }[], outcomes: PublishOutcome[], failure: Failure): PublishOutcome[] {
  items.forEach((item, i) => (outcomes[i] ??= toOutcome(item.iccid, failure)));
  return outcomes;
}

function groupByDevice(items: (PublishItem | EventItem)[]): Map<string, Entry[]> {
  const groups = new Map<string, Entry[]>();
  items.forEach((item, index) => {
    const group = groups.get(item.deviceId);
    if (group) group.push({ item, index });
    else groups.set(item.deviceId, [{ item, index }]);
  });
  return groups;
}

/** Builds the target from validated settings (see `parseAzureTargetConfig`). */
export function createAzureTarget(config: AzureTargetConfig, deps: AzureTargetDeps = {}): Target {
  return new AzureIotHubTarget(config, deps);
}
