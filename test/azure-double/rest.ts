/**
 * The service REST API of the double (HTTPS): PUT/GET /devices/{id}, POST /devices (bulk, ≤100), GET/PATCH
 * /twins/{id}, api-version 2021-04-12, service SAS checked against the hub's policy, and IoT Hub's error body
 * `{"Message":"ErrorCode:<code>;<text>","ExceptionMessage":"Tracking ID:..."}`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { type HubRegistry, TwinPatchError, isObject } from './registry';
import { parseSas, verifySas } from './sas';

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

export interface RestLogEntry {
  method: string;
  path: string;
  op: RestOp | 'other';
  status: number;
  ifMatch?: string;
  /** Devices in a bulk POST /devices. */
  bulkSize?: number;
}

export interface RestContext {
  hubHost: string;
  policyName: string;
  policyKey: string;
  registry: HubRegistry;
  faults: RestFault[];
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

function authorize(ctx: RestContext, header: string | undefined): void {
  const sas = header ? parseSas(header) : undefined;
  const ok = sas && sas.skn === ctx.policyName && verifySas(sas, ctx.hubHost, [ctx.policyKey]);
  if (!ok) {
    ctx.onAuthFailure();
    throw new HttpError(401, 'IotHubUnauthorizedAccess', 'Unauthorized');
  }
}

function takeFault(ctx: RestContext, op: RestOp | 'other'): RestFault | undefined {
  const fault = ctx.faults.find((f) => f.times > 0 && (!f.op || f.op === 'any' || f.op === op));
  if (fault) fault.times--;
  return fault;
}

type Route = { status: number; body?: unknown; etag?: string };

function device(ctx: RestContext, id: string) {
  const d = ctx.registry.devices.get(id);
  if (!d) throw new HttpError(404, 'DeviceNotFound', `Device ${id} not registered`);
  return d;
}

function putDevice(ctx: RestContext, id: string, body: unknown, ifMatch: string | undefined): Route {
  if (!isObject(body) || body.deviceId !== id) throw new HttpError(400, 'ArgumentInvalid', 'deviceId mismatch');
  const existing = ctx.registry.devices.get(id);
  if (existing && !ifMatch)
    throw new HttpError(409, 'DeviceAlreadyExists', `A device with ID '${id}' is already registered.`);
  if (!existing && ifMatch) throw new HttpError(404, 'DeviceNotFound', `Device ${id} not registered`);
  if (existing) return { status: 200, body: existing, etag: existing.etag };
  const created = ctx.registry.create(id, body.authentication as never);
  return { status: 200, body: created, etag: created.etag };
}

function bulk(ctx: RestContext, body: unknown): Route {
  if (!Array.isArray(body) || body.length === 0 || body.length > 100) {
    throw new HttpError(400, 'ArgumentInvalid', 'A bulk operation takes 1 to 100 devices');
  }
  const errors: { deviceId: string; errorCode: string; errorStatus: string }[] = [];
  for (const entry of body as { id?: string; importMode?: string; authentication?: never }[]) {
    const id = String(entry.id ?? '');
    if (entry.importMode?.toLowerCase() !== 'create') {
      errors.push({ deviceId: id, errorCode: 'ArgumentInvalid', errorStatus: 'only create is modelled' });
    } else if (ctx.registry.devices.has(id)) {
      errors.push({
        deviceId: id,
        errorCode: 'DeviceAlreadyExists',
        errorStatus: `A device with ID '${id}' is already registered.`,
      });
    } else ctx.registry.create(id, entry.authentication);
  }
  return { status: 200, body: { isSuccessful: errors.length === 0, errors, warnings: [] } };
}

function route(ctx: RestContext, method: string, path: string, body: unknown, ifMatch?: string): Route {
  const m = /^\/(devices|twins)(?:\/([^/]+))?$/.exec(path);
  const id = m?.[2] ? decodeURIComponent(m[2]) : undefined;
  if (m?.[1] === 'devices' && !id && method === 'POST') return bulk(ctx, body);
  if (m?.[1] === 'devices' && id && method === 'PUT') return putDevice(ctx, id, body, ifMatch);
  if (m?.[1] === 'devices' && id && method === 'GET') {
    const d = device(ctx, id);
    return { status: 200, body: d, etag: d.etag };
  }
  if (m?.[1] === 'twins' && id && method === 'GET') {
    device(ctx, id);
    return { status: 200, body: ctx.registry.twins.get(id) };
  }
  if (m?.[1] === 'twins' && id && method === 'PATCH') {
    device(ctx, id);
    const twin = ctx.registry.twins.get(id)!;
    const wanted = ifMatch?.replace(/^"|"$/g, '');
    if (!wanted) throw new HttpError(400, 'ArgumentInvalid', 'If-Match is required');
    if (wanted !== '*' && wanted !== twin.etag) throw new HttpError(412, 'PreconditionFailed', 'etag mismatch');
    return { status: 200, body: ctx.registry.patchTwin(id, body), etag: twin.etag };
  }
  throw new HttpError(404, 'NotFound', `No route for ${method} ${path}`);
}

export function createRestHandler(ctx: RestContext) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://double');
    const method = req.method ?? 'GET';
    const ifMatch = req.headers['if-match'] as string | undefined;
    const entry: RestLogEntry = { method, path: url.pathname, op: opOf(url.pathname), status: 0, ifMatch };
    ctx.log.push(entry);
    const send = (status: number, body?: string, headers: Record<string, string> = {}) => {
      entry.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
      res.end(body);
    };
    try {
      const text = await readBody(req);
      authorize(ctx, req.headers.authorization);
      if (url.searchParams.get('api-version') !== API_VERSION) {
        throw new HttpError(400, 'InvalidProtocolVersion', `api-version must be ${API_VERSION}`);
      }
      const body = parseJson(text);
      if (method === 'POST' && Array.isArray(body)) entry.bulkSize = body.length;
      const fault = takeFault(ctx, entry.op);
      if (fault) {
        const retry = fault.retryAfterSeconds ? { 'Retry-After': String(fault.retryAfterSeconds) } : undefined;
        const text = 'The request has been throttled. Wait 10 seconds and try again. Operation type: CRUD';
        return send(fault.status ?? 429, errorBody(fault.code ?? 'ThrottlingBacklogTimeout', text), retry);
      }
      const out = route(ctx, method, url.pathname, body, ifMatch);
      send(
        out.status,
        out.body === undefined ? undefined : JSON.stringify(out.body),
        out.etag ? { ETag: `"${out.etag}"` } : {}
      );
    } catch (err) {
      if (err instanceof HttpError) return send(err.status, errorBody(err.code, err.message));
      if (err instanceof TwinPatchError) return send(400, errorBody('ArgumentInvalid', err.message));
      send(500, errorBody('ServerError', 'double failure'));
    }
  };
}
