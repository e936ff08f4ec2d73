/**
 * The device side: connect as one SIM's device identity with `azure-iot-device` + `azure-iot-device-mqtt`, get the
 * twin, send reported-property patches in order, close.
 *
 * Why the tap: the MQTT transport ignores the status in `$iothub/twin/res/{status}/?$rid=` and fails a request
 * only when the body carries `errorCode` (mqtt_twin_client.js `_onResponseMessage`), so an empty-body `res/429`
 * looks like success. The transport's (typed, documented) second constructor argument is its MqttBase; we pass
 * a subclass of the SDK's own MqttBase that notes the `$rid` of each twin request it publishes and matches the
 * response topic to it, so the status decides the outcome while the SDK still does connect, SAS, GET and PATCH.
 * The tap needs no private field, and a disconnect or a missing response is a failure too (the SDK would wait).
 */
import { createRequire } from 'node:module';
import { Client, type Twin } from 'azure-iot-device';
import { Mqtt } from 'azure-iot-device-mqtt';
import type { MqttBase as MqttBaseType } from 'azure-iot-mqtt-base';
import type { SimPatch } from '../../record';
import { classifyDeviceError, kindOfStatus, type Failure } from './errors';

// The MqttBase class of the very copy azure-iot-device-mqtt uses, whatever npm hoisting does.
const { MqttBase } = createRequire(require.resolve('azure-iot-device-mqtt'))('azure-iot-mqtt-base') as {
  MqttBase: new () => MqttBaseType;
};

export interface TwinResponse {
  status: number;
  version?: number;
}

const RESPONSE_TOPIC = /^\$iothub\/twin\/res\/(\d+)\/\?(.*)$/;
const REQUEST_TOPIC = /^\$iothub\/twin\/(GET|PATCH)\/[^?]*\?\$rid=([^&]+)/;

/** The SDK's MqttBase, recording twin response statuses by request id. */
class TwinStatusTap extends MqttBase {
  private waiting = new Map<string, (r: TwinResponse) => void>();
  private nextRequest: ((rid: string) => void) | undefined;

  constructor() {
    super();
    this.on('message', (topic: string) => this.onMessage(topic));
  }

  /** Resolves with the response to the next twin request this connection publishes. */
  nextResponse(): Promise<TwinResponse> {
    return new Promise((resolve) => {
      this.nextRequest = (rid) => this.waiting.set(rid, resolve);
    });
  }

  override publish(...args: Parameters<MqttBaseType['publish']>): void {
    const rid = REQUEST_TOPIC.exec(args[0])?.[2];
    if (rid && this.nextRequest) {
      this.nextRequest(rid);
      this.nextRequest = undefined;
    }
    super.publish(...args);
  }

  private onMessage(topic: string): void {
    const match = RESPONSE_TOPIC.exec(topic);
    if (!match) return;
    const query = new URLSearchParams(match[2]);
    const rid = query.get('$rid') ?? '';
    const version = query.get('$version');
    this.waiting.get(rid)?.({ status: Number(match[1]), version: version ? Number(version) : undefined });
    this.waiting.delete(rid);
  }
}

/** Our own retries decide; the SDK's would retry for up to 240 s behind our back. */
const NO_RETRY = { shouldRetry: () => false, nextRetryTimeout: () => 0 };

export interface DeviceSessionOptions {
  /** `host` or `host:port` devices connect to. */
  host: string;
  deviceId: string;
  key: string;
  ca?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

type Step<T> = { ok: true; value: T } | { ok: false; failure: Failure };

/** One open device connection. Create with `DeviceSession.open`, always `close()`. */
export class DeviceSession {
  private failed: Failure | undefined;
  private onFail: ((f: Failure) => void)[] = [];
  private readonly cleanup: (() => void)[] = [];

  private constructor(
    private readonly client: Client,
    private readonly tap: TwinStatusTap,
    private readonly opts: DeviceSessionOptions
  ) {}

  static async open(opts: DeviceSessionOptions): Promise<Step<DeviceSession>> {
    const tap = new TwinStatusTap();
    // A transport constructor bound to this connection's tap; Client.fromConnectionString calls `new` on it.
    const Transport = class extends Mqtt {
      constructor(auth: ConstructorParameters<typeof Mqtt>[0]) {
        super(auth, tap);
      }
    };
    const cs = `HostName=${opts.host};DeviceId=${opts.deviceId};SharedAccessKey=${opts.key}`;
    const client = Client.fromConnectionString(cs, Transport);
    client.setRetryPolicy(NO_RETRY);
    const session = new DeviceSession(client, tap, opts);
    session.watch();
    if (opts.ca) await client.setOptions({ ca: opts.ca });
    const opened = await session.step('connect', () => client.open());
    return opened.ok ? { ok: true, value: session } : opened;
  }

  /** Any drop, client error or abort fails whatever is in flight, once. */
  private watch(): void {
    const drop = (what: string) => () => this.fail({ kind: 'retryable', reason: `connection ${what}`, dropped: true });
    const onDisconnect = drop('dropped');
    const onError = drop('error');
    this.client.on('disconnect', onDisconnect);
    this.client.on('error', onError);
    const onAbort = () => this.fail({ kind: 'retryable', reason: 'aborted' });
    this.opts.signal?.addEventListener('abort', onAbort, { once: true });
    this.cleanup.push(
      () => this.client.removeListener('disconnect', onDisconnect),
      () => this.client.removeListener('error', onError),
      () => this.opts.signal?.removeEventListener('abort', onAbort)
    );
    if (this.opts.signal?.aborted) onAbort();
  }

  private fail(failure: Failure): void {
    if (this.failed) return;
    this.failed = failure;
    for (const f of this.onFail.splice(0)) f(failure);
  }

  /** Runs one SDK call, racing it against a drop, an abort and the timeout. */
  private step<T>(operation: string, call: () => Promise<T>): Promise<Step<T>> {
    if (this.failed) return Promise.resolve({ ok: false, failure: this.failed });
    return new Promise((resolve) => {
      let settled = false;
      const settle = (s: Step<T>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(s);
      };
      const timer = setTimeout(
        () =>
          settle({
            ok: false,
            failure: { kind: 'retryable', reason: `${operation}: no answer in ${this.opts.timeoutMs} ms` },
          }),
        this.opts.timeoutMs
      );
      this.onFail.push((failure) =>
        settle({ ok: false, failure: { ...failure, reason: `${operation}: ${failure.reason}` } })
      );
      call().then(
        (value) => settle({ ok: true, value }),
        (err: unknown) => settle({ ok: false, failure: classifyDeviceError(err, operation) })
      );
    });
  }

  /** GET the twin; the response status is checked, not just the SDK's callback. */
  async getTwin(): Promise<Step<Twin>> {
    const response = this.tap.nextResponse();
    const got = await this.step('twin get', () => {
      return new Promise<{ res: TwinResponse; twin?: Twin }>((resolve, reject) => {
        // The tap sees the response before the SDK does, so a failed status wins over the SDK's reading of it.
        void response.then((res) => res.status !== 200 && resolve({ res }));
        this.client.getTwin().then((twin) => response.then((res) => resolve({ res, twin })), later(reject));
      });
    });
    if (!got.ok) return got;
    const { twin, res } = got.value;
    if (!twin || res.status !== 200) return { ok: false, failure: statusFailure('twin get', res.status) };
    return { ok: true, value: twin };
  }

  /** Sends one reported patch through the SDK and waits for its `$iothub/twin/res/{status}`. */
  async patchReported(twin: Twin, patch: SimPatch): Promise<Step<TwinResponse>> {
    const response = this.tap.nextResponse();
    // The SDK callback is not trusted for success (see the file comment); the tapped status is. Its errors
    // still count, e.g. a publish that could not be sent.
    const sent = await this.step('twin patch', () => {
      return new Promise<TwinResponse>((resolve, reject) => {
        void response.then(resolve);
        twin.properties.reported.update(patch, (err?: Error) => err && later(reject)(err));
      });
    });
    if (!sent.ok) return sent;
    const status = sent.value.status;
    if (status < 200 || status >= 300) return { ok: false, failure: statusFailure('twin patch', status) };
    return sent;
  }

  /** Closes the connection; never throws, and does not wait forever for a dead peer. */
  async close(): Promise<void> {
    for (const c of this.cleanup.splice(0)) c();
    this.client.on('error', () => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.client.close().catch(() => undefined),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000))),
    ]);
    clearTimeout(timer);
    this.client.removeAllListeners();
  }
}

/**
 * Defers an SDK error until pending promise jobs have run: the tap and the SDK see the same response message in
 * one emit, the SDK's callback synchronously, so the tapped status must get the chance to settle first.
 */
function later(reject: (err: unknown) => void): (err: unknown) => void {
  return (err) => setImmediate(() => reject(err));
}

function statusFailure(operation: string, status: number): Failure {
  return { kind: kindOfStatus(status), reason: `${operation}: status ${status}`, status };
}
