/**
 * Realistic value tables for the simulator. Operator names, MCC/MNC and ICCID issuer prefixes are those of real
 * networks; the module TACs are plausible 8-digit prefixes (the HUAWEI one is the seed example's), not a registry
 * extract. Presence causes beyond ACCOUNTING_RADIUS_START and UNKNOWN_SUBSCRIBER are assumptions.
 */

/** A SIM's home network: decides the ICCID prefix (89 + country code + issuer), the IMSI and the MSISDN. */
export interface HomeNetwork {
  iccPrefix: string;
  mcc: string;
  mnc: string;
  msisdnPrefix: string;
  apns: readonly string[];
}

export const HOME_NETWORKS: readonly HomeNetwork[] = [
  { iccPrefix: '893407', mcc: '214', mnc: '07', msisdnPrefix: '346', apns: ['sm2ms.movilforum.es', 'movistar.es'] },
  { iccPrefix: '895203', mcc: '334', mnc: '030', msisdnPrefix: '5255', apns: ['mconnect.pre.telefonica.com'] },
  { iccPrefix: '894922', mcc: '262', mnc: '07', msisdnPrefix: '49176', apns: ['m2m.telefonica.de'] },
  { iccPrefix: '895511', mcc: '724', mnc: '11', msisdnPrefix: '5511', apns: ['smart.m2m.vivo.com.br'] },
  { iccPrefix: '894410', mcc: '234', mnc: '10', msisdnPrefix: '447', apns: ['telefonica.m2m', 'mobile.o2.co.uk'] },
  { iccPrefix: '895407', mcc: '722', mnc: '070', msisdnPrefix: '5411', apns: ['m2m.movistar.com.ar'] },
];

/** A network the SIM is attached to: the SIM's `operator` and `country` fields, and where it sits on the map. */
export interface VisitedNetwork {
  operator: string;
  country: string;
  /** Cities [latitude, longitude] the SIMs on this network are spread around. */
  cities: ReadonlyArray<readonly [number, number]>;
}

export const VISITED_NETWORKS: readonly VisitedNetwork[] = [
  {
    operator: 'Telefonica Moviles España',
    country: 'ES',
    cities: [
      [40.4168, -3.7038],
      [41.3874, 2.1686],
      [42.6217, -7.767138],
      [37.3891, -5.9845],
    ],
  },
  {
    operator: 'Telefonica Germany GmbH & Co. OHG',
    country: 'DE',
    cities: [
      [52.52, 13.405],
      [48.1351, 11.582],
    ],
  },
  { operator: 'Telefonica UK Limited', country: 'GB', cities: [[51.5072, -0.1276]] },
  {
    operator: 'Telefonica Brasil S.A.',
    country: 'BR',
    cities: [
      [-23.5505, -46.6333],
      [-22.9068, -43.1729],
    ],
  },
  { operator: 'Pegaso PCS S.A. de C.V.', country: 'MX', cities: [[19.4326, -99.1332]] },
  { operator: 'Telefonica Moviles Argentina S.A.', country: 'AR', cities: [[-34.6037, -58.3816]] },
  { operator: 'Telefonica Moviles Chile S.A.', country: 'CL', cities: [[-33.4489, -70.6693]] },
  { operator: 'Orange France', country: 'FR', cities: [[48.8566, 2.3522]] },
  { operator: 'Vodafone Italia S.p.A.', country: 'IT', cities: [[45.4642, 9.19]] },
];

export interface Module {
  manufacturer: string;
  model: string;
  /** Type Allocation Code: the IMEI's first 8 digits. */
  tac: string;
}

export const MODULES: readonly Module[] = [
  { manufacturer: 'HUAWEI Technologies Co Ltd', model: 'HUAWEI E3276s-150', tac: '86378101' },
  { manufacturer: 'Quectel Wireless Solutions Co Ltd', model: 'EC25-E', tac: '86769603' },
  { manufacturer: 'Quectel Wireless Solutions Co Ltd', model: 'BG96', tac: '86695803' },
  { manufacturer: 'Telit Communications S.p.A.', model: 'LE910C4-EU', tac: '35734709' },
  { manufacturer: 'Sierra Wireless Inc', model: 'HL7802', tac: '35923309' },
  { manufacturer: 'u-blox AG', model: 'SARA-R410M-02B', tac: '35290611' },
  { manufacturer: 'SIMCom Wireless Solutions Co Ltd', model: 'SIM7600E-H', tac: '86279504' },
  { manufacturer: 'Nordic Semiconductor ASA', model: 'nRF9160', tac: '35240411' },
];

export const SIM_MODELS = ['M2M Plug-in 2FF/3FF Industrial', 'M2M MFF2 Industrial', 'M2M Plug-in 2FF/3FF Standard'];
export const COMMERCIAL_GROUPS = ['M2M Global 10MB', 'M2M Global 100MB', 'IoT Europe 1GB', 'IoT LATAM 50MB'];
export const ALIAS_PREFIXES = ['meter', 'tracker', 'pump', 'gateway', 'vending', 'ev-charger', 'pos', 'alarm'];

/** Initial life-cycle mix of an inventory. */
export const LIFE_CYCLE_MIX: ReadonlyArray<readonly [string, number]> = [
  ['ACTIVE', 70],
  ['ACTIVATION_READY', 8],
  ['TEST', 5],
  ['INACTIVE_NEW', 5],
  ['DEACTIVATED', 5],
  ['SUSPENDED', 3],
  ['ACTIVATION_PENDANT', 2],
  ['RETIRED', 2],
];

/**
 * Kite's allowed life-cycle transitions (SIM life-cycle diagram). `ACTIVATION_READY → ACTIVE` happens on the
 * first data session, not at random.
 */
export const TRANSITIONS: Readonly<Record<string, readonly string[]>> = {
  INACTIVE_NEW: ['TEST', 'ACTIVATION_READY', 'ACTIVATION_PENDANT'],
  TEST: ['ACTIVATION_READY'],
  ACTIVATION_READY: [],
  ACTIVATION_PENDANT: ['ACTIVE'],
  ACTIVE: ['DEACTIVATED', 'SUSPENDED'],
  DEACTIVATED: ['ACTIVE', 'SUSPENDED'],
  SUSPENDED: ['ACTIVE', 'DEACTIVATED', 'RETIRED'],
  RETIRED: [],
  RESTORE: ['ACTIVE'],
};

/** States a customer may set through `PUT .../sim/icc:{icc}` (DEACTIVATED is unconfirmed but used by clients). */
export const SETTABLE_STATES = new Set([
  'INACTIVE_NEW',
  'TEST',
  'ACTIVATION_READY',
  'ACTIVATION_PENDANT',
  'ACTIVE',
  'DEACTIVATED',
]);

/** States in which a SIM may open data sessions and consume. */
export const TRAFFIC_STATES = new Set(['ACTIVE', 'TEST', 'ACTIVATION_READY']);

/** Presence levels (binding-specification glossary). */
export const LEVELS = ['unknown', 'GSM', 'GPRS', 'IP reachability'] as const;
/** Presence causes; the STOP and UPDATE_LOCATION names are assumptions. */
export const CAUSES = [
  'UNKNOWN_SUBSCRIBER',
  'UPDATE_LOCATION',
  'ACCOUNTING_RADIUS_START',
  'ACCOUNTING_RADIUS_STOP',
] as const;
/** 3GPP RAT types as Kite reports them: 1 = 3G, 2 = 2G, 6 = 4G, 8 = NB-IoT, 9 = LTE-M. */
export const RAT_TYPES = [1, 2, 6, 6, 6, 8, 9] as const;
