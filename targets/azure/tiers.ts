/**
 * IoT Hub's documented per-hub limits by tier and unit count (learn.microsoft.com, "IoT Hub quotas and
 * throttling", standard-tier operations table, and the pricing page's daily message allowance). One table, read
 * by the connector's default budgets and by the test double's throttles, so that both follow the same source.
 * Basic tiers (B1–B3) have no device twins at all, so they are not listed: the connector cannot publish there.
 */

/** Tiers with device twins. */
export const HUB_TIERS = ['F1', 'S1', 'S2', 'S3'] as const;
export type HubTier = (typeof HUB_TIERS)[number];

export interface HubLimits {
  /** Identity registry operations (create, get, list, update, delete; a bulk call counts each device) per minute. */
  identityOpsPerMinute: number;
  /** New device (or module) connections per second. */
  newConnectionsPerSecond: number;
  /** Twin updates per second (device-side reported patches and service-side tag/desired patches). */
  twinUpdatesPerSecond: number;
  /** Twin reads per second (device-side GET and service-side GET). */
  twinReadsPerSecond: number;
  /** Billed messages per UTC day. */
  dailyMessages: number;
  /** The chunk a billed message is counted in: each operation costs ceil(bytes / chunk), at least 1. */
  messageChunkBytes: number;
}

/** Units a tier may be provisioned with. */
export const MAX_UNITS: Record<HubTier, number> = { F1: 1, S1: 200, S2: 200, S3: 10 };

/** The documented limits of a hub of `tier` with `units` units (units must be 1..MAX_UNITS[tier]). */
export function hubLimits(tier: HubTier, units = 1): HubLimits {
  switch (tier) {
    case 'F1':
      return {
        identityOpsPerMinute: 100,
        newConnectionsPerSecond: 100,
        twinUpdatesPerSecond: 50,
        twinReadsPerSecond: 100,
        dailyMessages: 8_000,
        messageChunkBytes: 512,
      };
    case 'S1':
      return {
        identityOpsPerMinute: 100 * units,
        newConnectionsPerSecond: Math.max(100, 12 * units),
        twinUpdatesPerSecond: 50,
        twinReadsPerSecond: 100,
        dailyMessages: 400_000 * units,
        messageChunkBytes: 4096,
      };
    case 'S2':
      return {
        identityOpsPerMinute: 100 * units,
        newConnectionsPerSecond: 120 * units,
        twinUpdatesPerSecond: Math.max(50, 5 * units),
        twinReadsPerSecond: Math.max(100, 10 * units),
        dailyMessages: 6_000_000 * units,
        messageChunkBytes: 4096,
      };
    case 'S3':
      return {
        identityOpsPerMinute: 5_000 * units,
        newConnectionsPerSecond: 6_000 * units,
        twinUpdatesPerSecond: 250 * units,
        twinReadsPerSecond: 500 * units,
        dailyMessages: 300_000_000 * units,
        messageChunkBytes: 4096,
      };
  }
}

/** Billed messages for one operation carrying `bytes`: ceil(bytes / chunk), at least 1. */
export function billedMessages(bytes: number, chunkBytes: number): number {
  return Math.max(1, Math.ceil(bytes / chunkBytes));
}

/** The next 00:00 UTC after `nowMs`, when the daily message quota resets. */
export function nextUtcMidnight(nowMs: number): number {
  const d = new Date(nowMs);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
}

/** The UTC day of `nowMs` as `YYYY-MM-DD` (the quota's period). */
export function utcDay(nowMs: number): string {
  return new Date(nowMs).toISOString().slice(0, 10);
}

/**
 * IoT Hub device and module ids: 1–128 ASCII letters, digits and `- : . + % _ # * ? ! ( ) , = @ ; $ '`
 * (identity registry documentation). Anything else is refused by the hub.
 */
export const IDENTITY_ID = /^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$/;
