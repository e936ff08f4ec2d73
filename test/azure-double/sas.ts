/**
 * SAS verification as IoT Hub does it: `SharedAccessSignature sr=<resource>&sig=<url-encoded base64
 * HMAC-SHA256(base64-decoded key, sr + "\n" + se)>&se=<unix seconds>[&skn=<policy>]`. The string to sign uses
 * `sr` exactly as it appears in the token (the SDKs URL-encode device resources, not a bare host name).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface ParsedSas {
  sr: string;
  sig: string;
  se: number;
  skn?: string;
}

export function parseSas(token: string): ParsedSas | undefined {
  const match = /^SharedAccessSignature (.+)$/.exec(token.trim());
  if (!match) return undefined;
  const fields = new Map<string, string>();
  for (const pair of match[1].split('&')) {
    const eq = pair.indexOf('=');
    if (eq > 0) fields.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const sr = fields.get('sr');
  const sig = fields.get('sig');
  const se = Number(fields.get('se'));
  if (!sr || !sig || !Number.isFinite(se)) return undefined;
  return { sr, sig, se, skn: fields.get('skn') };
}

export function sign(key: string, sr: string, se: number): string {
  return createHmac('sha256', Buffer.from(key, 'base64')).update(`${sr}\n${se}`).digest('base64');
}

/** True when the token is unexpired, for `resource` (case-insensitive), and signed with one of `keys`. */
export function verifySas(sas: ParsedSas, resource: string, keys: string[], nowMs = Date.now()): boolean {
  return verifySasCovering(sas, [resource], keys, nowMs);
}

/**
 * True when the token is unexpired, its `sr` is one of `resources` (case-insensitive), and it is signed with one
 * of `keys`. A policy token for a device may be scoped to the hub, the device, or (for a module) the module.
 */
export function verifySasCovering(sas: ParsedSas, resources: string[], keys: string[], nowMs = Date.now()): boolean {
  if (sas.se * 1000 <= nowMs) return false;
  const sr = safeDecode(sas.sr).toLowerCase();
  if (!resources.some((r) => r.toLowerCase() === sr)) return false;
  const given = Buffer.from(safeDecode(sas.sig));
  return keys.some((key) => {
    const expected = Buffer.from(sign(key, sas.sr, sas.se));
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
}

/** The permissions a shared access policy can grant (IoT Hub's access control). */
export const PERMISSIONS = ['RegistryRead', 'RegistryReadWrite', 'ServiceConnect', 'DeviceConnect'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** A hub-level shared access policy. */
export interface AccessPolicy {
  name: string;
  key: string;
  permissions: ReadonlySet<Permission>;
}

/** The policies a new IoT hub has, with their permissions. */
export const DEFAULT_POLICIES: Record<string, Permission[]> = {
  iothubowner: ['RegistryRead', 'RegistryReadWrite', 'ServiceConnect', 'DeviceConnect'],
  service: ['ServiceConnect'],
  device: ['DeviceConnect'],
  registryRead: ['RegistryRead'],
  registryReadWrite: ['RegistryRead', 'RegistryReadWrite'],
};

/** True when the policy grants `needed` (RegistryReadWrite includes RegistryRead). */
export function grants(policy: AccessPolicy, needed: Permission): boolean {
  if (policy.permissions.has(needed)) return true;
  return needed === 'RegistryRead' && policy.permissions.has('RegistryReadWrite');
}

/** A SAS token as the SDKs build it: `sr` and `sig` URL-encoded. */
export function makeSas(
  resource: string,
  key: string,
  ttlSeconds = 3600,
  keyName?: string,
  nowMs = Date.now()
): string {
  const se = Math.floor(nowMs / 1000) + ttlSeconds;
  const sr = encodeURIComponent(resource);
  const sig = encodeURIComponent(sign(key, sr, se));
  return `SharedAccessSignature sr=${sr}&sig=${sig}&se=${se}${keyName ? `&skn=${keyName}` : ''}`;
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
