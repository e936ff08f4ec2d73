/**
 * The double's identity registry and twins, with IoT Hub's semantics: hub-generated keys when none are given,
 * etags, a twin per device and per module with `version`, per-section `$version`, JSON-merge patches where `null`
 * deletes, device status (a disabled device is refused), module identities (up to 50 per device), and the
 * documented id character set. Identities and twins are keyed by `deviceId` or `deviceId/moduleId` (`/` cannot
 * occur in an id).
 */
import { randomBytes, randomUUID } from 'node:crypto';

export interface DeviceIdentity {
  deviceId: string;
  generationId: string;
  etag: string;
  status: 'enabled' | 'disabled';
  statusReason?: string;
  connectionState: 'Connected' | 'Disconnected';
  authentication: { type: 'sas'; symmetricKey: { primaryKey: string; secondaryKey: string } };
  cloudToDeviceMessageCount: number;
}

export interface ModuleIdentity {
  deviceId: string;
  moduleId: string;
  generationId: string;
  etag: string;
  managedBy?: string;
  connectionState: 'Connected' | 'Disconnected';
  authentication: { type: 'sas'; symmetricKey: { primaryKey: string; secondaryKey: string } };
}

export type JsonObject = { [k: string]: unknown };

export interface TwinDocument {
  deviceId: string;
  moduleId?: string;
  etag: string;
  version: number;
  status: string;
  tags: JsonObject;
  properties: { desired: JsonObject & { $version: number }; reported: JsonObject & { $version: number } };
}

/** Why a patch is refused: IoT Hub's documented twin limits (keys, depth, size). */
export class TwinPatchError extends Error {}

/** Modules per device on the standard tier. */
export const MAX_MODULES_PER_DEVICE = 50;

/** The key of an identity (and its twin): `deviceId` or `deviceId/moduleId`. */
export function identityKey(deviceId: string, moduleId?: string): string {
  return moduleId ? `${deviceId}/${moduleId}` : deviceId;
}

type Auth = { symmetricKey?: { primaryKey?: string; secondaryKey?: string } } | undefined;

function symmetricKey(auth: Auth) {
  return {
    primaryKey: auth?.symmetricKey?.primaryKey || newKey(),
    secondaryKey: auth?.symmetricKey?.secondaryKey || newKey(),
  };
}

function newTwin(deviceId: string, moduleId?: string, tags: JsonObject = {}): TwinDocument {
  return {
    deviceId,
    ...(moduleId ? { moduleId } : {}),
    etag: etag(),
    version: 1,
    status: 'enabled',
    tags,
    properties: { desired: { $version: 1 }, reported: { $version: 1 } },
  };
}

const MAX_DEPTH = 10;
const MAX_REPORTED_BYTES = 32 * 1024;
const MAX_TAGS_BYTES = 8 * 1024;
const BAD_KEY = /[.$ \u0000-\u001f\u007f-\u009f]/;

function newKey(): string {
  return randomBytes(32).toString('base64');
}

function etag(): string {
  return Buffer.from(randomUUID()).toString('base64').slice(0, 12);
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Merges `patch` into `target` in place: objects merge, `null` deletes, anything else replaces. */
export function mergePatch(target: JsonObject, patch: JsonObject): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete target[key];
    else if (isObject(value)) {
      const current = isObject(target[key]) ? (target[key] as JsonObject) : {};
      mergePatch(current, value);
      target[key] = current;
    } else target[key] = value;
  }
}

function checkPatch(patch: unknown, depth = 1): void {
  if (!isObject(patch)) throw new TwinPatchError('patch must be a JSON object');
  if (depth > MAX_DEPTH) throw new TwinPatchError('nesting deeper than 10 levels');
  for (const [key, value] of Object.entries(patch)) {
    if (BAD_KEY.test(key) || Buffer.byteLength(key) > 1024) throw new TwinPatchError(`invalid property name`);
    if (isObject(value)) checkPatch(value, depth + 1);
  }
}

function sectionBytes(section: JsonObject): number {
  const copy = { ...section };
  delete copy.$version;
  return Buffer.byteLength(JSON.stringify(copy));
}

export class HubRegistry {
  readonly devices = new Map<string, DeviceIdentity>();
  /** Module identities by `deviceId/moduleId`. */
  readonly modules = new Map<string, ModuleIdentity>();
  /** Twins by identity key. */
  readonly twins = new Map<string, TwinDocument>();

  /** Creates a device (and its twin, with optional tags); keys left empty are generated, as the hub does. */
  create(deviceId: string, auth?: Auth, tags?: JsonObject): DeviceIdentity {
    const device: DeviceIdentity = {
      deviceId,
      generationId: String(Date.now()),
      etag: etag(),
      status: 'enabled',
      connectionState: 'Disconnected',
      authentication: { type: 'sas', symmetricKey: symmetricKey(auth) },
      cloudToDeviceMessageCount: 0,
    };
    this.devices.set(deviceId, device);
    this.twins.set(deviceId, newTwin(deviceId, undefined, tags ? structuredClone(tags) : {}));
    return device;
  }

  /** Modules of one device. */
  modulesOf(deviceId: string): ModuleIdentity[] {
    return [...this.modules.values()].filter((m) => m.deviceId === deviceId);
  }

  /** Creates a module identity and its twin (the caller checks that the device exists and the module does not). */
  createModule(deviceId: string, moduleId: string, auth?: Auth, managedBy?: string): ModuleIdentity {
    const module: ModuleIdentity = {
      deviceId,
      moduleId,
      generationId: String(Date.now()),
      etag: etag(),
      ...(managedBy ? { managedBy } : {}),
      connectionState: 'Disconnected',
      authentication: { type: 'sas', symmetricKey: symmetricKey(auth) },
    };
    this.modules.set(identityKey(deviceId, moduleId), module);
    this.twins.set(identityKey(deviceId, moduleId), newTwin(deviceId, moduleId));
    return module;
  }

  /** The keys a device or module authenticates with, or undefined when it does not exist. */
  keysOf(deviceId: string, moduleId?: string): string[] | undefined {
    const identity = moduleId ? this.modules.get(identityKey(deviceId, moduleId)) : this.devices.get(deviceId);
    if (!identity) return undefined;
    return [identity.authentication.symmetricKey.primaryKey, identity.authentication.symmetricKey.secondaryKey];
  }

  /** Applies a reported-properties patch as the device or module (by identity key); returns the new `$version`. */
  patchReported(key: string, patch: unknown): number {
    const twin = this.twins.get(key)!;
    checkPatch(patch);
    const next = structuredClone(twin.properties.reported);
    mergePatch(next, patch as JsonObject);
    if (sectionBytes(next) > MAX_REPORTED_BYTES) throw new TwinPatchError('reported properties exceed 32 KB');
    next.$version = twin.properties.reported.$version + 1;
    twin.properties.reported = next;
    this.bump(twin);
    return next.$version;
  }

  /** Applies a service-side twin patch (by identity key): tags and desired only (reported is ignored). */
  patchTwin(key: string, patch: unknown): TwinDocument {
    const twin = this.twins.get(key)!;
    if (!isObject(patch)) throw new TwinPatchError('patch must be a JSON object');
    if (patch.tags !== undefined) {
      checkPatch(patch.tags);
      const tags = structuredClone(twin.tags);
      mergePatch(tags, patch.tags as JsonObject);
      if (sectionBytes(tags) > MAX_TAGS_BYTES) throw new TwinPatchError('tags exceed 8 KB');
      twin.tags = tags;
    }
    const desired = isObject(patch.properties) ? patch.properties.desired : undefined;
    if (desired !== undefined) {
      checkPatch(desired);
      mergePatch(twin.properties.desired, desired as JsonObject);
      twin.properties.desired.$version++;
    }
    this.bump(twin);
    return twin;
  }

  private bump(twin: TwinDocument): void {
    twin.version++;
    twin.etag = etag();
  }
}
