/**
 * The service REST API of the double (HTTPS), api-version 2021-04-12:
 * - registry: PUT/GET/DELETE /devices/{id}, POST /devices (bulk, ≤100, importMode create with optional twin tags),
 *   PUT/GET/DELETE /devices/{id}/modules/{moduleId}, GET /devices/{id}/modules;
 * - twins: GET/PATCH /twins/{id} and /twins/{id}/modules/{moduleId} (tags and desired only).
 * A service SAS (`sr={hub}`, `skn={policy}`) is checked against the hub's policies and the permission the
 * route needs (RegistryRead, RegistryReadWrite, ServiceConnect). The hub's throttles answer 429 with IoT Hub's
 * throttling body, and an exceeded daily quota 403 IotHubQuotaExceeded. Errors use IoT Hub's body
 * `{"Message":"ErrorCode:<code>;<text>","ExceptionMessage":"Tracking ID:..."}`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { IDENTITY_ID } from '../../targets/azure/tiers';
import { delay, type HubLimiter, type ThrottleClass } from './limits';
import { type HubRegistry, MAX_MODULES_PER_DEVICE, TwinPatchError, identityKey, isObject } from './registry';
import { type AccessPolicy, type Permission, grants, parseSas, verifySas } from './sas';

export const API_VERSION = '2021-04-12';

export type RestOp = 'identity' | 'twin';

export interface RestFault {
  /** Which operations the fault applies to. @default 'any' */
  op?: RestOp | 'any';
  /** @default 429 */
  status?: number;
  /** @default 'ThrottlingBacklogTimeout' */
  code?: string;
  retryAfterSeconds?: number;
  /** How many requests fail. */
  times: number;
}

/** A bulk `POST /devices` answered 400: with a BulkRegistryOperationResult naming every device, or without one. */
export interface BulkFault {
  resultBody: boolean;
  times: number;
}

/** Why the hub refuses to create a device (see `AzureIotHubDouble.refuseDevice`). */
export interface DeviceRefusal {
  /** The hub's error code, e.g. `ArgumentInvalid`. */
  code: string;
  /** The error text (a bulk result's `errorStatus`). */
  text: string;
}

export interface RestLogEntry {
  method: string;
  path: string;
  op: RestOp | 'other';
  status: number;
  ifMatch?: string;
  /** Devices in a bulk POST /devices. */
  bulkSize?: number;
  /** The hub error code of a failed request. */
  code?: string;
}

export interface RestContext {
  hubHost: string;
  policies: ReadonlyMap<string, AccessPolicy>;
  registry: HubRegistry;
  limiter: HubLimiter;
  faults: RestFault[];
  bulkFaults: BulkFault[];
  /** Device ids the hub refuses to create, in a bulk call (named in its result) or alone (400). */
  refusedDevices: ReadonlyMap<string, DeviceRefusal>;
  log: RestLogEntry[];
  onAuthFailure(): void;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    text: string
  ) {
    super(text);
  }
}

const THROTTLED_TEXT = 'The request has been throttled. Wait 10 seconds and try again.';

function errorBody(code: string, text: string): string {
  const tracking = `Tracking ID:${randomUUID().replace(/-/g, '')}-G:0-TimeStamp:${new Date().toISOString()}`;
  return JSON.stringify({ Message: `ErrorCode:${code};${text}`, ExceptionMessage: tracking });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    throw new HttpError(400, 'ArgumentInvalid', 'Request body is not valid JSON');
  }
}

function opOf(path: string): RestOp | 'other' {
  if (path.startsWith('/devices')) return 'identity';
  if (path.startsWith('/twins/')) return 'twin';
  return 'other';
}

/** The throttle class and the permission a request needs. */
function classify(method: string, op: RestOp | 'other'): { cls?: ThrottleClass; permission?: Permission } {
  if (op === 'identity')
    return { cls: 'identity', permission: method === 'GET' ? 'RegistryRead' : 'RegistryReadWrite' };
  if (op === 'twin') return { cls: method === 'GET' ? 'twinRead' : 'twinUpdate', permission: 'ServiceConnect' };
  return {};
}

function authorize(ctx: RestContext, header: string | undefined, permission: Permission | undefined): void {
  const sas = header ? parseSas(header) : undefined;
  const policy = sas?.skn ? ctx.policies.get(sas.skn) : undefined;
  const signed = sas && policy && verifySas(sas, ctx.hubHost, [policy.key]);
  if (!signed) {
    ctx.onAuthFailure();
    throw new HttpError(401, 'IotHubUnauthorizedAccess', 'Unauthorized');
  }
  if (permission && !grants(policy, permission)) {
    ctx.onAuthFailure();
    throw new HttpError(401, 'IotHubUnauthorizedAccess', `Unauthorized: the policy lacks ${permission}`);
  }
}

function takeFault(ctx: RestContext, op: RestOp | 'other'): RestFault | undefined {
  const fault = ctx.faults.find((f) => f.times > 0 && (!f.op || f.op === 'any' || f.op === op));
  if (fault) fault.times--;
  return fault;
}

type Route = { status: number; body?: unknown; etag?: string };

function checkId(id: string, what: 'device' | 'module'): void {
  if (!IDENTITY_ID.test(id)) {
    throw new HttpError(
      400,
      'ArgumentInvalid',
      `The ${what} id '${id.slice(0, 140)}' is invalid: 1-128 ASCII letters, digits or - : . + % _ # * ? ! ( ) , = @ ; $ '`
    );
  }
}

function device(ctx: RestContext, id: string) {
  const d = ctx.registry.devices.get(id);
  if (!d) throw new HttpError(404, 'DeviceNotFound', `Device ${id} not registered`);
  return d;
}

function moduleOf(ctx: RestContext, id: string, moduleId: string) {
  device(ctx, id);
  const m = ctx.registry.modules.get(identityKey(id, moduleId));
  if (!m) throw new HttpError(404, 'ModuleNotFound', `Module ${moduleId} on device ${id} not registered`);
  return m;
}

function putDevice(ctx: RestContext, id: string, body: unknown, ifMatch: string | undefined): Route {
  checkId(id, 'device');
  if (!isObject(body) || body.deviceId !== id) throw new HttpError(400, 'ArgumentInvalid', 'deviceId mismatch');
  const existing = ctx.registry.devices.get(id);
  if (existing && !ifMatch)
    throw new HttpError(409, 'DeviceAlreadyExists', `A device with ID '${id}' is already registered.`);
  if (!existing && ifMatch) throw new HttpError(404, 'DeviceNotFound', `Device ${id} not registered`);
  if (existing) {
    if (body.status === 'enabled' || body.status === 'disabled') existing.status = body.status;
    return { status: 200, body: existing, etag: existing.etag };
  }
  const refused = ctx.refusedDevices.get(id);
  if (refused) throw new HttpError(400, refused.code, refused.text);
  const created = ctx.registry.create(id, body.authentication as never);
  return { status: 200, body: created, etag: created.etag };
}

function putModule(ctx: RestContext, id: string, moduleId: string, body: unknown, ifMatch: string | undefined): Route {
  checkId(moduleId, 'module');
  if (!isObject(body) || body.deviceId !== id || body.moduleId !== moduleId)
    throw new HttpError(400, 'ArgumentInvalid', 'deviceId or moduleId mismatch');
  device(ctx, id);
  const existing = ctx.registry.modules.get(identityKey(id, moduleId));
  if (existing && !ifMatch)
    throw new HttpError(409, 'ModuleAlreadyExistsOnDevice', `A module with ID '${moduleId}' already exists.`);
  if (!existing && ifMatch) throw new HttpError(404, 'ModuleNotFound', `Module ${moduleId} not registered`);
  if (existing) return { status: 200, body: existing, etag: existing.etag };
  if (ctx.registry.modulesOf(id).length >= MAX_MODULES_PER_DEVICE)
    throw new HttpError(403, 'TooManyModulesOnDevice', `Device ${id} already has ${MAX_MODULES_PER_DEVICE} modules`);
  const managedBy = typeof body.managedBy === 'string' ? body.managedBy : undefined;
  const created = ctx.registry.createModule(id, moduleId, body.authentication as never, managedBy);
  return { status: 200, body: created, etag: created.etag };
}

interface BulkEntry {
  id?: unknown;
  importMode?: string;
  authentication?: never;
  status?: string;
  tags?: unknown;
}

function bulk(ctx: RestContext, body: unknown): Route {
  if (!Array.isArray(body) || body.length === 0 || body.length > 100) {
    throw new HttpError(400, 'ArgumentInvalid', 'A bulk operation takes 1 to 100 devices');
  }
  const entries = body as BulkEntry[];
  // One invalid id fails the whole request, before anything is created.
  for (const entry of entries) checkId(typeof entry.id === 'string' ? entry.id : '', 'device');
  const errors: { deviceId: string; errorCode: string; errorStatus: string }[] = [];
  for (const entry of entries) {
    const id = entry.id as string;
    if (entry.importMode?.toLowerCase() !== 'create') {
      errors.push({ deviceId: id, errorCode: 'ArgumentInvalid', errorStatus: 'only create is modelled' });
    } else if (ctx.registry.devices.has(id)) {
      errors.push({
        deviceId: id,
        errorCode: 'DeviceAlreadyExists',
        errorStatus: `A device with ID '${id}' is already registered.`,
      });
    } else if (ctx.refusedDevices.has(id)) {
      const { code, text } = ctx.refusedDevices.get(id)!;
      errors.push({ deviceId: id, errorCode: code, errorStatus: text });
    } else {
      const device = ctx.registry.create(id, entry.authentication, isObject(entry.tags) ? entry.tags : undefined);
      if (entry.status === 'disabled') device.status = 'disabled';
    }
  }
  // A bulk call with any failed device answers 400 with the result (the others were created).
  return { status: errors.length ? 400 : 200, body: { isSuccessful: errors.length === 0, errors, warnings: [] } };
}

function patchTwin(ctx: RestContext, key: string, body: unknown, ifMatch: string | undefined): Route {
  const twin = ctx.registry.twins.get(key)!;
  const wanted = ifMatch?.replace(/^"|"$/g, '');
  if (!wanted) throw new HttpError(400, 'ArgumentInvalid', 'If-Match is required');
  if (wanted !== '*' && wanted !== twin.etag) throw new HttpError(412, 'PreconditionFailed', 'etag mismatch');
  return { status: 200, body: ctx.registry.patchTwin(key, body), etag: twin.etag };
}

function route(ctx: RestContext, method: string, path: string, body: unknown, ifMatch?: string): Route {
  const m = /^\/(devices|twins)(?:\/([^/]+)(?:\/(modules)(?:\/([^/]+))?)?)?$/.exec(path);
  if (!m) throw new HttpError(404, 'NotFound', `No route for ${method} ${path}`);
  const [, kind, rawId, modules, rawModule] = m;
  const id = rawId ? decodeURIComponent(rawId) : undefined;
  const moduleId = rawModule ? decodeURIComponent(rawModule) : undefined;
  if (kind === 'devices' && !id && method === 'POST') return bulk(ctx, body);
  if (kind === 'devices' && id && !modules) {
    if (method === 'PUT') return putDevice(ctx, id, body, ifMatch);
    const d = device(ctx, id);
    if (method === 'GET') return { status: 200, body: d, etag: d.etag };
    if (method === 'DELETE') {
      for (const mod of ctx.registry.modulesOf(id)) {
        ctx.registry.modules.delete(identityKey(id, mod.moduleId));
        ctx.registry.twins.delete(identityKey(id, mod.moduleId));
      }
      ctx.registry.devices.delete(id);
      ctx.registry.twins.delete(id);
      return { status: 204 };
    }
  }
  if (kind === 'devices' && id && modules && !moduleId && method === 'GET') {
    device(ctx, id);
    return { status: 200, body: ctx.registry.modulesOf(id) };
  }
  if (kind === 'devices' && id && moduleId) {
    if (method === 'PUT') return putModule(ctx, id, moduleId, body, ifMatch);
    const mod = moduleOf(ctx, id, moduleId);
    if (method === 'GET') return { status: 200, body: mod, etag: mod.etag };
    if (method === 'DELETE') {
      ctx.registry.modules.delete(identityKey(id, moduleId));
      ctx.registry.twins.delete(identityKey(id, moduleId));
      return { status: 204 };
    }
  }
  if (kind === 'twins' && id && (!modules || moduleId)) {
    if (moduleId) moduleOf(ctx, id, moduleId);
    else device(ctx, id);
    const key = identityKey(id, moduleId);
    if (method === 'GET') return { status: 200, body: ctx.registry.twins.get(key) };
    if (method === 'PATCH') return patchTwin(ctx, key, body, ifMatch);
  }
  throw new HttpError(404, 'NotFound', `No route for ${method} ${path}`);
}

/** Answers the 403002 / 429 / injected-fault cases that come before routing; undefined when none applies. */
function refusal(ctx: RestContext, entry: RestLogEntry, cls: ThrottleClass | undefined, cost: number) {
  if (ctx.limiter.quotaExceeded()) {
    const text = 'Total number of messages on IotHub exceeded the allocated quota. Max allowed message count: ';
    return { status: 403, code: 'IotHubQuotaExceeded', text: `${text}${ctx.limiter.limits.dailyMessages}.` };
  }
  const fault = takeFault(ctx, entry.op);
  if (fault) {
    const headers = fault.retryAfterSeconds ? { 'Retry-After': String(fault.retryAfterSeconds) } : undefined;
    const code = fault.code ?? 'ThrottlingBacklogTimeout';
    return { status: fault.status ?? 429, code, text: `${THROTTLED_TEXT} Operation type: CRUD`, headers };
  }
  if (cls && !ctx.limiter.admit(cls, cost)) {
    return { status: 429, code: 'ThrottlingException', text: `${THROTTLED_TEXT} Operation type: ${cls}` };
  }
  return undefined;
}

export function createRestHandler(ctx: RestContext) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://double');
    const method = req.method ?? 'GET';
    const ifMatch = req.headers['if-match'] as string | undefined;
    const entry: RestLogEntry = { method, path: url.pathname, op: opOf(url.pathname), status: 0, ifMatch };
    ctx.log.push(entry);
    const { cls, permission } = classify(method, entry.op);
    const started = Date.now();
    const send = async (status: number, body?: string, headers: Record<string, string> = {}) => {
      if (cls) await delay(ctx.limiter.latencyOf(cls) - (Date.now() - started));
      entry.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
      res.end(body);
    };
    const fail = (status: number, code: string, text: string, headers?: Record<string, string>) => {
      entry.code = code;
      return send(status, errorBody(code, text), headers);
    };
    try {
      const text = await readBody(req);
      authorize(ctx, req.headers.authorization, permission);
      if (url.searchParams.get('api-version') !== API_VERSION) {
        throw new HttpError(400, 'InvalidProtocolVersion', `api-version must be ${API_VERSION}`);
      }
      const body = parseJson(text);
      const isBulk = method === 'POST' && Array.isArray(body);
      if (isBulk) entry.bulkSize = body.length;
      const refused = refusal(ctx, entry, cls, isBulk ? body.length : 1);
      if (refused) return await fail(refused.status, refused.code, refused.text, refused.headers);
      const bulkFault = isBulk ? ctx.bulkFaults.find((f) => f.times > 0) : undefined;
      if (bulkFault) {
        bulkFault.times--;
        if (!bulkFault.resultBody) return await fail(400, 'ArgumentInvalid', 'injected bulk failure');
        const errors = (body as BulkEntry[]).map((e) => ({
          deviceId: String(e.id),
          errorCode: 'ArgumentInvalid',
          errorStatus: 'injected bulk failure',
        }));
        entry.code = 'BulkRegistryOperationFailure';
        return await send(400, JSON.stringify({ isSuccessful: false, errors, warnings: [] }));
      }
      const out = route(ctx, method, url.pathname, body, ifMatch);
      await send(
        out.status,
        out.body === undefined ? undefined : JSON.stringify(out.body),
        out.etag ? { ETag: `"${out.etag}"` } : {}
      );
    } catch (err) {
      if (err instanceof HttpError) return fail(err.status, err.code, err.message);
      if (err instanceof TwinPatchError) return fail(400, 'ArgumentInvalid', err.message);
      return fail(500, 'ServerError', 'double failure');
    }
  };
}
