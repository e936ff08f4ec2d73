/**
 * The device MQTT endpoint of the double: MQTT 3.1.1 over TLS, authenticating devices and modules the way IoT Hub
 * does and answering the twin topics.
 * - Device: clientId `{deviceId}`, username `{host}/{deviceId}/?api-version=2021-04-12...`. Module: clientId
 *   `{deviceId}/{moduleId}`, username `{host}/{deviceId}/{moduleId}/?api-version=...`.
 * - Password: a SAS signed with the identity's own key (`sr={host}/devices/{id}[/modules/{moduleId}]`), or signed
 *   with a shared access policy on behalf of the device (`skn={policy}`, the policy needs DeviceConnect).
 * - A disabled device (and its modules) is refused.
 * - Twin topics `$iothub/twin/GET/?$rid=`, `$iothub/twin/PATCH/properties/reported/?$rid=` →
 *   `$iothub/twin/res/{status}/?$rid=[&$version=]`, on device and module connections alike.
 * - One connection per identity: a newer one drops the older (counted as a kick). QoS 2 and foreign topics close
 *   the connection.
 * - Limits: new connections, twin reads and twin updates are throttled per hub (closing the connection, or
 *   delaying the CONNACK / response, as the test chose); twin GETs, PATCHes and telemetry are billed, and past
 *   the daily quota a CONNECT is accepted and then closed.
 * - Device-to-cloud messages (`devices/{id}[/modules/{m}]/messages/events/{property bag}`, QoS 0 or 1) are billed
 *   in 4 KB chunks and recorded with their properties; one over 256 KB closes the connection.
 * - Twin error statuses and dropped connections can be injected.
 *
 * Why not aedes: aedes 1.x is ESM-only, and jest (CommonJS, no --experimental-vm-modules) cannot load it in the
 * test process, where the double's state must live for the inspection API. The broker side IoT Hub needs is
 * small, so it is written here on `mqtt-packet` (the codec mqtt.js and aedes themselves use).
 */
import type { TLSSocket } from 'node:tls';
import mqttPacket, { type IConnectPacket, type IPublishPacket, type ISubscribePacket, type Packet } from 'mqtt-packet';
import { API_VERSION } from './rest';
import { delay, type HubLimiter, type ThrottleClass } from './limits';
import { type HubRegistry, TwinPatchError, identityKey } from './registry';
import { type AccessPolicy, grants, parseSas, verifySasCovering } from './sas';

export interface TwinFault {
  /** @default 'PATCH' */
  op?: 'GET' | 'PATCH';
  /** Answer with this status instead of handling the request. 0 = drop the connection without an answer. */
  status: number;
  /** `errorCode`: `{"errorCode":429001,"message":...}` (what the SDK notices); `empty`: no body (what it misses). */
  body?: 'errorCode' | 'empty';
  times: number;
}

export interface TwinLogEntry {
  deviceId: string;
  /** Set on a module connection. */
  moduleId?: string;
  op: 'GET' | 'PATCH';
  /** `throttled`: the hub closed the connection for the twin throttle; `quota`: for the daily quota. */
  status: number | 'dropped' | 'throttled' | 'quota';
  /** Billed messages this request cost. */
  billed?: number;
}

/** A device-to-cloud message the hub accepted: its identity, application and system properties, and body. */
export interface D2cMessage {
  deviceId: string;
  moduleId?: string;
  /** From the topic's property bag (`devices/{id}/messages/events/{bag}`), URL-decoded: `$.`-keys are system ones. */
  properties: Record<string, string>;
  body: string;
  billed: number;
}

/** IoT Hub's largest device-to-cloud message. */
export const D2C_MAX_BYTES = 256 * 1024;

/** Why a connection attempt ended without an accepted session. */
export type ConnectRefusal = 'auth' | 'disabled' | 'throttled' | 'quota';

export interface MqttContext {
  /** Host names devices may use (the hub's and the double's `localhost:<port>`). */
  hosts: string[];
  registry: HubRegistry;
  policies: ReadonlyMap<string, AccessPolicy>;
  limiter: HubLimiter;
  faults: TwinFault[];
  twinLog: TwinLogEntry[];
  /** Device-to-cloud messages accepted, in order. */
  d2c: D2cMessage[];
  onAuthFailure(): void;
  onRefused(identity: string, why: ConnectRefusal): void;
}

const REQUEST = /^\$iothub\/twin\/(GET|PATCH)\/(properties\/reported\/)?\?(.*)$/;
const ALLOWED_SUBSCRIPTIONS = [
  /^\$iothub\/twin\/res\/#$/,
  /^\$iothub\/twin\/PATCH\/properties\/desired\/#$/,
  /^\$iothub\/methods\/POST\/#$/,
];
const CONNACK_BAD_PROTOCOL = 1;
const CONNACK_NOT_AUTHORIZED = 5;

/** One device's or module's TLS connection. */
class DeviceConnection {
  deviceId = '';
  moduleId: string | undefined;
  readonly subscriptions = new Set<string>();
  closed = false;
  /** Set when a newer connection of the same identity dropped this one. */
  kicked = false;

  constructor(readonly socket: TLSSocket) {}

  /** `deviceId` or `deviceId/moduleId`. */
  get identity(): string {
    return identityKey(this.deviceId, this.moduleId);
  }

  send(packet: Packet): void {
    if (!this.closed) this.socket.write(mqttPacket.generate(packet));
  }

  drop(): void {
    this.closed = true;
    this.socket.destroy();
  }
}

/** Live connections per identity, the most ever open at once (the "never two" check), and kicks. */
export class ConnectionCounter {
  readonly live = new Map<string, Set<DeviceConnection>>();
  readonly max = new Map<string, number>();
  readonly opened = new Map<string, number>();
  /** Connections dropped because a newer connection of the same identity arrived. */
  readonly kicks = new Map<string, number>();

  add(conn: DeviceConnection): void {
    const id = conn.identity;
    const set = this.live.get(id) ?? new Set();
    set.add(conn);
    this.live.set(id, set);
    this.max.set(id, Math.max(this.max.get(id) ?? 0, set.size));
    this.opened.set(id, (this.opened.get(id) ?? 0) + 1);
  }

  remove(conn: DeviceConnection): void {
    this.live.get(conn.identity)?.delete(conn);
  }

  kick(conn: DeviceConnection): void {
    conn.kicked = true;
    this.kicks.set(conn.identity, (this.kicks.get(conn.identity) ?? 0) + 1);
    conn.drop();
  }

  /** Every live connection (for the "drop all" switch). */
  all(): DeviceConnection[] {
    return [...this.live.values()].flatMap((s) => [...s]);
  }
}

/** Splits clientId `{deviceId}` or `{deviceId}/{moduleId}`. */
function parseClientId(clientId: string): { deviceId: string; moduleId?: string } | undefined {
  const parts = clientId.split('/');
  if (parts.length > 2 || !parts[0] || parts[1] === '') return undefined;
  return { deviceId: parts[0], moduleId: parts[1] };
}

/** Username `{host}/{deviceId}[/{moduleId}]/?api-version=...` for one of the accepted hosts. */
function usernameOk(ctx: MqttContext, username: string | undefined, clientId: string): boolean {
  if (!username) return false;
  const prefix = ctx.hosts.map((h) => `${h}/${clientId}/?`).find((p) => username.startsWith(p));
  if (!prefix) return false;
  return new URLSearchParams(username.slice(prefix.length)).get('api-version') === API_VERSION;
}

/** The identity's own key, or a policy with DeviceConnect on behalf of the device (scoped to hub, device or module). */
function passwordOk(ctx: MqttContext, password: Buffer | undefined, deviceId: string, moduleId?: string): boolean {
  const sas = password ? parseSas(password.toString('utf8')) : undefined;
  if (!sas) return false;
  const deviceResources = ctx.hosts.map((h) => `${h}/devices/${deviceId}`);
  const ownResources = moduleId ? deviceResources.map((r) => `${r}/modules/${moduleId}`) : deviceResources;
  // Whoever signs, the identity must exist.
  const keys = ctx.registry.keysOf(deviceId, moduleId);
  if (!keys) return false;
  if (sas.skn !== undefined) {
    const policy = ctx.policies.get(sas.skn);
    if (!policy || !grants(policy, 'DeviceConnect')) return false;
    const scopes = [...ctx.hosts, ...deviceResources, ...(moduleId ? ownResources : [])];
    return verifySasCovering(sas, scopes, [policy.key]);
  }
  return verifySasCovering(sas, ownResources, keys);
}

export class TwinBroker {
  constructor(
    private readonly ctx: MqttContext,
    readonly counter: ConnectionCounter
  ) {}

  /** The `tls.createServer` connection listener. */
  readonly handle = (socket: TLSSocket): void => {
    const conn = new DeviceConnection(socket);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    // Packets of one connection are handled one after another, even when one waits (latency, shaping).
    let chain = Promise.resolve();
    parser.on('packet', (packet: Packet) => {
      chain = chain.then(() => this.onPacket(conn, packet)).catch(() => conn.drop());
    });
    parser.on('error', () => conn.drop());
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    socket.on('error', () => conn.drop());
    socket.on('close', () => {
      conn.closed = true;
      if (conn.deviceId) this.counter.remove(conn);
    });
  };

  private async onPacket(conn: DeviceConnection, packet: Packet): Promise<void> {
    if (conn.closed) return;
    if (!conn.deviceId && packet.cmd !== 'connect') return conn.drop();
    switch (packet.cmd) {
      case 'connect':
        return this.onConnect(conn, packet);
      case 'subscribe':
        return this.onSubscribe(conn, packet);
      case 'unsubscribe':
        for (const t of packet.unsubscriptions) conn.subscriptions.delete(t);
        return conn.send({ cmd: 'unsuback', messageId: packet.messageId } as Packet);
      case 'publish':
        return this.onPublish(conn, packet);
      case 'pingreq':
        return conn.send({ cmd: 'pingresp' });
      case 'disconnect':
        this.counter.remove(conn);
        conn.closed = true;
        return void conn.socket.end();
      default:
        return conn.drop();
    }
  }

  /** Waits for the class's budget (delay mode) or says to close (close mode); false = throttled and closed. */
  private async shape(conn: DeviceConnection, cls: ThrottleClass): Promise<boolean> {
    const { limiter } = this.ctx;
    if (limiter.mqttThrottle === 'delay') {
      await delay(limiter.admitLater(cls));
      return !conn.closed;
    }
    if (limiter.admit(cls)) return true;
    conn.drop();
    return false;
  }

  private async onConnect(conn: DeviceConnection, packet: IConnectPacket): Promise<void> {
    if (conn.deviceId) return conn.drop();
    const refuse = (returnCode: number) => (
      conn.send({ cmd: 'connack', returnCode, sessionPresent: false }),
      conn.drop()
    );
    if (packet.protocolVersion !== 4) return refuse(CONNACK_BAD_PROTOCOL);
    const ids = packet.clientId ? parseClientId(packet.clientId) : undefined;
    if (
      !ids ||
      !usernameOk(this.ctx, packet.username, packet.clientId) ||
      !passwordOk(this.ctx, packet.password, ids.deviceId, ids.moduleId)
    ) {
      this.ctx.onAuthFailure();
      this.ctx.onRefused(packet.clientId, 'auth');
      return refuse(CONNACK_NOT_AUTHORIZED);
    }
    if (this.ctx.registry.devices.get(ids.deviceId)?.status !== 'enabled') {
      this.ctx.onRefused(packet.clientId, 'disabled');
      return refuse(CONNACK_NOT_AUTHORIZED);
    }
    const started = Date.now();
    if (!(await this.shape(conn, 'connection'))) return this.ctx.onRefused(packet.clientId, 'throttled');
    await delay(this.ctx.limiter.latencyOf('connection') - (Date.now() - started));
    if (conn.closed) return;
    conn.deviceId = ids.deviceId;
    conn.moduleId = ids.moduleId;
    this.counter.add(conn);
    // One active connection per identity: the newer one wins and the older is dropped.
    for (const other of this.counter.live.get(conn.identity) ?? []) if (other !== conn) this.counter.kick(other);
    conn.send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
    // Past the daily quota the hub accepts the CONNECT and then closes the connection.
    if (this.ctx.limiter.quotaExceeded()) {
      this.ctx.onRefused(packet.clientId, 'quota');
      setImmediate(() => conn.drop());
    }
  }

  private onSubscribe(conn: DeviceConnection, packet: ISubscribePacket): void {
    const granted = packet.subscriptions.map(({ topic, qos }) => {
      if (!ALLOWED_SUBSCRIPTIONS.some((re) => re.test(topic))) return 128;
      conn.subscriptions.add(topic);
      return Math.min(qos, 1);
    });
    conn.send({ cmd: 'suback', messageId: packet.messageId, granted });
  }

  private async onPublish(conn: DeviceConnection, packet: IPublishPacket): Promise<void> {
    // IoT Hub closes the connection on QoS 2 and on topics a device may not publish to.
    if (packet.qos === 2) return conn.drop();
    const match = REQUEST.exec(packet.topic);
    const events = conn.moduleId
      ? `devices/${conn.deviceId}/modules/${conn.moduleId}/messages/events/`
      : `devices/${conn.deviceId}/messages/events/`;
    const telemetry = packet.topic.startsWith(events);
    if (!match && !telemetry) return conn.drop();
    if (this.ctx.limiter.quotaExceeded()) {
      if (match) this.log(conn, match[1] as 'GET' | 'PATCH', 'quota');
      return conn.drop();
    }
    // Too large a message is refused by closing the connection: no PUBACK, the device sees it unacknowledged.
    if (telemetry && packet.payload.length > D2C_MAX_BYTES) return conn.drop();
    if (packet.qos === 1) conn.send({ cmd: 'puback', messageId: packet.messageId });
    if (telemetry) {
      const billed = this.ctx.limiter.bill(packet.payload.length);
      const properties = Object.fromEntries(new URLSearchParams(packet.topic.slice(events.length)));
      const message: D2cMessage = { deviceId: conn.deviceId, properties, body: packet.payload.toString(), billed };
      if (conn.moduleId) message.moduleId = conn.moduleId;
      return void this.ctx.d2c.push(message);
    }
    if (match) return this.onTwinRequest(conn, match, packet);
  }

  private log(conn: DeviceConnection, op: 'GET' | 'PATCH', status: TwinLogEntry['status'], billed?: number): void {
    const entry: TwinLogEntry = { deviceId: conn.deviceId, op, status };
    if (conn.moduleId) entry.moduleId = conn.moduleId;
    if (billed !== undefined) entry.billed = billed;
    this.ctx.twinLog.push(entry);
  }

  private async onTwinRequest(conn: DeviceConnection, match: RegExpExecArray, packet: IPublishPacket): Promise<void> {
    const op = match[1] as 'GET' | 'PATCH';
    if (op === 'PATCH' && !match[2]) return conn.drop();
    const rid = new URLSearchParams(match[3]).get('$rid') ?? '';
    const cls: ThrottleClass = op === 'GET' ? 'twinRead' : 'twinUpdate';
    const started = Date.now();
    const answer = async (status: number, body?: unknown, version?: number, billed?: number) => {
      this.log(conn, op, status, billed);
      await delay(this.ctx.limiter.latencyOf(cls) - (Date.now() - started));
      if (!conn.subscriptions.has('$iothub/twin/res/#')) return;
      const topic = `$iothub/twin/res/${status}/?$rid=${rid}${version !== undefined ? `&$version=${version}` : ''}`;
      const payload = Buffer.from(body === undefined ? '' : JSON.stringify(body));
      conn.send({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false });
    };
    const fault = this.ctx.faults.find((f) => f.times > 0 && (f.op ?? 'PATCH') === op);
    if (fault) {
      fault.times--;
      if (fault.status === 0) return void (this.log(conn, op, 'dropped'), conn.drop());
      const body =
        fault.body === 'empty' ? undefined : { errorCode: fault.status * 1000 + 1, message: 'injected failure' };
      return answer(fault.status, body);
    }
    if (!(await this.shape(conn, cls))) return this.log(conn, op, 'throttled');
    const twin = this.ctx.registry.twins.get(conn.identity);
    if (!twin) return conn.drop(); // the identity was deleted while connected
    if (op === 'GET') {
      const properties = structuredClone(twin.properties);
      const billed = this.ctx.limiter.bill(Buffer.byteLength(JSON.stringify(properties)));
      return answer(200, properties, undefined, billed);
    }
    const billed = this.ctx.limiter.bill(packet.payload.length);
    let version: number;
    try {
      version = this.ctx.registry.patchReported(conn.identity, JSON.parse(packet.payload.toString()) as unknown);
    } catch (err) {
      const message = err instanceof TwinPatchError ? err.message : 'malformed JSON';
      return answer(400, { errorCode: 400004, message }, undefined, billed);
    }
    return answer(204, undefined, version, billed);
  }
}
