/**
 * Device identities: make sure each SIM's device exists in the hub's identity registry and know its key.
 *
 * A SIM publishing for the first time (`full`) is most likely new: several of them are created with bulk
 * `addDevices` (≤100 per call, keys generated here because the bulk result carries no keys), one with `create`
 * (the hub generates the keys and returns them). Any other unknown SIM most likely exists (e.g. after a restart
 * emptied the key cache): `get` it, and create it on 404. Each device costs one identity operation, bulk or not.
 */
import { randomBytes } from 'node:crypto';
import type { Registry } from 'azure-iothub';
import type { Logger } from '../../shared/log';
import { classifyServiceError, type Failure } from './errors';
import { sleepUnlessAborted } from '../../shared/limits';
import { budgetReason, type HubBudget } from './rate';

/** IoT Hub's limit for one bulk registry call. */
export const BULK_MAX = 100;

export type KeyResult = { ok: true; key: string } | { ok: false; failure: Failure };

export interface IdentityRequest {
  deviceId: string;
  /** A first publish: create rather than look up. */
  likelyNew: boolean;
}

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

interface DeviceLike {
  deviceId?: string;
  authentication?: { symmetricKey?: { primaryKey?: string } };
}

function keyOf(device: DeviceLike | undefined): string | undefined {
  return device?.authentication?.symmetricKey?.primaryKey || undefined;
}

function newKey(): string {
  return randomBytes(32).toString('base64');
}

interface Work {
  deviceId: string;
  createFirst: boolean;
}

/** How many lookups/creates run at once; the rate budget, not this, sets the pace. */
const LOOKUP_CONCURRENCY = 8;

export class Identities {
  private readonly keys: LruCache<string>;

  constructor(
    private readonly registry: Registry,
    private readonly budget: HubBudget,
    cacheSize: number,
    private readonly log: Logger
  ) {
    this.keys = new LruCache(cacheSize);
  }

  /** Drops a key the hub no longer accepts, so that the next publish fetches it again. */
  forget(deviceId: string): void {
    this.keys.delete(deviceId);
  }

  /** The key of every requested device, creating devices as needed. Never throws. */
  async ensure(requests: IdentityRequest[], signal?: AbortSignal): Promise<Map<string, KeyResult>> {
    const results = new Map<string, KeyResult>();
    const fresh = new Set<string>();
    const work: Work[] = [];
    for (const { deviceId, likelyNew } of requests) {
      if (results.has(deviceId) || fresh.has(deviceId) || work.some((w) => w.deviceId === deviceId)) continue;
      const key = this.keys.get(deviceId);
      if (key) results.set(deviceId, { ok: true, key });
      else if (likelyNew) fresh.add(deviceId);
      else work.push({ deviceId, createFirst: false });
    }
    if (fresh.size > 1) {
      for (const deviceId of await this.createBulk([...fresh], results, signal))
        work.push({ deviceId, createFirst: false });
    } else {
      for (const deviceId of fresh) work.push({ deviceId, createFirst: true });
    }
    await this.runLimited(work, results, signal);
    return results;
  }

  /** Bulk-creates in chunks; returns the ids that already existed (to be looked up). */
  private async createBulk(ids: string[], results: Map<string, KeyResult>, signal?: AbortSignal): Promise<string[]> {
    const existing: string[] = [];
    const chunkSize = Math.max(1, Math.min(BULK_MAX, Math.floor(this.budget.capacity)));
    for (let i = 0; i < ids.length; i += chunkSize) {
      const chunk = ids.slice(i, i + chunkSize);
      const failure = await this.admit(chunk.length, signal);
      if (failure) {
        for (const id of ids.slice(i)) results.set(id, { ok: false, failure });
        break;
      }
      const chunkFailure = await this.createChunk(chunk, results, existing);
      if (chunkFailure?.kind === 'throttled') {
        for (const id of ids.slice(i + chunkSize)) results.set(id, { ok: false, failure: chunkFailure });
        break;
      }
    }
    return existing;
  }

  private async createChunk(
    chunk: string[],
    results: Map<string, KeyResult>,
    existing: string[]
  ): Promise<Failure | undefined> {
    const keys = new Map(chunk.map((id) => [id, newKey()]));
    const devices = chunk.map((deviceId) => ({
      deviceId,
      status: 'enabled' as const,
      authentication: {
        type: 'sas' as const,
        symmetricKey: { primaryKey: keys.get(deviceId)!, secondaryKey: newKey() },
      },
    }));
    let outcome: { isSuccessful: boolean; errors?: { deviceId: string; errorCode: unknown }[] };
    try {
      outcome = (await this.registry.addDevices(devices)).responseBody;
    } catch (err) {
      // Some hub versions answer a partly failed bulk call with 400 and the same result body.
      const body = bulkResultFromError(err);
      if (!body) return this.failAll(chunk, results, this.serviceFailure(err, 'bulk create'));
      outcome = body;
    }
    const errors = new Map((outcome.errors ?? []).map((e) => [e.deviceId, String(e.errorCode)]));
    for (const id of chunk) {
      const code = errors.get(id);
      if (!code) this.remember(id, keys.get(id)!, results);
      else if (/DeviceAlreadyExists|409/.test(code)) existing.push(id);
      else results.set(id, { ok: false, failure: { kind: 'permanent', reason: `bulk create: ${code}` } });
    }
    this.budget.succeeded();
    this.log.info('azure identities created', { requested: chunk.length, existing: existing.length });
    return undefined;
  }

  /** Looks up or creates devices a few at a time. */
  private async runLimited(work: Work[], results: Map<string, KeyResult>, signal?: AbortSignal): Promise<void> {
    const queue = [...work];
    const worker = async () => {
      for (let w = queue.shift(); w !== undefined; w = queue.shift()) {
        if (!results.has(w.deviceId)) results.set(w.deviceId, await this.resolveOne(w.deviceId, w.createFirst, signal));
      }
    };
    await Promise.all(Array.from({ length: Math.min(LOOKUP_CONCURRENCY, queue.length) }, worker));
  }

  /** get-then-create or create-then-get, one identity operation each. */
  private async resolveOne(deviceId: string, createFirst: boolean, signal?: AbortSignal): Promise<KeyResult> {
    const first = await this.single(deviceId, createFirst ? 'create' : 'get', signal);
    const fallback = createFirst ? 409 : 404;
    if (first.ok || first.failure.status !== fallback) return first;
    return this.single(deviceId, createFirst ? 'get' : 'create', signal);
  }

  private async single(deviceId: string, op: 'create' | 'get', signal?: AbortSignal): Promise<KeyResult> {
    const failure = await this.admit(1, signal);
    if (failure) return { ok: false, failure };
    try {
      const { responseBody } =
        op === 'create' ? await this.registry.create({ deviceId }) : await this.registry.get(deviceId);
      const key = keyOf(responseBody);
      if (!key)
        return {
          ok: false,
          failure: { kind: 'permanent', reason: `device ${op}: the identity has no symmetric key (x509?)` },
        };
      this.budget.succeeded();
      const result: KeyResult = { ok: true, key };
      this.keys.set(deviceId, key);
      return result;
    } catch (err) {
      return { ok: false, failure: this.serviceFailure(err, `device ${op}`) };
    }
  }

  /** Waits for `n` identity-operation tokens, or says to come back later. */
  private async admit(n: number, signal?: AbortSignal): Promise<Failure | undefined> {
    const r = this.budget.reserve(n);
    if (!r.ok)
      return { kind: 'throttled', reason: budgetReason('identity operation', r.paused), retryAfterMs: r.retryAfterMs };
    if (await sleepUnlessAborted(r.waitMs, signal)) return undefined;
    this.budget.refund(n);
    return { kind: 'retryable', reason: 'aborted' };
  }

  /** Classifies and, for a 429, pauses identity operations for everyone. */
  private serviceFailure(err: unknown, operation: string): Failure {
    const failure = classifyServiceError(err, operation);
    if (failure.kind === 'throttled') failure.retryAfterMs = this.budget.throttled(failure.retryAfterMs);
    if (failure.status !== 404 && failure.status !== 409)
      this.log.warn('azure identity operation failed', { reason: failure.reason });
    return failure;
  }

  private remember(deviceId: string, key: string, results: Map<string, KeyResult>): void {
    this.keys.set(deviceId, key);
    results.set(deviceId, { ok: true, key });
  }

  private failAll(ids: string[], results: Map<string, KeyResult>, failure: Failure): Failure {
    for (const id of ids) results.set(id, { ok: false, failure });
    return failure;
  }
}

function bulkResultFromError(
  err: unknown
): { isSuccessful: boolean; errors?: { deviceId: string; errorCode: unknown }[] } | undefined {
  const e = err as { response?: { statusCode?: number }; responseBody?: unknown };
  if (e?.response?.statusCode !== 400 || typeof e.responseBody !== 'string') return undefined;
  try {
    const body = JSON.parse(e.responseBody) as { isSuccessful?: unknown; errors?: unknown };
    return typeof body.isSuccessful === 'boolean' && Array.isArray(body.errors) ? (body as never) : undefined;
  } catch {
    return undefined;
  }
}
