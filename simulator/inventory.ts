/**
 * The simulator's SIM inventory, built to hold 100,000 SIMs cheaply and page them fast:
 * - mutable state lives in typed arrays (struct of arrays), a few bytes per field and SIM;
 * - values that never change (IMSI, MSISDN, dates of provisioning...) are not stored: they are re-drawn from the
 *   SIM's own seeded stream when its JSON is rebuilt;
 * - each SIM's serialized JSON is cached as bytes and dropped when the SIM changes, so a page is a byte copy.
 * Fields set through the control API that the state model does not own (or with values of the wrong type, to
 * simulate broken SIMs) are kept as overrides on the JSON and stay pinned until `resetSim`.
 */
import { isIP } from 'node:net';
import { LIFE_CYCLE_STATES, type KitePresence, type KiteSim } from '../kite';
import {
  ALIAS_PREFIXES,
  CAUSES,
  COMMERCIAL_GROUPS,
  HOME_NETWORKS,
  LEVELS,
  LIFE_CYCLE_MIX,
  MODULES,
  RAT_TYPES,
  SIM_MODELS,
  TRAFFIC_STATES,
  VISITED_NETWORKS,
} from './catalog';
import { hash32, luhnDigit, Rng } from './random';

const DAY = 86_400_000;
const NONE = 255;
/** Presence level indexes into LEVELS: 0 unknown, 1 GSM, 2 GPRS, 3 IP reachability (2 and 3 = in a data session). */
export const IN_SESSION = 2;

export interface InventoryOptions {
  seed: number;
  groups: string[];
  simsPerGroup: number;
  ungroupedSims: number;
  /** Epoch ms of the simulated "now" at creation. */
  startTime: number;
  jsonCache: boolean;
}

/** Values of a SIM that never change, re-drawn on demand from the SIM's stream. */
export interface StaticSim {
  home: number;
  icc: string;
  imsi: string;
  msisdn: string;
  subscriptionId: string;
  provisionDate: number;
  shippingDate: number;
  simModel: string;
  commercialGroup: string;
  orderNumber: string;
  customField1: string;
  alias: string;
  dataLimit: number;
  smsLimit: number;
}

const p2 = (n: number) => (n < 10 ? `0${n}` : `${n}`);

/** ISO-8601 to the second with `Z`, as Kite writes dates; arithmetic (civil from days) is ~10x Date#toISOString. */
export function iso(ms: number): string {
  const days = Math.floor(ms / DAY);
  const secs = Math.floor((ms - days * DAY) / 1000);
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const time = `${p2(Math.floor(secs / 3600))}:${p2(Math.floor(secs / 60) % 60)}:${p2(secs % 60)}`;
  return `${year}-${p2(month)}-${p2(day)}T${time}Z`;
}
/** JSON string literal, non-ASCII escaped: an all-ASCII body decodes and parses markedly faster in the client. */
const HAS_NON_ASCII = /[\u0080-\uffff]/;
const NON_ASCII = /[\u0080-\uffff]/g;
const q = (s: string) => {
  const json = JSON.stringify(s);
  if (!HAS_NON_ASCII.test(json)) return json;
  return json.replace(NON_ASCII, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
};
export const ipToString = (n: number) => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
function ipToNumber(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0) >>> 0;
}

export class Inventory {
  readonly size: number;
  readonly groupNames: string[];
  now: number;
  /** Bumped on every change; keys caches that depend on the whole inventory. */
  version = 0;

  readonly icc: string[] = [];
  readonly alias: string[] = [];
  readonly imei: Array<string | undefined> = [];
  readonly apn: string[] = [];
  readonly group: Int16Array;
  readonly life: Uint8Array;
  readonly lastStateChange: Float64Array;
  readonly activation: Float64Array;
  readonly module: Uint8Array;
  readonly imeiChange: Float64Array;
  readonly visited: Uint8Array;
  readonly level: Uint8Array;
  readonly cause: Uint8Array;
  readonly rat: Uint8Array;
  readonly presenceTs: Float64Array;
  readonly connStart: Float64Array;
  readonly connStop: Float64Array;
  readonly ip: Uint32Array;
  readonly lat: Float64Array;
  readonly lon: Float64Array;
  readonly locTs: Float64Array;
  /** Daily and monthly consumption: voice seconds, SMS count, data bytes. */
  readonly daily: { voice: Float64Array; sms: Float64Array; data: Float64Array };
  readonly monthly: { voice: Float64Array; sms: Float64Array; data: Float64Array };

  readonly overrides = new Map<number, Record<string, unknown>>();
  readonly presenceOverrides = new Map<number, Record<string, unknown>>();
  private readonly index = new Map<string, number>();
  private readonly json: Array<Buffer | undefined>;

  constructor(private readonly options: InventoryOptions) {
    const n = (this.size = options.groups.length * options.simsPerGroup + options.ungroupedSims);
    this.groupNames = [...options.groups];
    this.now = options.startTime;
    this.group = new Int16Array(n);
    [this.life, this.module, this.visited, this.level, this.cause, this.rat] = Array.from(
      { length: 6 },
      () => new Uint8Array(n)
    );
    [this.lastStateChange, this.activation, this.imeiChange, this.presenceTs, this.connStart, this.connStop] =
      Array.from({ length: 6 }, () => new Float64Array(n));
    [this.lat, this.lon, this.locTs] = Array.from({ length: 3 }, () => new Float64Array(n));
    this.ip = new Uint32Array(n);
    const f64 = () => new Float64Array(n);
    this.daily = { voice: f64(), sms: f64(), data: f64() };
    this.monthly = { voice: f64(), sms: f64(), data: f64() };
    this.json = new Array<Buffer | undefined>(n);
    this.assignGroups();
    for (let i = 0; i < n; i++) this.init(i);
  }

  /** Spreads group members over the whole list (seeded shuffle), as in a real account's inventory order. */
  private assignGroups(): void {
    const { groups, simsPerGroup } = this.options;
    for (let i = 0; i < this.size; i++) this.group[i] = i < groups.length * simsPerGroup ? i % groups.length : -1;
    const rng = new Rng(hash32(this.options.seed, 0x67726f75));
    for (let i = this.size - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [this.group[i], this.group[j]] = [this.group[j], this.group[i]];
    }
  }

  indexOf(icc: string): number | undefined {
    return this.index.get(icc);
  }

  /** Marks a SIM changed: drops its cached JSON. */
  touch(i: number): void {
    this.json[i] = undefined;
    this.version++;
  }

  /** Draws the values of SIM `i` that never change; `rng` continues with the initial mutable state. */
  private drawStatic(i: number): { s: StaticSim; rng: Rng } {
    const rng = new Rng(hash32(this.options.seed, i));
    const home = rng.int(0, HOME_NETWORKS.length - 1);
    const net = HOME_NETWORKS[home];
    const iccBody = net.iccPrefix + rng.digits((rng.chance(0.5) ? 19 : 20) - 1 - net.iccPrefix.length);
    const icc = iccBody + luhnDigit(iccBody);
    const provisionDate = Math.floor((this.options.startTime - rng.int(60, 1500) * DAY) / 1000) * 1000;
    const aliasKind = rng.next();
    const s: StaticSim = {
      home,
      icc,
      imsi: net.mcc + net.mnc + rng.digits(15 - net.mcc.length - net.mnc.length),
      msisdn: net.msisdnPrefix + rng.digits(12 - net.msisdnPrefix.length),
      subscriptionId: String(rng.int(10_000_000, 99_999_999)),
      provisionDate,
      shippingDate: provisionDate + rng.int(1, 30) * DAY,
      simModel: rng.pick(SIM_MODELS),
      commercialGroup: rng.pick(COMMERCIAL_GROUPS),
      orderNumber: `OR-${new Date(provisionDate).getUTCFullYear()}-${rng.digits(6)}`,
      customField1: rng.chance(0.3) ? `dev-${rng.digits(6)}` : '',
      alias: aliasKind < 0.4 ? icc : aliasKind < 0.85 ? `${rng.pick(ALIAS_PREFIXES)}-${rng.digits(5)}` : '',
      dataLimit: rng.pick([0, 1_048_576, 10_485_760, 52_428_800]),
      smsLimit: rng.pick([0, 50, 100]),
    };
    return { s, rng };
  }

  staticOf(i: number): StaticSim {
    return this.drawStatic(i).s;
  }

  private init(i: number): void {
    const { s, rng } = this.drawStatic(i);
    const now = this.now;
    this.icc[i] = s.icc;
    this.index.set(s.icc, i);
    this.alias[i] = s.alias;
    this.apn[i] = rng.pick(HOME_NETWORKS[s.home].apns);
    const life = rng.weighted(LIFE_CYCLE_MIX);
    this.life[i] = LIFE_CYCLE_STATES.indexOf(life as never);
    const everActive = ['ACTIVE', 'DEACTIVATED', 'SUSPENDED', 'RETIRED'].includes(life);
    const activation = everActive || rng.chance(0.3) ? s.shippingDate + rng.int(1, 40) * DAY + rng.int(0, DAY) : NaN;
    this.activation[i] = activation < now ? Math.floor(activation / 1000) * 1000 : NaN;
    this.lastStateChange[i] = Math.floor(rng.int(s.shippingDate, now) / 1000) * 1000;
    this.initDevice(i, rng, s);
    this.initPresence(i, rng, s, life);
    this.initConsumption(i, rng, life);
  }

  private initDevice(i: number, rng: Rng, s: StaticSim): void {
    this.module[i] = rng.chance(0.9) ? rng.int(0, MODULES.length - 1) : NONE;
    this.imei[i] = this.module[i] === NONE ? undefined : newImei(rng, this.module[i]);
    this.imeiChange[i] = this.imei[i] ? Math.max(s.shippingDate, this.activation[i] || 0) : NaN;
  }

  private initPresence(i: number, rng: Rng, s: StaticSim, life: string): void {
    const attached = !['INACTIVE_NEW', 'RETIRED'].includes(life) && rng.chance(0.95);
    const home = HOME_NETWORKS[s.home];
    const local = VISITED_NETWORKS.findIndex((v) => home.msisdnPrefix.startsWith(dial(v.country)));
    this.visited[i] = !attached
      ? NONE
      : rng.chance(0.8) && local >= 0
        ? local
        : rng.int(0, VISITED_NETWORKS.length - 1);
    const level = !attached ? 0 : TRAFFIC_STATES.has(life) ? rng.weighted(LEVEL_MIX) : 1;
    this.level[i] = level;
    this.cause[i] = level === 0 ? 0 : level >= IN_SESSION ? 2 : 3;
    this.rat[i] = rng.pick(RAT_TYPES);
    const ts = Math.floor((this.now - rng.int(0, 3 * DAY)) / 1000) * 1000;
    this.presenceTs[i] = attached ? Math.max(ts, s.shippingDate) : s.provisionDate;
    const session = rng.int(60, 6 * 3600) * 1000;
    this.connStart[i] = !attached ? NaN : level >= IN_SESSION ? this.presenceTs[i] : this.presenceTs[i] - session;
    this.connStop[i] = !attached ? NaN : level >= IN_SESSION ? this.presenceTs[i] - session : this.presenceTs[i];
    this.ip[i] = level >= IN_SESSION ? newIp(rng) : 0;
    this.lat[i] = this.lon[i] = this.locTs[i] = NaN;
    if (attached && rng.chance(0.85)) this.placeNear(i, rng);
  }

  /** Puts the SIM near one of its visited network's cities. */
  placeNear(i: number, rng: Rng): void {
    const [lat, lon] = rng.pick(VISITED_NETWORKS[this.visited[i]].cities);
    this.lat[i] = round6(lat + (rng.next() - 0.5) * 0.1);
    this.lon[i] = round6(lon + (rng.next() - 0.5) * 0.1);
    this.locTs[i] = this.presenceTs[i];
  }

  private initConsumption(i: number, rng: Rng, life: string): void {
    if (!TRAFFIC_STATES.has(life) || this.visited[i] === NONE) return;
    const dayShare = (this.now % DAY) / DAY;
    const monthShare = (new Date(this.now).getUTCDate() - 1 + dayShare) / 30;
    const perDay = rng.int(0, 3_000_000);
    this.daily.data[i] = Math.round(perDay * dayShare);
    this.monthly.data[i] = Math.round(perDay * 30 * monthShare) + this.daily.data[i];
    this.daily.sms[i] = rng.chance(0.2) ? rng.int(1, 5) : 0;
    this.monthly.sms[i] = this.daily.sms[i] + rng.int(0, 40);
    this.daily.voice[i] = rng.chance(0.05) ? rng.int(10, 600) : 0;
    this.monthly.voice[i] = this.daily.voice[i] + (rng.chance(0.1) ? rng.int(0, 3000) : 0);
  }

  /**
   * The SIM's JSON as UTF-8 bytes (cached): a page is their copy, not a join, a length count and an encoding of
   * 1.6 MB of text per request, which cost the simulator about 3 ms of CPU per page on the bench's cores.
   */
  simBytes(i: number): Buffer {
    const cached = this.json[i];
    if (cached !== undefined) return cached;
    let text = this.buildJson(i);
    const patch = this.overrides.get(i);
    if (patch) text = JSON.stringify(applyPatch(JSON.parse(text), patch));
    const bytes = Buffer.from(text, 'utf8');
    if (this.options.jsonCache) this.json[i] = bytes;
    return bytes;
  }

  sim(i: number): KiteSim {
    return JSON.parse(this.simBytes(i).toString('utf8')) as KiteSim;
  }

  private buildJson(i: number): string {
    const s = this.staticOf(i);
    const life = LIFE_CYCLE_STATES[this.life[i]];
    const parts = [
      `{"subscriptionId":"${s.subscriptionId}","icc":"${this.icc[i]}","imsi":"${s.imsi}","msisdn":"${s.msisdn}"`,
      `,"alias":${q(this.alias[i])},"customField1":${q(s.customField1)},"customField2":"","customField3":""`,
      `,"customField4":"","simModel":"${s.simModel}","simType":"Plug-in"`,
      this.imei[i] ? `,"imei":"${this.imei[i]}"` : '',
      `,"gprsStatus":${this.connJson(i)},"ipStatus":${this.connJson(i)},"advancedSupervision":true`,
      `,"apn":${q(this.apn[i])}`,
      this.ip[i] ? `,"ip":"${ipToString(this.ip[i])}"` : '',
      this.networkJson(i),
      `,"consumptionDaily":${this.consumptionJson(this.daily, i, s, 1)}`,
      `,"consumptionMonthly":${this.consumptionJson(this.monthly, i, s, 30)}`,
      `,"provisionDate":"${iso(s.provisionDate)}","shippingDate":"${iso(s.shippingDate)}"`,
      Number.isNaN(this.activation[i]) ? '' : `,"activationDate":"${iso(this.activation[i])}"`,
      Number.isNaN(this.imeiChange[i]) ? '' : `,"IMEILastChange":"${iso(this.imeiChange[i])}"`,
      `,"lastStateChangeDate":"${iso(this.lastStateChange[i])}","commercialGroup":"${s.commercialGroup}"`,
      this.group[i] >= 0 ? `,"supervisionGroup":${q(this.groupNames[this.group[i]])}` : '',
      `,"orderNumber":"${s.orderNumber}","lifeCycleStatus":"${life}"`,
      Number.isNaN(this.lat[i]) ? '' : `,"automaticLocation":${this.locationJson(i)}`,
      this.moduleJson(i),
      `,"supplServices":{"vpn":false,"advancedSupervision":true,"location":${!Number.isNaN(this.lat[i])},"dca":false,"dim":false}}`,
    ];
    return parts.join('');
  }

  private connJson(i: number): string {
    if (Number.isNaN(this.connStart[i])) return '{"status":0}';
    const status = this.level[i] >= IN_SESSION ? 1 : 2;
    const stop = Number.isNaN(this.connStop[i]) ? '' : `,"lastConnStop":"${iso(this.connStop[i])}"`;
    return `{"status":${status},"lastConnStart":"${iso(this.connStart[i])}"${stop}}`;
  }

  private networkJson(i: number): string {
    if (this.visited[i] === NONE) return '';
    const v = VISITED_NETWORKS[this.visited[i]];
    return `,"operator":${q(v.operator)},"country":"${v.country}","ratType":${this.rat[i]}`;
  }

  private consumptionJson(c: Inventory['daily'], i: number, s: StaticSim, days: number): string {
    const item = (value: number, limit: number) =>
      `{"limit":"${limit}","value":"${value}","thrReached":${limit > 0 && value >= limit},"enabled":${limit > 0}}`;
    return `{"voice":${item(c.voice[i], 0)},"sms":${item(c.sms[i], s.smsLimit * days)},"data":${item(c.data[i], s.dataLimit * days)}}`;
  }

  private locationJson(i: number): string {
    return `{"coordinates":{"latitude":${this.lat[i]},"longitude":${this.lon[i]}},"timestamp":"${iso(this.locTs[i])}"}`;
  }

  private moduleJson(i: number): string {
    if (this.module[i] === NONE) return '';
    const m = MODULES[this.module[i]];
    return `,"commModuleManufacturer":${q(m.manufacturer)},"commModuleModel":${q(m.model)}`;
  }

  /** `presenceDetailData`: `ip`/`apn` only during a data session, as in Kite. */
  presence(i: number): KitePresence {
    const inSession = this.level[i] >= IN_SESSION;
    const p: KitePresence = {
      level: LEVELS[this.level[i]],
      timeStamp: iso(this.presenceTs[i]),
      cause: CAUSES[this.cause[i]],
      ...(inSession ? { ip: ipToString(this.ip[i]), apn: this.apn[i] } : {}),
      ...(this.visited[i] === NONE ? {} : { ratType: this.rat[i] }),
    };
    const patch = this.presenceOverrides.get(i);
    return patch ? (applyPatch(p, patch) as KitePresence) : p;
  }

  location(i: number): Record<string, unknown> {
    return Number.isNaN(this.lat[i]) ? {} : { automaticLocation: JSON.parse(this.locationJson(i)) };
  }

  /** Index of a group name, registering a new group on first use. */
  groupIndex(name: string): number {
    let g = this.groupNames.indexOf(name);
    if (g < 0) g = this.groupNames.push(name) - 1;
    return g;
  }

  /** Re-keys a SIM to a new ICC (control API); false when the ICC is malformed or taken. */
  rekey(i: number, icc: string): boolean {
    if (!/^\d{18,22}$/.test(icc) || this.index.has(icc)) return icc === this.icc[i];
    this.index.delete(this.icc[i]);
    this.icc[i] = icc;
    this.index.set(icc, i);
    return true;
  }

  setIp(i: number, ip: string | null): boolean {
    if (ip === null) this.ip[i] = 0;
    else if (isIP(ip) === 4) this.ip[i] = ipToNumber(ip);
    else return false;
    return true;
  }
}

const LEVEL_MIX: ReadonlyArray<readonly [number, number]> = [
  [0, 5],
  [1, 30],
  [2, 30],
  [3, 35],
];

function dial(country: string): string {
  return { ES: '34', MX: '52', DE: '49', BR: '55', GB: '44', AR: '54' }[country] ?? '-';
}

export function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** An IMEI of the module's TAC: 8 + 6 serial digits + Luhn. */
export function newImei(rng: Rng, module: number): string {
  const body = MODULES[module].tac + rng.digits(6);
  return body + luhnDigit(body);
}

/** A private session address (10/8 or 172.16/12), as Kite's APNs hand out. */
export function newIp(rng: Rng): number {
  return rng.chance(0.5)
    ? ((10 << 24) | (rng.int(0, 255) << 16) | (rng.int(0, 255) << 8) | rng.int(1, 254)) >>> 0
    : ((172 << 24) | (rng.int(16, 31) << 16) | (rng.int(0, 255) << 8) | rng.int(1, 254)) >>> 0;
}

/** Top-level merge: a `null` value removes the key. */
function applyPatch<T extends object>(target: T, patch: Record<string, unknown>): T {
  const out = target as Record<string, unknown>;
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return target;
}
