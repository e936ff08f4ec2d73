/**
 * A customer's real device for tests: an MQTT client (mqtt.js, not the connector's code) that holds a
 * connection on its device id with its own key and reconnects whenever it is dropped, the way devices in the
 * field do. A connector that connects as that device id kicks it off; the double counts those kicks.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { API_VERSION } from './rest';
import { makeSas } from './sas';

export interface RealDeviceOptions {
  /** `localhost:<port>`, the double's device endpoint. */
  deviceHost: string;
  deviceId: string;
  key: string;
  ca: string;
}

export class RealDevice {
  /** Times the connection was closed by the other side (each one a reconnect). */
  disconnects = 0;
  private stopped = false;

  private constructor(readonly client: MqttClient) {}

  /** Connects and resolves once the first CONNACK arrived. */
  static async connect(opts: RealDeviceOptions): Promise<RealDevice> {
    const [host, port] = opts.deviceHost.split(':');
    const resource = `${opts.deviceHost}/devices/${opts.deviceId}`;
    const client = mqtt.connect({
      protocol: 'mqtts',
      host,
      port: Number(port),
      ca: opts.ca,
      clientId: opts.deviceId,
      username: `${opts.deviceHost}/${opts.deviceId}/?api-version=${API_VERSION}`,
      password: makeSas(resource, opts.key),
      protocolVersion: 4,
      reconnectPeriod: 100,
      connectTimeout: 10_000,
      keepalive: 30,
    });
    const device = new RealDevice(client);
    client.on('close', () => {
      if (!device.stopped) device.disconnects++;
    });
    client.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      setTimeout(() => reject(new Error(`real device ${opts.deviceId} did not connect`)), 15_000).unref();
    });
    return device;
  }

  get connected(): boolean {
    return this.client.connected;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client.endAsync(true);
  }
}
