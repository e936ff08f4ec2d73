/** Sample SIM records and publish items shared by the target tests. */
import { applyPatch, type SimPatch, type SimRecord } from '../../record';
import { createLogger, type Logger } from '../../shared/log';
import type { PublishItem } from '../../targets/target';

let counter = 0;

/** A distinct, fully populated ICCID-like number per call. */
export function nextIccid(): string {
  counter++;
  return `8934${String(Date.now() % 1e9).padStart(9, '0')}${String(counter).padStart(6, '0')}`;
}

export function sampleRecord(iccid = nextIccid(), overrides: Partial<SimRecord> = {}): SimRecord {
  return {
    iccid,
    alias: `Truck ${iccid.slice(-4)}`,
    imei: '356938035643809',
    commsModModel: 'BG96',
    commsModManufacturer: 'Quectel',
    lifeCycleStatus: 'ACTIVE',
    activationDate: 1700000000000,
    country: 'ES',
    operator: 'Movistar',
    apn: 'kite.m2m',
    ip: '10.1.2.3',
    presenceLevel: 'IP reachability',
    event: 'ACCOUNTING_RADIUS_START',
    timestamp: 1760000000000,
    Latitude: 40.4168,
    Longitude: -3.7038,
    dailyVoice: 0,
    dailySMS: 3,
    dailyData: 1234.5,
    ...overrides,
  };
}

/** A first publish: the whole record. */
export function fullItem(record: SimRecord, deviceId = record.iccid): PublishItem {
  return { iccid: record.iccid, deviceId, patch: { ...record }, full: true, state: { ...record } };
}

/** A later publish: only the changed keys, on top of `before` (a sample record of the SIM by default). */
export function patchItem(iccid: string, patch: SimPatch, deviceId = iccid, before = sampleRecord(iccid)): PublishItem {
  return { iccid, deviceId, patch, full: false, state: applyPatch(before, patch) };
}

/** The record after applying a patch the way both clouds do: merge, `null` deletes. */
export function merged(record: SimRecord, patch: SimPatch): Record<string, unknown> {
  const out: Record<string, unknown> = { ...record };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** A logger that keeps its lines in `lines` instead of writing to stderr. */
export function quietLogger(lines: string[] = []): Logger {
  return createLogger({}, { level: 'debug', write: (line) => lines.push(line) });
}
