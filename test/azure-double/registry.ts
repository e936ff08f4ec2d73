/**
 * The double's identity registry and twins, with IoT Hub's semantics: hub-generated keys when none are given,
 * etags, a twin per device with `version`, per-section `$version`, and JSON-merge patches where `null` deletes.
 */
import { randomBytes, randomUUID } from 'node:crypto';

export interface DeviceIdentity {
  deviceId: string;
  generationId: string;
  etag: string;
  status: 'enabled' | 'disabled';
  connectionState: 'Connected' | 'Disconnected';
  authentication: { type: 'sas'; symmetricKey: { primaryKey: string; secondaryKey: string } };
  cloudToDeviceMessageCount: number;
}

export type JsonObject = { [k: string]: unknown };

export interface TwinDocument {
  deviceId: string;
  etag: string;
  version: number;
  status: string;
  tags: JsonObject;
  properties: { desired: JsonObject & { $version: number }; reported: JsonObject & { $version: number } };
}

/** Why a patch is refused: IoT Hub's documented twin limits (keys, depth, size). */
export class TwinPatchError extends Error {}

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
  readonly twins = new Map<string, TwinDocument>();

  /** Creates a device; keys left empty are generated, as the hub does. */
  create(deviceId: string, auth?: { symmetricKey?: { primaryKey?: string; secondaryKey?: string } }): DeviceIdentity {
    const device: DeviceIdentity = {
      deviceId,
      generationId: String(Date.now()),
      etag: etag(),
      status: 'enabled',
      connectionState: 'Disconnected',
      authentication: {
        type: 'sas',
        symmetricKey: {
          primaryKey: auth?.symmetricKey?.primaryKey || newKey(),
          secondaryKey: auth?.symmetricKey?.secondaryKey || newKey(),
        },
      },
      cloudToDeviceMessageCount: 0,
    };
    this.devices.set(deviceId, device);
    this.twins.set(deviceId, {
      deviceId,
      etag: etag(),
      version: 1,
      status: 'enabled',
      tags: {},
      properties: { desired: { $version: 1 }, reported: { $version: 1 } },
    });
    return device;
  }

  /** Applies a reported-properties patch as the device; returns the new reported `$version`. */
  patchReported(deviceId: string, patch: unknown): number {
    const twin = this.twins.get(deviceId)!;
    checkPatch(patch);
    const next = structuredClone(twin.properties.reported);
    mergePatch(next, patch as JsonObject);
    if (sectionBytes(next) > MAX_REPORTED_BYTES) throw new TwinPatchError('reported properties exceed 32 KB');
    next.$version = twin.properties.reported.$version + 1;
    twin.properties.reported = next;
    this.bump(twin);
    return next.$version;
  }

  /** Applies a service-side twin patch: tags and desired only (reported in a service patch is ignored). */
  patchTwin(deviceId: string, patch: unknown): TwinDocument {
    const twin = this.twins.get(deviceId)!;
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
