/**
 * The cloud identity of a SIM (Azure device id, AWS thing name, MQTT `{deviceId}`), from a template such as
 * `{iccid}` or `kite-{alias}`. Only stable identity fields may appear: an identity that changed with, say, the
 * IP address would create a new device on every change.
 */
import type { SimRecord } from '../record';

/** Record keys a device id template may use. */
export const DEVICE_ID_FIELDS = ['iccid', 'alias', 'imei'] as const;
export type DeviceIdField = (typeof DEVICE_ID_FIELDS)[number];

/** @default '{iccid}' */
export const DEFAULT_DEVICE_ID_TEMPLATE = '{iccid}';

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Thrown when a SIM lacks a field its template needs; the caller records the SIM as a permanent failure. */
export class DeviceIdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceIdError';
  }
}

/**
 * Checks a template; returns a problem description, or undefined when it is valid. Used by config validation,
 * so a bad template fails at startup rather than per SIM.
 */
export function deviceIdTemplateProblem(template: string): string | undefined {
  const names = [...template.matchAll(PLACEHOLDER)].map((m) => m[1]);
  if (names.length === 0) return `must contain at least one of ${DEVICE_ID_FIELDS.map((f) => `{${f}}`).join(', ')}`;
  const unknown = names.find((n) => !(DEVICE_ID_FIELDS as readonly string[]).includes(n));
  if (unknown !== undefined) return `unknown placeholder {${unknown}} (allowed: ${DEVICE_ID_FIELDS.join(', ')})`;
  if (/[{}]/.test(template.replace(PLACEHOLDER, ''))) return 'has an unbalanced { or }';
  return undefined;
}

/**
 * Resolves `template` for one SIM. Throws DeviceIdError when a field it uses is missing or empty, rather than
 * falling back to another field: a fallback would silently change the SIM's identity once the field appears.
 */
export function deviceIdFor(template: string, record: Pick<SimRecord, 'iccid'> & Partial<SimRecord>): string {
  return template.replace(PLACEHOLDER, (_, field: string) => {
    const value = (record as Record<string, unknown>)[field];
    if (!(DEVICE_ID_FIELDS as readonly string[]).includes(field)) {
      throw new DeviceIdError(`device id template uses {${field}}, which is not an identity field`);
    }
    if (typeof value !== 'string' || value === '') {
      throw new DeviceIdError(`SIM ${record.iccid} has no ${field}, which the device id template '${template}' needs`);
    }
    return value;
  });
}
