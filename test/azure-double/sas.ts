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
  if (sas.se * 1000 <= nowMs) return false;
  if (safeDecode(sas.sr).toLowerCase() !== resource.toLowerCase()) return false;
  const given = Buffer.from(safeDecode(sas.sig));
  return keys.some((key) => {
    const expected = Buffer.from(sign(key, sas.sr, sas.se));
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
