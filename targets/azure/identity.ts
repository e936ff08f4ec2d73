/**
 * Identities in the hub's registry, used as sparingly as IoT Hub's 100 operations/min (S1) demand:
 * - `module` mode: a SIM publishing for the first time gets its module (`PUT /devices/{id}/modules/{moduleId}`,
 *   one operation); only when the device is missing is it created (bulk, ≤100 per call), then the module. The
 *   customer's device is never changed.
 * - `reported` mode: the device is created in bulk with the twin tag `kiteConnector` that marks it as the
 *   connector's. A device id that already exists is used only if its twin carries that tag; a foreign device is a
 *   permanent failure, never taken over.
 * - `tags` mode: nothing here (the twin PATCH needs no identity lookup).
 * Later publishes need no lookup at all: device tokens are signed with the policy key. Only when a connection
 * is refused does `diagnose` look the identity up (missing, disabled, or a policy without DeviceConnect).
 * Device ids are validated before any registry call. A bulk 400 with a result fails the devices it names (with the
 * hub's code and words) and the others are created; one without a result (or naming none of the call's devices)
 * falls back to one device at a time, so one bad entry cannot fail the rest.
 */
import { randomBytes } from 'node:crypto';
import type { Registry } from 'azure-iothub';
import { redact, type Logger } from '../../shared/log';
import { classifyServiceError, hubErrorText, type Failure } from './errors';
import { sleepUnlessAborted } from '../../shared/limits';
import { budgetReason, type HubBudget } from './rate';
import { IDENTITY_ID } from './tiers';

/** IoT Hub's limit for one bulk registry call. */
export const BULK_MAX = 100;

/** The twin tag that marks a device identity the connector created (reported mode). */
export const CREATED_TAG = 'kiteConnector';
export const CREATED_TAG_VALUE = { createdBy: 'kite-cloud-connector' };

export type KeyResult = { ok: true; key: string } | { ok: false; failure: Failure };

/** What a refused connection turned out to be. */
export type Diagnosis =
  /** The identity was missing and is now created: connect again. */
  | { retry: 'created' }
  /** The identity exists and is enabled, so the policy token was refused: the policy lacks DeviceConnect. */
  | { retry: 'policy-refused' }
  | { failure: Failure };

/** A Map kept in least-recently-used order, bounded to `max` entries. */
class LruCache<V> {
  private map = new Map<string, V>();

  constructor(private readonly max: number) {}

  get(key: string): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }

  delete(key: string): void {
    this.map.delete(key);
  }
}

/** Why a device id cannot be used, before anything is sent to the hub; undefined when it is valid. */
export function invalidDeviceId(deviceId: string): Failure | undefined {
  if (IDENTITY_ID.test(deviceId)) return undefined;
  return {
    kind: 'permanent',
    reason:
      `device id ${JSON.stringify(deviceId.slice(0, 140))} is not a valid IoT Hub id (1-128 ASCII letters, digits ` +
      `or - : . + % _ # * ? ! ( ) , = @ ; $ '): fix the SIM's field or the target's deviceIdTemplate`,
  };
}

export interface IdentitiesOptions {
  mode: 'module' | 'reported' | 'tags';
  moduleId: string;
  keyCacheSize: number;
  /** Names the policy and what the mode needs, for a 401. */
  policyHint: string;
}

interface HubError {
  failure: Failure;
  code?: string;
}

export class Identities {
  private readonly keys: LruCache<string>;
  /** Identities known to exist (module created, or the device checked as ours), so retries skip the registry. */
  private readonly ensured: LruCache<boolean>;

  constructor(
    private readonly registry: Registry,
    private readonly budget: HubBudget,
    private readonly options: IdentitiesOptions,
    private readonly log: Logger
  ) {
    this.keys = new LruCache(options.keyCacheSize);
    this.ensured = new LruCache(options.keyCacheSize);
  }

  /**
   * Makes sure each device (and its module, in module mode) exists before its first publish. Returns a failure
   * per device id that cannot be published; ids not in the map are ready. Never throws.
   */
  async ensure(requested: string[], signal?: AbortSignal): Promise<Map<string, Failure>> {
    const failures = new Map<string, Failure>();
    if (this.options.mode === 'tags') return failures;
    // Ensured earlier in this process (e.g. by an attempt that failed later): no registry call again.
    const deviceIds = requested.filter((id) => !this.ensured.get(id));
    if (deviceIds.length === 0) return failures;
    try {
      await this.ensureNow(deviceIds, failures, signal);
    } finally {
      for (const id of deviceIds) if (!failures.has(id)) this.ensured.set(id, true);
    }
    return failures;
  }

  private async ensureNow(deviceIds: string[], failures: Map<string, Failure>, signal?: AbortSignal): Promise<void> {
    if (this.options.mode === 'reported') {
      const existing = await this.createDevices(deviceIds, failures, signal);
      await this.checkOwnership(existing, failures);
      return;
    }
    // Module first costs 1 operation when the device exists (the customer's fleet), 3 when it does not. A probe
    // of a few ids says which case this is; when most devices are missing, the rest are created in bulk first
    // (2 operations each).
    const probe = deviceIds.slice(0, PROBE_SIZE);
    const missing: string[] = [];
    const addModules = (ids: string[]) =>
      this.forEachLimited(ids, async (id) => {
        const r = await this.addModule(id, signal);
        if (r === 'device-missing') missing.push(id);
        else if (r) failures.set(id, r);
      });
    await addModules(probe);
    const rest = deviceIds.slice(PROBE_SIZE);
    if (missing.length * 2 > probe.length) missing.push(...rest);
    else await addModules(rest);
    if (missing.length === 0) return;
    await this.createDevices(missing, failures, signal);
    await this.forEachLimited(
      missing.filter((id) => !failures.has(id)),
      async (id) => {
        const r = await this.addModule(id, signal);
        if (r === 'device-missing') failures.set(id, { kind: 'retryable', reason: 'device vanished while created' });
        else if (r) failures.set(id, r);
      }
    );
  }

  /** Creates one missing device (tags mode, after a 404); undefined when it exists now. */
  async ensureDevice(deviceId: string, signal?: AbortSignal): Promise<Failure | undefined> {
    const failures = new Map<string, Failure>();
    await this.createDevices([deviceId], failures, signal);
    return failures.get(deviceId);
  }

  /** After the hub refused a connection: why, and what to do. One or two identity operations. */
  async diagnose(deviceId: string, signal?: AbortSignal): Promise<Diagnosis> {
    const device = await this.call(`device get`, 1, signal, () => this.registry.get(deviceId));
    if ('failure' in device) {
      if (device.failure.status !== 404) return device;
      if (this.options.mode === 'reported') {
        const failures = new Map<string, Failure>();
        await this.createDevices([deviceId], failures, signal);
        return failures.get(deviceId) ? { failure: failures.get(deviceId)! } : { retry: 'created' };
      }
      const created = await this.ensure([deviceId], signal);
      return created.get(deviceId) ? { failure: created.get(deviceId)! } : { retry: 'created' };
    }
    const body = device.value as { status?: string; statusReason?: string };
    if (body.status === 'disabled') {
      const why = body.statusReason ? ` (statusReason: ${JSON.stringify(body.statusReason.slice(0, 200))})` : '';
      const failure: Failure = {
        kind: 'permanent',
        reason: `device ${deviceId} is disabled in the hub${why}: the hub refuses its connections; enable it to publish again`,
      };
      return { failure };
    }
    if (this.options.mode === 'module') {
      const module = await this.call('module get', 1, signal, () =>
        this.registry.getModule(deviceId, this.options.moduleId)
      );
      if ('failure' in module && module.failure.status === 404) {
        const r = await this.addModule(deviceId, signal);
        return r && r !== 'device-missing' ? { failure: r } : { retry: 'created' };
      }
      if ('failure' in module) return module;
    }
    return { retry: 'policy-refused' };
  }

  /** The identity's own primary key (fallback when the policy lacks DeviceConnect): one `get`, then cached. */
  async key(deviceId: string, moduleId: string | undefined, signal?: AbortSignal): Promise<KeyResult> {
    const cacheKey = moduleId ? `${deviceId}/${moduleId}` : deviceId;
    const cached = this.keys.get(cacheKey);
    if (cached) return { ok: true, key: cached };
    const got = await this.call(moduleId ? 'module get' : 'device get', 1, signal, () =>
      moduleId ? this.registry.getModule(deviceId, moduleId) : this.registry.get(deviceId)
    );
    if ('failure' in got) return { ok: false, failure: got.failure };
    const key = (got.value as { authentication?: { symmetricKey?: { primaryKey?: string } } }).authentication
      ?.symmetricKey?.primaryKey;
    if (!key) {
      return { ok: false, failure: { kind: 'permanent', reason: `identity ${cacheKey} has no symmetric key (x509?)` } };
    }
    this.keys.set(cacheKey, key);
    return { ok: true, key };
  }

  /** Drops what is known of an identity the hub refused (its key, that it exists). */
  forget(deviceId: string, moduleId?: string): void {
    this.keys.delete(moduleId ? `${deviceId}/${moduleId}` : deviceId);
    this.ensured.delete(deviceId);
  }

  /** PUT the module; `device-missing` on 404, undefined when it exists now. */
  private async addModule(deviceId: string, signal?: AbortSignal): Promise<Failure | 'device-missing' | undefined> {
    const moduleId = this.options.moduleId;
    const r = await this.call('module create', 1, signal, () =>
      this.registry.addModule({ deviceId, moduleId, managedBy: 'kite-cloud-connector' } as never)
    );
    if (!('failure' in r)) return undefined;
    if (r.failure.status === 409) return undefined;
    if (r.failure.status === 404) return 'device-missing';
    return r.failure;
  }

  /** Creates devices in bulk chunks; returns those that already existed. Failures go into `failures`. */
  private async createDevices(ids: string[], failures: Map<string, Failure>, signal?: AbortSignal): Promise<string[]> {
    const existing: string[] = [];
    // A chunk the client's burst holds: from a full bucket, a bulk call goes at once.
    const chunkSize = Math.max(1, Math.min(BULK_MAX, Math.floor(this.budget.burst)));
    for (let i = 0; i < ids.length; i += chunkSize) {
      const chunk = ids.slice(i, i + chunkSize);
      const stop = await this.createChunk(chunk, failures, existing, signal);
      if (stop) {
        for (const id of ids.slice(i + chunkSize)) failures.set(id, stop);
        break;
      }
    }
    return existing;
  }

  /** One bulk call; returns a failure that should stop further chunks (throttled, aborted). */
  private async createChunk(
    chunk: string[],
    failures: Map<string, Failure>,
    existing: string[],
    signal?: AbortSignal
  ): Promise<Failure | undefined> {
    const devices = chunk.map((deviceId) => ({
      deviceId,
      status: 'enabled' as const,
      // Keys generated here: a bulk result carries no keys, and a later fallback to device keys reads them back.
      authentication: { type: 'sas' as const, symmetricKey: { primaryKey: newKey(), secondaryKey: newKey() } },
      ...(this.options.mode === 'reported' ? { tags: { [CREATED_TAG]: CREATED_TAG_VALUE } } : {}),
    }));
    const r = await this.call('bulk create', chunk.length, signal, () => this.registry.addDevices(devices as never));
    let result: BulkResult;
    if ('failure' in r) {
      const body = bulkResultFromError(r.error);
      if (body) result = body;
      else if (r.failure.status === 400) return this.createOneByOne(chunk, failures, existing, signal);
      else {
        for (const id of chunk) failures.set(id, r.failure);
        return r.failure.kind === 'permanent' ? undefined : r.failure;
      }
    } else result = r.value as BulkResult;
    const errors = new Map((result.errors ?? []).map((e) => [e.deviceId, e]));
    // Failed, yet no device of the call named: which ones were created is unknown, so each on its own (an
    // existing one answers 409).
    if (!result.isSuccessful && !chunk.some((id) => errors.has(id)))
      return this.createOneByOne(chunk, failures, existing, signal);
    for (const id of chunk) {
      const error = errors.get(id);
      if (!error) continue;
      const code = String(error.errorCode);
      if (/DeviceAlreadyExists|409/.test(code)) existing.push(id);
      else failures.set(id, { kind: 'permanent', reason: bulkReason(id, code, error.errorStatus) });
    }
    this.log.info('azure identities created', { requested: chunk.length, existing: existing.length });
    return undefined;
  }

  /**
   * After a bulk 400 without a usable result: each device on its own, so one bad entry cannot fail the others; a
   * device the hub refuses alone (a 4xx) is a permanent failure with the hub's code.
   */
  private async createOneByOne(
    chunk: string[],
    failures: Map<string, Failure>,
    existing: string[],
    signal?: AbortSignal
  ): Promise<Failure | undefined> {
    this.log.warn('azure bulk create failed without naming its devices: creating one device at a time', {
      devices: chunk.length,
    });
    for (const deviceId of chunk) {
      const r = await this.call('device create', 1, signal, () => this.registry.create({ deviceId }));
      if (!('failure' in r)) {
        // A single create carries no tags: mark the connector's device on its twin.
        if (this.options.mode !== 'reported') continue;
        try {
          await this.registry.updateTwin(deviceId, { tags: { [CREATED_TAG]: CREATED_TAG_VALUE } }, '*');
        } catch (err) {
          failures.set(deviceId, this.serviceFailure(err, 'twin tag').failure);
        }
        continue;
      }
      if (r.failure.status === 409) existing.push(deviceId);
      else if (r.failure.kind === 'permanent') {
        const said = hubErrorText((r.error as { responseBody?: unknown } | undefined)?.responseBody);
        const reason = redact(
          `the hub refused to create device ${deviceId} (${r.failure.reason}${said ? `: ${JSON.stringify(said)}` : ''}); ` +
            `fix the device id or the hub`
        );
        failures.set(deviceId, { ...r.failure, reason });
      } else failures.set(deviceId, r.failure);
      if (r.failure.kind === 'throttled') return r.failure;
    }
    return undefined;
  }

  /** Reported mode: an existing device is used only when its twin carries the connector's tag. */
  private async checkOwnership(ids: string[], failures: Map<string, Failure>): Promise<void> {
    await this.forEachLimited(ids, async (deviceId) => {
      try {
        const twin = (await this.registry.getTwin(deviceId)).responseBody as { tags?: Record<string, unknown> };
        const tag = twin.tags?.[CREATED_TAG] as { createdBy?: unknown } | undefined;
        if (tag?.createdBy === CREATED_TAG_VALUE.createdBy) return;
        failures.set(deviceId, {
          kind: 'permanent',
          reason:
            `device ${deviceId} already exists and was not created by the connector: reported mode never connects ` +
            `as a device it does not own (that would disconnect the real device); use mode "module" (the default), ` +
            `or "tags", or another deviceIdTemplate`,
        });
      } catch (err) {
        failures.set(deviceId, this.serviceFailure(err, 'twin get').failure);
      }
    });
  }

  /** One registry call under the identity budget; a failure is classified (a 429 pauses identity operations). */
  private async call<T extends { responseBody: unknown }>(
    operation: string,
    cost: number,
    signal: AbortSignal | undefined,
    run: () => Promise<T>
  ): Promise<{ value: unknown } | (HubError & { error: unknown })> {
    const r = await this.budget.reserve(cost);
    if (!r.ok) {
      const failure: Failure = {
        kind: 'throttled',
        reason: budgetReason('identity operation', r.paused),
        retryAfterMs: r.retryAfterMs,
      };
      return { failure, error: undefined };
    }
    if (!(await sleepUnlessAborted(r.waitMs, signal))) {
      await this.budget.refund(cost);
      return { failure: { kind: 'retryable', reason: 'aborted' }, error: undefined };
    }
    try {
      return { value: (await run()).responseBody };
    } catch (err) {
      return { ...this.serviceFailure(err, operation), error: err };
    }
  }

  private serviceFailure(err: unknown, operation: string): HubError {
    const failure = classifyServiceError(err, operation);
    if (failure.kind === 'throttled' && !failure.quotaExceeded)
      failure.retryAfterMs = this.budget.throttled(failure.retryAfterMs);
    if (failure.status === 401) {
      failure.kind = 'retryable';
      failure.reason = `${failure.reason}: ${this.options.policyHint}`;
    }
    if (failure.status !== 404 && failure.status !== 409)
      this.log.warn('azure identity operation failed', { reason: failure.reason });
    return { failure };
  }

  private async forEachLimited(ids: string[], work: (id: string) => Promise<void>): Promise<void> {
    const queue = [...ids];
    const worker = async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) await work(id);
    };
    await Promise.all(Array.from({ length: Math.min(LOOKUP_CONCURRENCY, queue.length) }, worker));
  }
}

/**
 * How many registry calls run at once; the identity budget, not this, sets the pace. Enough that a batch's
 * modules are made in a few round trips: the batch's twin updates wait for them.
 */
const LOOKUP_CONCURRENCY = 32;
/** Ids tried module-first before deciding whether the devices mostly exist. */
const PROBE_SIZE = 8;

interface BulkResult {
  isSuccessful: boolean;
  errors?: { deviceId: string; errorCode: unknown; errorStatus?: unknown }[];
}

/** A device the hub refused in a bulk create: its code and the hub's words (shortened, redacted). */
function bulkReason(deviceId: string, code: string, status: unknown): string {
  const said = typeof status === 'string' && status ? `: ${JSON.stringify(status.slice(0, 200))}` : '';
  return redact(
    `the hub refused to create device ${deviceId} (bulk create: ${code}${said}); fix the device id or the hub`
  );
}

function newKey(): string {
  return randomBytes(32).toString('base64');
}

/** The BulkRegistryOperationResult of a bulk call answered 400, if the hub sent one. */
function bulkResultFromError(err: unknown): BulkResult | undefined {
  const e = err as { response?: { statusCode?: number }; responseBody?: unknown };
  if (e?.response?.statusCode !== 400 || typeof e.responseBody !== 'string') return undefined;
  try {
    const body = JSON.parse(e.responseBody) as { isSuccessful?: unknown; errors?: unknown };
    return typeof body.isSuccessful === 'boolean' && Array.isArray(body.errors) ? (body as BulkResult) : undefined;
  } catch {
    return undefined;
  }
}
