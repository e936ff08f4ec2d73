/**
 * A strict AWS IoT peer: a small HTTP front of ours, forwarding to moto, that enforces the documented AWS IoT
 * limits moto lacks (/work/shared/reference/clouds.md §2.4, §2.7, §6.7):
 *
 * - Shadow size: "The device's shadow supports 8 KB of data only ... Only the data for desired and reported state
 *   inside the state document sent to the device's shadow counts toward the limit" (metadata does not), and the
 *   size is that of the *merged* stored document, not the request
 *   (https://docs.aws.amazon.com/iot/latest/developerguide/diagnosing-shadows.html; AWS re:Post "shadow update
 *   rejected with error 413"). Beyond it: 413 "The payload exceeds the maximum size allowed"
 *   (https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-error-messages.html), SDK error
 *   RequestEntityTooLargeException (API_iotdata_UpdateThingShadow).
 * - Per thing: 20 shadow requests per second (all shadow APIs together) and 10 in-flight requests, beyond which
 *   429 "Too Many Requests" (ThrottlingException) (AWS IoT Core quotas, older table in awsdocs/aws-iot-docs
 *   limits-iot.md; device-shadow-error-messages.html for the 10 in flight).
 * - CreateThing: "If this call is made multiple times using the same thing name and configuration, the call will
 *   succeed. If this call is made with the same thing name but different configuration a
 *   ResourceAlreadyExistsException is thrown" (https://docs.aws.amazon.com/iot/latest/apireference/API_CreateThing.html),
 *   HTTP 409. moto instead replaces the thing and wipes its shadows; here the shadows stay.
 * - Unregistered things: AWS does not tie shadows to the registry, an update of a thing name that is not
 *   registered creates its shadow (clouds.md §6.7); moto answers 404, so the front registers the name in moto
 *   (without attributes) first and still treats a later CreateThing of it as a creation.
 *
 * Error bodies are AWS's REST-JSON errors: the type in `x-amzn-errortype`, `{"message": …}` in the body.
 *
 * The front keeps what passed through it (things it registered, each shadow's stored state) and asks moto only what
 * it does not know, and it sends moto at most `upstreamInFlight` requests at once. moto is one Python process whose
 * every thing lookup scans the whole registry; without both, moto's own CPU, not the connector's budget, set the
 * pace of a long first sync (soak: CreateThing at 85 % of its 15/s budget with moto saturated).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { Semaphore } from '../../shared/limits/semaphore';

export interface StrictAwsLimits {
  /** Bytes of `{"desired":…,"reported":…}` of the merged shadow. @default 8192 */
  shadowStateBytes?: number;
  /** Shadow requests per thing in any one second. @default 20 */
  perThingPerSecond?: number;
  /** Shadow requests of one thing in flight at once. @default 10 */
  perThingInFlight?: number;
  /**
   * A shadow update of a thing name not in the registry: `upsert` creates the shadow (what users report of AWS,
   * clouds.md §6.7, not confirmed by AWS), `not-found` answers 404 as moto does. @default 'upsert'
   */
  unregisteredShadows?: 'upsert' | 'not-found';
  /** Requests the front has in flight to moto at once; more wait in the front (moto slows under many threads). @default 8 */
  upstreamInFlight?: number;
}

export interface StrictAwsPeer {
  /** `http://127.0.0.1:<port>`: the endpoint and control endpoint of the target under test. */
  url: string;
  /** What the front refused, by status: 413, 429, 409. */
  refused: { status: number; thing: string; why: string }[];
  /**
   * Shadow updates and CreateThing calls that moto accepted, and when (epoch ms) each reached the front, as AWS
   * meters them (not when moto answered: the front queues for moto); `changed` says whether a shadow
   * update changed the merged reported state (false: a patch the shadow already held, e.g. re-sent after a crash).
   */
  accepted: { at: number; kind: 'shadow-update' | 'create-thing'; thing: string; changed?: boolean }[];
  /** Each thing's reported state, merged from the shadow updates moto accepted: what AWS would hold. */
  reported: Map<string, unknown>;
  close(): Promise<void>;
}

type Answer = { status: number; headers: http.IncomingHttpHeaders; body: string };
type Described = { thingName: string; thingArn: string; thingId: string; attributes?: Record<string, string>; thingTypeName?: string }; // prettier-ignore
type ShadowState = { desired?: unknown; reported?: unknown };

const SHADOW = /^\/things\/([^/?]+)\/shadow(?:\?(.*))?$/;
const THING = /^\/things\/([^/?]+)$/;

export async function startStrictAwsPeer(upstream: string, limits: StrictAwsLimits = {}): Promise<StrictAwsPeer> {
  const maxBytes = limits.shadowStateBytes ?? 8192;
  const perSecond = limits.perThingPerSecond ?? 20;
  const maxInFlight = limits.perThingInFlight ?? 10;
  const target = new URL(upstream);
  const inFlight = new Map<string, number>();
  const recent = new Map<string, number[]>();
  /** Things registered by the front itself for a shadow update (AWS would have none in its registry). */
  const shadowOnly = new Set<string>();
  /** Things registered through the front, as DescribeThing would answer them: moto is asked only about others. */
  const registry = new Map<string, Described>();
  /** Each shadow's stored state by request path (thing and shadow name), as written through the front. */
  const stored = new Map<string, ShadowState>();
  const motoSlots = new Semaphore(limits.upstreamInFlight ?? 8);
  const peer: StrictAwsPeer = { url: '', refused: [], accepted: [], reported: new Map(), close: async () => {} };

  const forward = (req: http.IncomingMessage, method: string, path: string, body?: string): Promise<Answer> =>
    motoSlots.run(() => send(req, method, path, body));
  const send = (req: http.IncomingMessage, method: string, path: string, body?: string): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const headers = { ...req.headers };
      delete headers['transfer-encoding'];
      if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
      else delete headers['content-length'];
      const out = http.request({ host: target.hostname, port: target.port, method, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () =>
          resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks).toString() })
        );
      });
      out.once('error', reject);
      out.end(body);
    });

  const refuse = (res: http.ServerResponse, status: number, type: string, thing: string, message: string) => {
    peer.refused.push({ status, thing, why: message });
    const body = JSON.stringify({ message });
    res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': type }).end(body);
  };

  const reply = (res: http.ServerResponse, a: Answer) => {
    const headers = { ...a.headers, 'content-length': String(Buffer.byteLength(a.body)) };
    delete headers['transfer-encoding'];
    res.writeHead(a.status, headers).end(a.body);
  };

  async function shadow(req: http.IncomingMessage, res: http.ServerResponse, thing: string, body: string) {
    const now = Date.now(); // arrival
    const times = (recent.get(thing) ?? []).filter((t) => t > now - 1000);
    if (times.length >= perSecond) {
      recent.set(thing, times);
      return refuse(res, 429, 'ThrottlingException', thing, `Rate exceeded for thing ${thing}`);
    }
    if ((inFlight.get(thing) ?? 0) >= maxInFlight) {
      return refuse(res, 429, 'ThrottlingException', thing, `Too many in-flight requests for thing ${thing}`);
    }
    recent.set(thing, [...times, now]);
    inFlight.set(thing, (inFlight.get(thing) ?? 0) + 1);
    try {
      const path = req.url!;
      if (req.method !== 'POST') {
        if (req.method === 'DELETE') stored.delete(path);
        return reply(res, await forward(req, req.method ?? 'GET', path, body));
      }
      let before: ShadowState | undefined = stored.get(path);
      if (!before) {
        const current = await forward(req, 'GET', path);
        const upsert = (limits.unregisteredShadows ?? 'upsert') === 'upsert';
        if (upsert && current.status === 404 && !(await registered(req, thing))) {
          await register(req, thing, '{}');
          shadowOnly.add(thing);
        }
        before = current.status === 200 ? ((JSON.parse(current.body).state ?? {}) as ShadowState) : {};
      }
      const update = parseJson(body)?.state;
      let state: ShadowState = before;
      let reported: unknown = before.reported;
      if (update && typeof update === 'object') {
        const merged = {
          desired: mergeState(before.desired, update.desired),
          reported: mergeState(before.reported, update.reported),
        };
        const size = Buffer.byteLength(JSON.stringify(stripEmpty(merged)));
        if (size > maxBytes) {
          return refuse(res, 413, 'RequestEntityTooLargeException', thing, 'The payload exceeds the maximum size allowed'); // prettier-ignore
        }
        reported = merged.reported;
        state = merged;
      }
      const answer = await forward(req, 'POST', path, body);
      if (answer.status === 200) {
        stored.set(path, state);
        const changed = !isDeepStrictEqual(before.reported ?? {}, reported ?? {});
        peer.accepted.push({ at: now, kind: 'shadow-update', thing, changed });
        peer.reported.set(thing, reported);
      }
      reply(res, answer);
    } finally {
      inFlight.set(thing, (inFlight.get(thing) ?? 1) - 1);
    }
  }

  /** DescribeThing in moto, signed as the control plane (moto reads the service from the credential scope). */
  async function describe(req: http.IncomingMessage, thing: string): Promise<Answer> {
    return forward(asControlPlane(req), 'GET', `/things/${thing}`);
  }
  async function registered(req: http.IncomingMessage, thing: string): Promise<boolean> {
    return registry.has(thing) || (await describe(req, thing)).status === 200;
  }
  async function register(req: http.IncomingMessage, thing: string, body: string): Promise<Answer> {
    const answer = await forward(asControlPlane(req), 'POST', `/things/${thing}`, body);
    if (answer.status === 200) {
      const created = JSON.parse(answer.body) as Described;
      const asked = parseJson(body) ?? {};
      registry.set(thing, { ...created, attributes: asked.attributePayload?.attributes, thingTypeName: asked.thingTypeName }); // prettier-ignore
    }
    return answer;
  }

  async function createThing(req: http.IncomingMessage, res: http.ServerResponse, thing: string, body: string) {
    const arrived = Date.now();
    const accepted = () => peer.accepted.push({ at: arrived, kind: 'create-thing', thing });
    let had = registry.get(thing);
    if (!had) {
      const existing = await describe(req, thing);
      if (existing.status !== 200) {
        const answer = await register(req, thing, body);
        if (answer.status === 200) accepted();
        return reply(res, answer);
      }
      had = JSON.parse(existing.body) as Described;
    }
    const asked = parseJson(body) ?? {};
    const attributes = asked.attributePayload?.attributes ?? {};
    const created = { thingName: had.thingName, thingArn: had.thingArn, thingId: had.thingId };
    if (shadowOnly.delete(thing)) {
      // AWS had no such thing in its registry: this is its creation. Set the attributes without moto's wipe.
      await forward(req, 'PATCH', `/things/${thing}`, JSON.stringify({ attributePayload: { attributes } }));
      registry.set(thing, { ...had, attributes });
      accepted();
      return reply(res, { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(created) }); // prettier-ignore
    }
    const same =
      sameAttributes(had.attributes ?? {}, attributes) && (had.thingTypeName ?? null) === (asked.thingTypeName ?? null);
    if (!same) {
      const why = `Thing ${thing} already exists with different attributes`;
      peer.refused.push({ status: 409, thing, why });
      const payload = JSON.stringify({ message: why, resourceId: had.thingId, resourceArn: had.thingArn });
      res.writeHead(409, { 'content-type': 'application/json', 'x-amzn-errortype': 'ResourceAlreadyExistsException' });
      return void res.end(payload);
    }
    accepted();
    reply(res, { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(created) });
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => {
      const body = Buffer.concat(chunks).toString();
      const path = req.url ?? '/';
      const shadowMatch = SHADOW.exec(path);
      const thingMatch = THING.exec(path);
      if (thingMatch && req.method === 'DELETE') {
        const name = decodeURIComponent(thingMatch[1]);
        registry.delete(name);
        for (const key of stored.keys()) if (SHADOW.exec(key)?.[1] === thingMatch[1]) stored.delete(key);
      }
      const work = shadowMatch
        ? shadow(req, res, decodeURIComponent(shadowMatch[1]), body)
        : thingMatch && req.method === 'POST'
          ? createThing(req, res, decodeURIComponent(thingMatch[1]), body)
          : forward(req, req.method ?? 'GET', path, req.method === 'GET' ? undefined : body).then((a) => reply(res, a));
      work.catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  peer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  peer.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return peer;
}

/** The request's headers with its SigV4 credential scope naming the control plane (`iot`), for moto. */
function asControlPlane(req: http.IncomingMessage): http.IncomingMessage {
  const authorization = String(req.headers.authorization ?? '').replace(/\/iotdata\/aws4_request/, '/iot/aws4_request');
  return { headers: { ...req.headers, authorization } } as http.IncomingMessage;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a request body of any shape, read defensively
function parseJson(text: string): any {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/** AWS's merge of a shadow section: keys of the update replace, objects merge, `null` removes. */
function mergeState(stored: unknown, update: unknown): unknown {
  if (update === undefined) return stored;
  if (update === null || typeof update !== 'object' || Array.isArray(update)) return update;
  const out: Record<string, unknown> =
    stored && typeof stored === 'object' && !Array.isArray(stored) ? { ...(stored as object) } : {};
  for (const [key, value] of Object.entries(update)) {
    if (value === null) delete out[key];
    else out[key] = mergeState(out[key], value);
  }
  return out;
}

function stripEmpty(state: { desired: unknown; reported: unknown }): Record<string, unknown> {
  return Object.fromEntries(Object.entries(state).filter(([, v]) => v !== undefined && v !== null));
}

function sameAttributes(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((k) => a[k] === b[k]);
}
