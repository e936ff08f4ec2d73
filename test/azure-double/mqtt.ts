/**
 * The device MQTT endpoint of the double: MQTT 3.1.1 over TLS, authenticating devices the way IoT Hub does
 * (clientId = device id, username `{host}/{deviceId}/?api-version=2021-04-12...`, password = a device SAS for
 * `{host}/devices/{deviceId}` signed with one of the device's keys), answering the twin topics
 * (`$iothub/twin/GET/?$rid=`, `$iothub/twin/PATCH/properties/reported/?$rid=` → `$iothub/twin/res/{status}/?$rid=
 * [&$version=]`), one connection per device id (a newer one drops the older, as IoT Hub does), QoS 2 and foreign
 * topics close the connection, and twin error statuses and dropped connections can be injected.
 *
 * Why not aedes: aedes 1.x is ESM-only, and jest (CommonJS, no --experimental-vm-modules) cannot load it in the
 * test process, where the double's state must live for the inspection API. The broker side IoT Hub needs is
 * small, so it is written here on `mqtt-packet` (the codec mqtt.js and aedes themselves use).
 */
import type { TLSSocket } from 'node:tls';
import mqttPacket, { type IConnectPacket, type IPublishPacket, type ISubscribePacket, type Packet } from 'mqtt-packet';
import { API_VERSION } from './rest';
import { type HubRegistry, TwinPatchError } from './registry';
import { parseSas, verifySas } from './sas';

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
  op: 'GET' | 'PATCH';
  status: number | 'dropped';
}

export interface MqttContext {
  /** Host names devices may use (the hub's and the double's `localhost:<port>`). */
  hosts: string[];
  registry: HubRegistry;
  faults: TwinFault[];
  twinLog: TwinLogEntry[];
  onAuthFailure(): void;
}

const REQUEST = /^\$iothub\/twin\/(GET|PATCH)\/(properties\/reported\/)?\?(.*)$/;
const ALLOWED_SUBSCRIPTIONS = [
  /^\$iothub\/twin\/res\/#$/,
  /^\$iothub\/twin\/PATCH\/properties\/desired\/#$/,
  /^\$iothub\/methods\/POST\/#$/,
];
const CONNACK_BAD_PROTOCOL = 1;
const CONNACK_NOT_AUTHORIZED = 5;

/** One device's TLS connection. */
class DeviceConnection {
  deviceId = '';
  readonly subscriptions = new Set<string>();
  closed = false;

  constructor(readonly socket: TLSSocket) {}

  send(packet: Packet): void {
    if (!this.closed) this.socket.write(mqttPacket.generate(packet));
  }

  drop(): void {
    this.closed = true;
    this.socket.destroy();
  }
}

/** Live connections per device id, and the most ever open at once (the "never two" check). */
export class ConnectionCounter {
  readonly live = new Map<string, Set<DeviceConnection>>();
  readonly max = new Map<string, number>();
  readonly opened = new Map<string, number>();

  add(conn: DeviceConnection): void {
    const set = this.live.get(conn.deviceId) ?? new Set();
    set.add(conn);
    this.live.set(conn.deviceId, set);
    this.max.set(conn.deviceId, Math.max(this.max.get(conn.deviceId) ?? 0, set.size));
    this.opened.set(conn.deviceId, (this.opened.get(conn.deviceId) ?? 0) + 1);
  }

  remove(conn: DeviceConnection): void {
    this.live.get(conn.deviceId)?.delete(conn);
  }

  /** Every live connection (for the "drop all" switch). */
  all(): DeviceConnection[] {
    return [...this.live.values()].flatMap((s) => [...s]);
  }
}

/** Username `{host}/{deviceId}/?api-version=...` for one of the accepted hosts. */
function usernameOk(ctx: MqttContext, username: string | undefined, deviceId: string): boolean {
  if (!username) return false;
  const prefix = ctx.hosts.map((h) => `${h}/${deviceId}/?`).find((p) => username.startsWith(p));
  if (!prefix) return false;
  return new URLSearchParams(username.slice(prefix.length)).get('api-version') === API_VERSION;
}

function passwordOk(ctx: MqttContext, password: Buffer | undefined, deviceId: string): boolean {
  const device = ctx.registry.devices.get(deviceId);
  const sas = password ? parseSas(password.toString('utf8')) : undefined;
  if (!device || device.status !== 'enabled' || !sas) return false;
  const keys = [device.authentication.symmetricKey.primaryKey, device.authentication.symmetricKey.secondaryKey];
  return ctx.hosts.some((h) => verifySas(sas, `${h}/devices/${deviceId}`, keys));
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
    parser.on('packet', (packet: Packet) => this.onPacket(conn, packet));
    parser.on('error', () => conn.drop());
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    socket.on('error', () => conn.drop());
    socket.on('close', () => {
      conn.closed = true;
      if (conn.deviceId) this.counter.remove(conn);
    });
  };

  private onPacket(conn: DeviceConnection, packet: Packet): void {
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

  private onConnect(conn: DeviceConnection, packet: IConnectPacket): void {
    if (conn.deviceId) return conn.drop();
    const refuse = (returnCode: number) => (
      conn.send({ cmd: 'connack', returnCode, sessionPresent: false }),
      conn.drop()
    );
    if (packet.protocolVersion !== 4) return refuse(CONNACK_BAD_PROTOCOL);
    const id = packet.clientId;
    if (!id || !usernameOk(this.ctx, packet.username, id) || !passwordOk(this.ctx, packet.password, id)) {
      this.ctx.onAuthFailure();
      return refuse(CONNACK_NOT_AUTHORIZED);
    }
    conn.deviceId = id;
    this.counter.add(conn);
    // One active connection per device id: the newer one wins and the older is dropped.
    for (const other of this.counter.live.get(id) ?? []) if (other !== conn) other.drop();
    conn.send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
  }

  private onSubscribe(conn: DeviceConnection, packet: ISubscribePacket): void {
    const granted = packet.subscriptions.map(({ topic, qos }) => {
      if (!ALLOWED_SUBSCRIPTIONS.some((re) => re.test(topic))) return 128;
      conn.subscriptions.add(topic);
      return Math.min(qos, 1);
    });
    conn.send({ cmd: 'suback', messageId: packet.messageId, granted });
  }

  private onPublish(conn: DeviceConnection, packet: IPublishPacket): void {
    // IoT Hub closes the connection on QoS 2 and on topics a device may not publish to.
    if (packet.qos === 2) return conn.drop();
    const match = REQUEST.exec(packet.topic);
    const telemetry = packet.topic.startsWith(`devices/${conn.deviceId}/messages/events/`);
    if (!match && !telemetry) return conn.drop();
    if (packet.qos === 1) conn.send({ cmd: 'puback', messageId: packet.messageId });
    if (match) this.onTwinRequest(conn, match, packet);
  }

  private onTwinRequest(conn: DeviceConnection, match: RegExpExecArray, packet: IPublishPacket): void {
    const op = match[1] as 'GET' | 'PATCH';
    if (op === 'PATCH' && !match[2]) return conn.drop();
    const rid = new URLSearchParams(match[3]).get('$rid') ?? '';
    const log = (status: number | 'dropped') => this.ctx.twinLog.push({ deviceId: conn.deviceId, op, status });
    const answer = (status: number, body?: unknown, version?: number) => {
      log(status);
      if (!conn.subscriptions.has('$iothub/twin/res/#')) return;
      const topic = `$iothub/twin/res/${status}/?$rid=${rid}${version !== undefined ? `&$version=${version}` : ''}`;
      const payload = Buffer.from(body === undefined ? '' : JSON.stringify(body));
      conn.send({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false });
    };
    const fault = this.ctx.faults.find((f) => f.times > 0 && (f.op ?? 'PATCH') === op);
    if (fault) {
      fault.times--;
      if (fault.status === 0) return void (log('dropped'), conn.drop());
      const body =
        fault.body === 'empty' ? undefined : { errorCode: fault.status * 1000 + 1, message: 'injected failure' };
      return answer(fault.status, body);
    }
    const twin = this.ctx.registry.twins.get(conn.deviceId)!;
    if (op === 'GET') return answer(200, structuredClone(twin.properties));
    try {
      const patch = JSON.parse(packet.payload.toString()) as unknown;
      answer(204, undefined, this.ctx.registry.patchReported(conn.deviceId, patch));
    } catch (err) {
      answer(400, { errorCode: 400004, message: err instanceof TwinPatchError ? err.message : 'malformed JSON' });
    }
  }
}
