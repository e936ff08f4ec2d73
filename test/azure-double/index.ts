/**
 * A local Azure IoT Hub double for tests: the service REST API over HTTPS and the device MQTT endpoint over TLS,
 * both on 127.0.0.1 free ports, sharing one identity registry and twin store, with switches to inject throttling
 * and dropped connections, and an in-process inspection API. See rest.ts and mqtt.ts for the protocol details.
 *
 * Connection details for the code under test: `serviceConnectionString` (HostName=localhost, the hub's
 * `iothubowner` policy), `serviceUrl` (where the REST API really listens), `deviceHost` (`localhost:<port>`, what
 * devices put in their connection string) and `ca` (the self-signed certificate to trust).
 */
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import type { AddressInfo, Server } from 'node:net';
import { makeLocalhostCert } from './certs';
import { ConnectionCounter, TwinBroker, type TwinFault, type TwinLogEntry } from './mqtt';
import { HubRegistry, type DeviceIdentity, type TwinDocument } from './registry';
import { createRestHandler, type RestFault, type RestLogEntry } from './rest';

export type { RestFault, RestLogEntry } from './rest';
export type { TwinFault, TwinLogEntry } from './mqtt';
export type { DeviceIdentity, TwinDocument } from './registry';

export interface AzureDoubleOptions {
  /** The hub's HostName as clients put it in connection strings and SAS tokens. @default 'localhost' */
  hubHost?: string;
  /** @default 'iothubowner' */
  policyName?: string;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

export class AzureIotHubDouble {
  readonly hubHost: string;
  readonly policyName: string;
  readonly policyKey = randomBytes(32).toString('base64');
  readonly registry = new HubRegistry();
  /** Every REST request, in arrival order. */
  readonly restLog: RestLogEntry[] = [];
  /** Every twin request over MQTT, with the status answered. */
  readonly twinLog: TwinLogEntry[] = [];
  /** Requests or connections refused for a bad SAS, username or key. */
  authFailures = 0;
  ca = '';
  serviceUrl = '';
  deviceHost = '';

  private readonly restFaults: RestFault[] = [];
  private readonly twinFaults: TwinFault[] = [];
  private readonly counter = new ConnectionCounter();
  private rest?: https.Server;
  private mqtt?: tls.Server;

  private constructor(options: AzureDoubleOptions) {
    this.hubHost = options.hubHost ?? 'localhost';
    this.policyName = options.policyName ?? 'iothubowner';
  }

  static async start(options: AzureDoubleOptions = {}): Promise<AzureIotHubDouble> {
    const double = new AzureIotHubDouble(options);
    await double.listen();
    return double;
  }

  private async listen(): Promise<void> {
    const { key, cert } = makeLocalhostCert();
    this.ca = cert;
    const onAuthFailure = () => void this.authFailures++;
    const handler = createRestHandler({
      hubHost: this.hubHost,
      policyName: this.policyName,
      policyKey: this.policyKey,
      registry: this.registry,
      faults: this.restFaults,
      log: this.restLog,
      onAuthFailure,
    });
    this.rest = https.createServer({ key, cert }, (req, res) => void handler(req, res));
    this.serviceUrl = `https://127.0.0.1:${await listen(this.rest)}`;
    const hosts = [this.hubHost];
    const broker = new TwinBroker(
      { hosts, registry: this.registry, faults: this.twinFaults, twinLog: this.twinLog, onAuthFailure },
      this.counter
    );
    this.mqtt = tls.createServer({ key, cert }, broker.handle);
    this.deviceHost = `localhost:${await listen(this.mqtt)}`;
    hosts.push(this.deviceHost);
  }

  /** `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` for the hub's policy. */
  get serviceConnectionString(): string {
    return `HostName=${this.hubHost};SharedAccessKeyName=${this.policyName};SharedAccessKey=${this.policyKey}`;
  }

  // ---- fault switches ----

  /** The next `times` matching REST requests fail (429 with IoT Hub's throttling body unless told otherwise). */
  failRest(fault: RestFault): void {
    this.restFaults.push({ ...fault });
  }

  /** The next `times` twin requests (PATCH by default) get `status` (0: the connection is dropped instead). */
  failTwin(fault: TwinFault): void {
    this.twinFaults.push({ ...fault });
  }

  /** Drops every live device connection now (or those of one device). */
  dropConnections(deviceId?: string): void {
    for (const conn of this.counter.all()) if (!deviceId || conn.deviceId === deviceId) conn.drop();
  }

  clearFaults(): void {
    this.restFaults.length = 0;
    this.twinFaults.length = 0;
  }

  // ---- inspection ----

  twin(deviceId: string): TwinDocument | undefined {
    const twin = this.registry.twins.get(deviceId);
    return twin && structuredClone(twin);
  }

  /** The twin's reported properties without `$version`, for exact comparisons. */
  reported(deviceId: string): Record<string, unknown> | undefined {
    const twin = this.twin(deviceId);
    if (!twin) return undefined;
    const { $version: _v, ...rest } = twin.properties.reported;
    return rest;
  }

  device(deviceId: string): DeviceIdentity | undefined {
    const device = this.registry.devices.get(deviceId);
    return device && structuredClone(device);
  }

  deviceIds(): string[] {
    return [...this.registry.devices.keys()];
  }

  /** Device connections open now, for one device or in total. */
  connectionCount(deviceId?: string): number {
    if (deviceId) return this.counter.live.get(deviceId)?.size ?? 0;
    return this.counter.all().length;
  }

  /** The most connections ever open at once for one device id (or the highest over all ids). */
  maxConcurrentConnections(deviceId?: string): number {
    if (deviceId) return this.counter.max.get(deviceId) ?? 0;
    return Math.max(0, ...this.counter.max.values());
  }

  /** Authenticated connections ever opened for a device. */
  connectionsOpened(deviceId: string): number {
    return this.counter.opened.get(deviceId) ?? 0;
  }

  async stop(): Promise<void> {
    this.dropConnections();
    await Promise.all(
      [this.rest, this.mqtt].map(
        (server) =>
          new Promise<void>((resolve) => {
            if (!server) return resolve();
            if ('closeAllConnections' in server) (server as https.Server).closeAllConnections();
            server.close(() => resolve());
          })
      )
    );
  }
}
