/**
 * Kite REST JSON shapes, as far as the connector reads them (Inventory v{n}/r12, names as in the UNICA XSD).
 * Everything is optional and loosely typed on purpose: the JSON comes from outside, and `mapSim` checks every
 * value it uses. Kite sends some numbers as strings, hence `number | string`.
 */

/** `gprsStatus` / `ipStatus`: status is an int 0..9 (1 = connected, 2 = disconnected; the rest undocumented). */
export interface KiteConnStatus {
  status?: number | string;
  lastConnStart?: string;
  lastConnStop?: string;
}

/** One of `consumptionDaily.{voice,sms,data}`: voice in seconds, SMS as a count, data in bytes. */
export interface KiteConsumption {
  limit?: number | string;
  value?: number | string;
  thrReached?: boolean | string;
  enabled?: boolean | string;
  trafficCut?: boolean | string;
}

export interface KiteCoordinates {
  latitude?: number | string;
  longitude?: number | string;
}

export interface KiteLocation {
  coordinates?: KiteCoordinates;
  timestamp?: string;
}

/** One item of `subscriptionData[]` (XSD `SubscriptionInfoType`). Only the fields the connector or the simulator use are named. */
export interface KiteSim {
  subscriptionId?: string;
  icc?: string;
  imsi?: string;
  msisdn?: string;
  alias?: string;
  customField1?: string;
  customField2?: string;
  customField3?: string;
  customField4?: string;
  imei?: string;
  gprsStatus?: KiteConnStatus;
  ipStatus?: KiteConnStatus;
  apn?: string;
  ip?: string;
  operator?: string;
  country?: string;
  consumptionDaily?: { voice?: KiteConsumption; sms?: KiteConsumption; data?: KiteConsumption };
  consumptionMonthly?: { voice?: KiteConsumption; sms?: KiteConsumption; data?: KiteConsumption };
  activationDate?: string;
  lifeCycleStatus?: string;
  supervisionGroup?: string;
  commercialGroup?: string;
  automaticLocation?: KiteLocation;
  manualLocation?: KiteLocation;
  commModuleManufacturer?: string;
  commModuleModel?: string;
  [field: string]: unknown;
}

/** `presenceDetailData` of `GET .../sim/icc:{icc}/presence` (XSD `PresenceDetailType`; `ip`/`apn` only while connected). */
export interface KitePresence {
  level?: string;
  /** ISO-8601; note the capital S. */
  timeStamp?: string;
  cause?: string;
  ip?: string;
  apn?: string;
  ratType?: number | string;
  [field: string]: unknown;
}

/** Kite's life-cycle states, API spelling (`ACTIVATION_PENDANT` sic). */
export const LIFE_CYCLE_STATES = [
  'INACTIVE_NEW',
  'TEST',
  'ACTIVATION_PENDANT',
  'ACTIVATION_READY',
  'ACTIVE',
  'DEACTIVATED',
  'SUSPENDED',
  'RETIRED',
  'RESTORE',
] as const;
export type LifeCycleState = (typeof LIFE_CYCLE_STATES)[number];

/** How the connector decides that a SIM belongs to a monitoring group. */
export type GroupFilter =
  /** Membership is the SIM's `supervisionGroup` field; the list is the whole inventory (Kite has no group filter). */
  | { type: 'supervisionGroup' }
  /** Membership is a Kite search: these query parameters are sent with every list request (e.g. `customField_1`). */
  | { type: 'search'; params: Record<string, string> };
