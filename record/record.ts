/**
 * The published record: exactly these 19 keys, as on the Kite Cloud Connector product page.
 * Key order is the contract's order; `Latitude`/`Longitude` keep their capital L.
 */
export const RECORD_KEYS = [
  'iccid',
  'alias',
  'imei',
  'commsModModel',
  'commsModManufacturer',
  'lifeCycleStatus',
  'activationDate',
  'country',
  'operator',
  'apn',
  'ip',
  'presenceLevel',
  'event',
  'timestamp',
  'Latitude',
  'Longitude',
  'dailyVoice',
  'dailySMS',
  'dailyData',
] as const;

export type RecordKey = (typeof RECORD_KEYS)[number];

/** One SIM as published. Absent source values are left out, never sent as null on first publish. */
export interface SimRecord {
  iccid: string;
  alias?: string;
  imei?: string;
  commsModModel?: string;
  commsModManufacturer?: string;
  lifeCycleStatus?: string;
  /** Epoch milliseconds. */
  activationDate?: number;
  country?: string;
  operator?: string;
  apn?: string;
  ip?: string;
  presenceLevel?: string;
  event?: string;
  /** Epoch milliseconds of the presence event. */
  timestamp?: number;
  Latitude?: number;
  Longitude?: number;
  /** Seconds. */
  dailyVoice?: number;
  /** Count. */
  dailySMS?: number;
  /** kB: Kite's bytes / 1024, see kite/mapping.ts for the rounding. */
  dailyData?: number;
}

/** What a target receives for one SIM: changed keys only, `null` for a key that disappeared. */
export type SimPatch = { [K in RecordKey]?: SimRecord[K] | null };
