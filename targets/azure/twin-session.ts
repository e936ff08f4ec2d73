/**
 * One short MQTT connection as a device or module identity, writing reported-property patches on IoT Hub's
 * documented topics with a plain MQTT client (mqtt.js): connect → subscribe `$iothub/twin/res/#` → PATCH
 * `$iothub/twin/PATCH/properties/reported/?$rid=` (one billed message each, no twin GET first) → close.
 *
 * Why not the device SDK: its twin API always GETs the twin before a patch (a second billed message per update),
 * it ignores the status of `$iothub/twin/res/{status}` unless the body has `errorCode`, and it hides how long the
 * CONNACK took and whether the hub closed the connection right after accepting it: the signals of throttling and
 * of an exhausted daily quota. Here every outcome carries them.
 */
import tls from 'node:tls';
import mqtt, { type MqttClient } from 'mqtt';
import { kindOfStatus, type Failure } from './errors';

export const API_VERSION = '2021-04-12';

/**
 * What every connection to one hub shares, so a connection costs little CPU on both sides: one TLS context (the
 * trusted CAs parsed once, not per connection) and the hub's latest TLS session ticket, which lets the next
 * handshake resume instead of doing the full key exchange and certificate check again. Connections are opened
 * and closed per identity, hundreds a minute; on a busy machine the full handshakes were what limited the rate.
 */
export class TlsReuse {
  readonly context: tls.SecureContext;
  private readonly sessions = new Map<string, Buffer>();

  constructor(ca?: string) {
    this.context = tls.createSecureContext(ca ? { ca } : {});
  }

  /** The latest session ticket the server at `host:port` issued, if any. */
  session(hostPort: string): Buffer | undefined {
    return this.sessions.get(hostPort);
  }

  remember(hostPort: string, session: Buffer): void {
    this.sessions.set(hostPort, session);
  }
}

export interface TwinSessionOptions {
  /** `host` or `host:port` to connect to (port 8883 when absent). */
  connectHost: string;
  /** The hub's HostName, as it appears in the username. */
  hubHost: string;
  deviceId: string;
  /** Connect as this module of the device. */
  moduleId?: string;
  /** A SAS token for the identity (signed by a policy on its behalf, or by its own key). */
  password: string;
  ca?: string;
  /** A TLS context and session tickets shared by the connections to this hub. @default a new context, no resumption */
  tls?: TlsReuse;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** How a session ended when it did not succeed, beyond the outcome kind. */
export interface SessionFailure extends Failure {
  /** The CONNACK refused the identity (return code 5): a bad token, a missing or disabled identity. */
  unauthorized?: boolean;
  /** The hub closed the connection before answering (throttling, or a spent daily quota after a CONNACK). */
  closedByHub?: boolean;
  /** The hub closed the connection right after accepting it: what it does past the daily quota. */
  closedAfterConnect?: boolean;
}

type Step<T> = { ok: true; value: T } | { ok: false; failure: SessionFailure };

/** One open connection. Create with `TwinSession.open`; always `close()`. */
export class TwinSession {
  private rid = 0;
  private answered = false;
  private readonly waiting = new Map<string, (status: number, version?: number) => void>();
  private failure: SessionFailure | undefined;
  private readonly onFailure: ((f: SessionFailure) => void)[] = [];

  private constructor(
    private readonly client: MqttClient,
    private readonly opts: TwinSessionOptions,
    /** How long the CONNACK took. */
    readonly connackMs: number
  ) {
    client.on('message', (topic) => this.onMessage(topic));
    client.on('close', () =>
      this.fail({
        kind: 'retryable',
        reason: 'connection closed by the hub',
        dropped: true,
        closedByHub: true,
        closedAfterConnect: !this.answered,
      })
    );
  }

  /** Opens the connection as the identity; resolves once the CONNACK (or the failure) arrived. */
  static open(opts: TwinSessionOptions): Promise<Step<TwinSession>> {
    const [host, port] = splitHost(opts.connectHost);
    const clientId = opts.moduleId ? `${opts.deviceId}/${opts.moduleId}` : opts.deviceId;
    const started = Date.now();
    const reuse = opts.tls;
    const session = reuse?.session(opts.connectHost);
    const client = mqtt.connect({
      protocol: 'mqtts',
      host,
      port,
      servername: host,
      ...(reuse ? { secureContext: reuse.context } : opts.ca ? { ca: opts.ca } : {}),
      ...(session ? { session } : {}),
      clientId,
      username: `${opts.hubHost}/${clientId}/?api-version=${API_VERSION}`,
      password: opts.password,
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: opts.timeoutMs,
    });
    if (reuse) client.stream?.on('session', (ticket: Buffer) => reuse.remember(opts.connectHost, ticket));
    return new Promise((resolve) => {
      let settled = false;
      const settle = (step: Step<TwinSession>) => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        if (!step.ok) client.end(true);
        resolve(step);
      };
      const onAbort = () => settle({ ok: false, failure: { kind: 'retryable', reason: 'aborted' } });
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.signal?.aborted) onAbort();
      client.once('connect', () => settle({ ok: true, value: new TwinSession(client, opts, Date.now() - started) }));
      client.on('error', (err: Error & { code?: unknown }) => {
        if (err.code === 5 || err.code === 4) {
          settle({
            ok: false,
            failure: { kind: 'retryable', reason: 'connect: not authorized', status: 401, unauthorized: true },
          });
        } else {
          const code = typeof err.code === 'string' || typeof err.code === 'number' ? ` ${err.code}` : '';
          settle({ ok: false, failure: { kind: 'retryable', reason: `connect: ${err.name}${code}` } });
        }
      });
      client.once('close', () =>
        settle({
          ok: false,
          failure: {
            kind: 'retryable',
            reason: 'connect: closed by the hub before CONNACK',
            dropped: true,
            closedByHub: true,
          },
        })
      );
    });
  }

  private onMessage(topic: string): void {
    const m = /^\$iothub\/twin\/res\/(\d+)\/\?(.*)$/.exec(topic);
    if (!m) return;
    const query = new URLSearchParams(m[2]);
    const rid = query.get('$rid') ?? '';
    const version = query.get('$version');
    this.waiting.get(rid)?.(Number(m[1]), version ? Number(version) : undefined);
    this.waiting.delete(rid);
  }

  private fail(failure: SessionFailure): void {
    if (this.failure) return;
    this.failure = failure;
    for (const f of this.onFailure.splice(0)) f(failure);
  }

  /** Sends one reported-properties patch and waits for its `$iothub/twin/res/{status}`. */
  async patchReported(patch: unknown): Promise<Step<{ status: number; version?: number }>> {
    if (this.failure) return { ok: false, failure: this.failure };
    if (this.rid === 0) {
      const sub = await this.guard('subscribe', this.client.subscribeAsync('$iothub/twin/res/#', { qos: 0 }));
      if (!sub.ok) return sub;
    }
    const rid = String(++this.rid);
    const response = new Promise<{ status: number; version?: number }>((resolve) =>
      this.waiting.set(rid, (status, version) => resolve({ status, version }))
    );
    this.client.publish(`$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, JSON.stringify(patch), { qos: 0 });
    const sent = await this.guard('twin patch', response);
    this.waiting.delete(rid);
    if (!sent.ok) return sent;
    this.answered = true;
    const { status } = sent.value;
    if (status >= 200 && status < 300) return sent;
    return { ok: false, failure: { kind: kindOfStatus(status), reason: `twin patch: status ${status}`, status } };
  }

  /**
   * Sends one device-to-cloud message (QoS 1: the PUBACK is the hub's acceptance) on the identity's events topic,
   * with `properties` in its property bag (application properties, and system ones such as `$.ct`, `$.mid`).
   */
  async sendEvent(body: string, properties: Record<string, string>): Promise<Step<void>> {
    if (this.failure) return { ok: false, failure: this.failure };
    const { deviceId, moduleId } = this.opts;
    const base = moduleId ? `devices/${deviceId}/modules/${moduleId}` : `devices/${deviceId}`;
    const bag = Object.entries(properties)
      .map(([key, value]) => `${encodeURIComponent(key).replace(/%24/g, '$')}=${encodeURIComponent(value)}`)
      .join('&');
    const sent = await this.guard(
      'device-to-cloud message',
      this.client.publishAsync(`${base}/messages/events/${bag}`, body, { qos: 1 })
    );
    if (!sent.ok) return sent;
    this.answered = true;
    return { ok: true, value: undefined };
  }

  /** Races `work` against a close by the hub, an abort and the timeout. */
  private guard<T>(operation: string, work: Promise<T>): Promise<Step<T>> {
    if (this.failure) return Promise.resolve({ ok: false, failure: this.failure });
    return new Promise((resolve) => {
      let settled = false;
      const settle = (step: Step<T>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.opts.signal?.removeEventListener('abort', onAbort);
        resolve(step);
      };
      const timer = setTimeout(
        () =>
          settle({
            ok: false,
            failure: { kind: 'retryable', reason: `${operation}: no answer in ${this.opts.timeoutMs} ms` },
          }),
        this.opts.timeoutMs
      );
      const onAbort = () => settle({ ok: false, failure: { kind: 'retryable', reason: 'aborted' } });
      this.opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.onFailure.push((failure) =>
        settle({ ok: false, failure: { ...failure, reason: `${operation}: ${failure.reason}` } })
      );
      work.then(
        (value) => settle({ ok: true, value }),
        (err: Error) => settle({ ok: false, failure: { kind: 'retryable', reason: `${operation}: ${err.name}` } })
      );
    });
  }

  /** Closes the connection (DISCONNECT); never throws, never waits long for a dead peer. */
  async close(): Promise<void> {
    this.failure ??= { kind: 'retryable', reason: 'closed' };
    if (this.client.connected) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.client.endAsync().catch(() => undefined),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000))),
      ]);
      clearTimeout(timer);
    }
    this.client.end(true);
    this.client.removeAllListeners();
  }
}

function splitHost(hostPort: string): [string, number] {
  const m = /^(.*):(\d+)$/.exec(hostPort);
  return m ? [m[1], Number(m[2])] : [hostPort, 8883];
}
