/**
 * A local Azure IoT Hub double for tests: the service REST API over HTTPS and the device MQTT endpoint over TLS,
 * both on 127.0.0.1 free ports, sharing one identity registry (devices and modules) and twin store, behaving like
 * a hub of a given tier and unit count: per-hub throttles (REST 429, MQTT close or delayed CONNACK), a meter of
 * billed messages with the daily quota (403002), latency per operation, shared access policies with their
 * permissions, and a clock that tests move to the next UTC day. Switches inject faults; an in-process
 * inspection API shows what the hub saw. See rest.ts, mqtt.ts and limits.ts for the protocol details.
 *
 * Connection details for the code under test: `serviceConnectionString` (HostName=localhost, the `iothubowner`
 * policy; `connectionStringFor(policy)` for another), `serviceUrl` (where the REST API really listens),
 * `deviceHost` (`localhost:<port>`, what devices put in their connection string) and `ca` (the self-signed
 * certificate to trust).
 */
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import type { AddressInfo, Server } from 'node:net';
import { nextUtcMidnight } from '../../targets/azure/tiers';
import { makeLocalhostCert } from './certs';
import { HubClock, HubLimiter, type HubLimitOptions, type ThrottleClass } from './limits';
import {
  ConnectionCounter,
  TwinBroker,
  type ConnectRefusal,
  type TwinFault,
  type TwinLogEntry,
  type D2cMessage,
} from './mqtt';
import { RealDevice } from './real-device';
import { HubRegistry, identityKey, type DeviceIdentity, type ModuleIdentity, type TwinDocument } from './registry';
import { createRestHandler, type BulkFault, type DeviceRefusal, type RestFault, type RestLogEntry } from './rest';
import { DEFAULT_POLICIES, type AccessPolicy, type Permission } from './sas';

export type { BulkFault, DeviceRefusal, RestFault, RestLogEntry } from './rest';
export type { ConnectRefusal, TwinFault, TwinLogEntry, D2cMessage } from './mqtt';
export type { DeviceIdentity, ModuleIdentity, TwinDocument } from './registry';
export type { HubLimitOptions, Latency, ThrottleClass } from './limits';
export type { Permission } from './sas';
export { RealDevice } from './real-device';

export interface AzureDoubleOptions extends HubLimitOptions {
  /** The hub's HostName as clients put it in connection strings and SAS tokens. @default 'localhost' */
  hubHost?: string;
  /** The policy of `serviceConnectionString`. @default 'iothubowner' */
  policyName?: string;
  /**
   * The hub's shared access policies and their permissions.
   * @default iothubowner (all), service, device, registryRead, registryReadWrite — as a new hub has them
   */
  policies?: Record<string, Permission[]>;
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
  readonly policies: ReadonlyMap<string, AccessPolicy>;
  readonly registry = new HubRegistry();
  readonly clock = new HubClock();
  readonly limiter: HubLimiter;
  /** Every REST request, in arrival order. */
  readonly restLog: RestLogEntry[] = [];
  /** Every twin request over MQTT, with the status answered. */
  readonly twinLog: TwinLogEntry[] = [];
  /** Device-to-cloud messages the hub accepted, in order. */
  readonly d2c: D2cMessage[] = [];
  /** Connection attempts that ended without a usable session, and why. */
  readonly refusedConnections: { identity: string; why: ConnectRefusal }[] = [];
  /** Requests or connections refused for a bad SAS, username, key or missing permission. */
  authFailures = 0;
  ca = '';
  serviceUrl = '';
  deviceHost = '';

  private readonly restFaults: RestFault[] = [];
  private readonly bulkFaults: BulkFault[] = [];
  private readonly refusedDevices = new Map<string, DeviceRefusal>();
  private readonly twinFaults: TwinFault[] = [];
  private readonly counter = new ConnectionCounter();
  private readonly realDevices: RealDevice[] = [];
  private rest?: https.Server;
  private mqtt?: tls.Server;

  private constructor(options: AzureDoubleOptions) {
    this.hubHost = options.hubHost ?? 'localhost';
    this.policyName = options.policyName ?? 'iothubowner';
    const policies = options.policies ?? DEFAULT_POLICIES;
    if (!policies[this.policyName]) throw new Error(`the double has no policy ${this.policyName}`);
    this.policies = new Map(
      Object.entries(policies).map(([name, permissions]) => [
        name,
        { name, key: randomBytes(32).toString('base64'), permissions: new Set(permissions) },
      ])
    );
    this.limiter = new HubLimiter(this.clock, options);
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
    const shared = { registry: this.registry, policies: this.policies, limiter: this.limiter, onAuthFailure };
    const handler = createRestHandler({
      ...shared,
      hubHost: this.hubHost,
      faults: this.restFaults,
      bulkFaults: this.bulkFaults,
      refusedDevices: this.refusedDevices,
      log: this.restLog,
    });
    this.rest = https.createServer({ key, cert }, (req, res) => void handler(req, res));
    this.serviceUrl = `https://127.0.0.1:${await listen(this.rest)}`;
    const hosts = [this.hubHost];
    const onRefused = (identity: string, why: ConnectRefusal) => void this.refusedConnections.push({ identity, why });
    const broker = new TwinBroker(
      { ...shared, hosts, faults: this.twinFaults, twinLog: this.twinLog, d2c: this.d2c, onRefused },
      this.counter
    );
    this.mqtt = tls.createServer({ key, cert }, broker.handle);
    this.deviceHost = `localhost:${await listen(this.mqtt)}`;
    hosts.push(this.deviceHost);
  }

  /** The key of `serviceConnectionString`'s policy. */
  get policyKey(): string {
    return this.policies.get(this.policyName)!.key;
  }

  /** `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` for the hub's `iothubowner` (or given) policy. */
  get serviceConnectionString(): string {
    return this.connectionStringFor(this.policyName);
  }

  /** The service connection string of another of the hub's policies. */
  connectionStringFor(policy: string): string {
    const p = this.policies.get(policy);
    if (!p) throw new Error(`the double has no policy ${policy}`);
    return `HostName=${this.hubHost};SharedAccessKeyName=${p.name};SharedAccessKey=${p.key}`;
  }

  // ---- fault switches ----

  /** The next `times` matching REST requests fail (429 with IoT Hub's throttling body unless told otherwise). */
  failRest(fault: RestFault): void {
    this.restFaults.push({ ...fault });
  }

  /** The next `times` bulk `POST /devices` answer 400, with or without a result body, creating nothing. */
  failBulk(fault: BulkFault): void {
    this.bulkFaults.push({ ...fault });
  }

  /**
   * The hub refuses to create `deviceId` (until `clearFaults`): a bulk `POST /devices` answers 400 with a result
   * naming it while the call's other devices are created, as the hub does; a single create answers 400 `code`.
   */
  refuseDevice(deviceId: string, refusal: DeviceRefusal): void {
    this.refusedDevices.set(deviceId, { ...refusal });
  }

  /** The next `times` twin requests (PATCH by default) get `status` (0: the connection is dropped instead). */
  failTwin(fault: TwinFault): void {
    this.twinFaults.push({ ...fault });
  }

  /** Drops every live device connection now (or those of one device or module identity). */
  dropConnections(identity?: string): void {
    for (const conn of this.counter.all()) if (!identity || conn.identity === identity) conn.drop();
  }

  clearFaults(): void {
    this.restFaults.length = 0;
    this.bulkFaults.length = 0;
    this.refusedDevices.clear();
    this.twinFaults.length = 0;
  }

  /** Turns the hub's throttles off or on (e.g. to set a test up quickly). */
  setThrottling(enabled: boolean): void {
    this.limiter.throttleEnabled = enabled;
  }

  /** Disables a device as an operator would: its connections (and its modules') are dropped and refused. */
  disableDevice(deviceId: string, reason = 'disabled by operator'): void {
    const device = this.registry.devices.get(deviceId);
    if (!device) throw new Error(`no device ${deviceId}`);
    device.status = 'disabled';
    device.statusReason = reason;
    for (const conn of this.counter.all()) if (conn.deviceId === deviceId) conn.drop();
  }

  /** Moves the hub's clock to just after the next 00:00 UTC: the daily quota starts again. */
  advanceToNextUtcDay(): void {
    const now = this.clock.now();
    this.clock.offsetMs += nextUtcMidnight(now) + 1_000 - now;
  }

  /** Starts a customer's device holding a connection on `deviceId` (created if missing), reconnecting when kicked. */
  async startRealDevice(deviceId: string): Promise<RealDevice> {
    const device = this.registry.devices.get(deviceId) ?? this.registry.create(deviceId);
    const real = await RealDevice.connect({
      deviceHost: this.deviceHost,
      deviceId,
      key: device.authentication.symmetricKey.primaryKey,
      ca: this.ca,
    });
    this.realDevices.push(real);
    return real;
  }

  // ---- inspection ----

  twin(deviceId: string, moduleId?: string): TwinDocument | undefined {
    const twin = this.registry.twins.get(identityKey(deviceId, moduleId));
    return twin && structuredClone(twin);
  }

  /** The twin's reported properties without `$version`, for exact comparisons. */
  reported(deviceId: string, moduleId?: string): Record<string, unknown> | undefined {
    const twin = this.twin(deviceId, moduleId);
    if (!twin) return undefined;
    const { $version: _v, ...rest } = twin.properties.reported;
    return rest;
  }

  device(deviceId: string): DeviceIdentity | undefined {
    const device = this.registry.devices.get(deviceId);
    return device && structuredClone(device);
  }

  module(deviceId: string, moduleId: string): ModuleIdentity | undefined {
    const module = this.registry.modules.get(identityKey(deviceId, moduleId));
    return module && structuredClone(module);
  }

  deviceIds(): string[] {
    return [...this.registry.devices.keys()];
  }

  /** Connections open now, for one identity (`deviceId` or `deviceId/moduleId`) or in total. */
  connectionCount(identity?: string): number {
    if (identity) return this.counter.live.get(identity)?.size ?? 0;
    return this.counter.all().length;
  }

  /** The most connections ever open at once for one identity (or the highest over all). */
  maxConcurrentConnections(identity?: string): number {
    if (identity) return this.counter.max.get(identity) ?? 0;
    return Math.max(0, ...this.counter.max.values());
  }

  /** Authenticated connections ever opened for an identity. */
  connectionsOpened(identity: string): number {
    return this.counter.opened.get(identity) ?? 0;
  }

  /** Connections of an identity dropped because a newer connection of the same identity arrived. */
  kicks(identity: string): number {
    return this.counter.kicks.get(identity) ?? 0;
  }

  /** Billed messages of the hub's current UTC day. */
  billedMessagesToday(): number {
    return this.limiter.billedMessagesToday();
  }

  /** Billed messages since the double started. */
  get billedMessagesTotal(): number {
    return this.limiter.billedTotal;
  }

  /** Operations of a class the hub accepted (identity: one per device of a bulk call). */
  acceptedCount(cls: ThrottleClass): number {
    return this.limiter.accepted[cls].length;
  }

  /** Operations of a class the hub refused or delayed for its throttle. */
  throttledCount(cls: ThrottleClass): number {
    return this.limiter.throttled[cls];
  }

  /** The most operations of a class the hub accepted within any `windowMs`. */
  maxInWindow(cls: ThrottleClass, windowMs: number): number {
    return this.limiter.maxInWindow(cls, windowMs);
  }

  async stop(): Promise<void> {
    await Promise.all(this.realDevices.map((d) => d.stop()));
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
