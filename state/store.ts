/**
 * The connector's state in Redis, one server or a Cluster. Every key of a group carries the group as a hash tag,
 * `cc:{<group>}:…`, so one group's keys share a Redis Cluster slot: each Lua script, multi-key DEL/UNLINK and
 * pipeline below touches the keys of one group only, and must stay so (test/state/store.test.ts runs on a Cluster).
 *
 *   snap:<cycle>      HASH iccid → canonical record JSON          the cycle's staged snapshot (TTL), from its fetch
 *                          or KEPT                                 until its publish begins (dropSnapshot)
 *   changed:<cycle>   SET iccid                                   the SIMs the cycle's snapshot holds a record for
 *                                                                  (not KEPT), while the snapshot lives (TTL); read
 *                                                                  only when indexed:<cycle> says it is whole
 *   indexed:<cycle>   STRING 'conn' | 'records'                   the cycle's fetch staged every page with the
 *                                                                  index (TTL); 'conn': every staged SIM has conn
 *                                                                  (stagingIndexed). Absent after a fetch by a
 *                                                                  worker from before: the diff scans the snapshot
 *   invalid:<cycle>   HASH icc or #index → reason                 SIMs of the group that could not be mapped (TTL)
 *   conn              HASH iccid → {h: hints, p: presence,       connectivity hints and presence last fetched (t:
 *                                   t: read time, i: identity}     when, epoch s in base 36), and what identifies
 *                                   [+ RS gen]                     the SIM besides its ICC; a SIM settled (see
 *                                                                  `settled`) has the character RS (0x1e) and
 *                                                                  meta's settledGen appended
 *   ids               HASH identity → iccid                       the last known ICC of each identity in conn: a
 *                                                                  SIM whose ICC Kite sends unusable keeps its place
 *   pub:<target>      HASH iccid → record, packed [+ RS ms]      what the target holds (last acknowledged): the
 *                                                                  values by position (state/record-format.ts); a
 *                                                                  value starting with `{` is canonical JSON (the
 *                                                                  form before, still read); then RS (0x1e) and
 *                                                                  when the SIM's daily counters last went out to
 *                                                                  the target (epoch ms), if they did
 *   pending:<target>  HASH iccid → canonical patch JSON           changes not yet acknowledged
 *   fail:<target>     HASH iccid → {reason, patch, at}            permanent failures, retried when the patch changes
 *   settled           HASH iccid → '1'                           the form before the mark in conn: SIMs every target
 *                                                                  holds exactly as staged, nothing held or in
 *                                                                  flight (the fetch skips them while their Kite
 *                                                                  entry, conn's r, is unchanged). Still read, never
 *                                                                  written; the next diff moves it into conn marks
 *   meta              HASH listed → SIMs in the last complete inventory listing (the paging ceiling),
 *                          settledGen → the generation of conn's settled marks (a resync of all SIMs bumps it),
 *                          fetchStart → {cycle, at, prev}: when the fetch of the last cycle (and the one before) began,
 *                          events → 1 once a diff with events on completed (later SIMs are joining the group)
 *   sent:<target>     HASH iccid → canonical patch JSON           handed to the target, not yet acknowledged: what
 *                                                                  the target holds for these keys is unknown
 *   counters:<target> HASH iccid → epoch ms                       when the SIM's daily counters last went out (the
 *                                                                  publish policy holds them in between), for SIMs
 *                                                                  the target does not hold yet: their commit moves
 *                                                                  it into pub (and so it moves what workers before
 *                                                                  kept here for every SIM, still read)
 *   audit             HASH iccid → lines, newest first             the SIM's audit trail: publishes and failures per
 *                                                                  target, at most N entries of at most D days; one
 *                                                                  compact JSON array a line (state/audit-format.ts)
 *   evbase            HASH iccid → EventBaseline JSON             what the event detection last saw of the SIM
 *                                                                  (record/events.ts), while the group has events on
 *   events:<target>   HASH iccid → JSON array of SimEvent         events not yet acknowledged by the target
 */
import type Redis from 'ioredis';
import { FailureType } from '../shared/failures';
import { groupNameError } from '../shared/group-name';
import { scanKeys, type RedisClient } from './redis';
import { InventorySweeps } from './sweeps';
import { packRecord, unpackRecordOrNull } from './record-format';
import {
  AUDIT_AT_LUA,
  AuditKind,
  compactPatch,
  entryHead,
  failureLine,
  heldEnd,
  heldLine,
  parseAuditLine,
  recordWhatHead,
  type AuditEntry,
} from './audit-format';

export type { AuditEntry } from './audit-format';

export interface StateStoreOptions {
  /** First segment of every key. @default 'cc' */
  prefix?: string;
  /** How long a cycle's staged snapshot lives if nobody drops it, in seconds. @default 86400 */
  stagingTtlSeconds?: number;
  /**
   * Audit trail: the newest entries kept per SIM (publishes and failures, all targets together); 0 keeps none.
   * Memory is bounded by the group's SIMs × this many entries (a SIM that leaves the group loses its trail).
   * @default 10
   */
  auditEntriesPerSim?: number;
  /** Audit trail: entries older than this many days are dropped. @default 7 */
  auditMaxAgeDays?: number;
}

export type Entry = [field: string, value: string];

/**
 * A snapshot's value for a settled SIM whose Kite entry did not change: it is in the group (not a leaver), and
 * every target already holds its record, so the diff passes it by (unless a target is new: see settledFor).
 */
export const KEPT = '=';

export interface CommitItem {
  iccid: string;
  /** The patch as sent: the commit only applies while `pending` still holds exactly this. */
  patch: string;
  /** The record the target now holds. */
  merged: string;
}

export interface FailureItem {
  iccid: string;
  patch: string;
  reason: string;
}

/** A SIM's permanent failure at a target, as recorded. */
export interface StoredFailure {
  reason: string;
  /** The patch that failed: the SIM is retried only when its patch differs. */
  patch: string;
  /** When it failed, epoch ms. */
  at: number;
}

/** What a target holds for some SIMs, in the order asked. */
export interface TargetLookup {
  /** The published record's canonical JSON, null when the target does not hold the SIM. */
  published: (string | null)[];
  /** The SIM's recorded permanent failure, undefined when none. */
  failures: (StoredFailure | undefined)[];
  /**
   * A patch handed to the target and never acknowledged (a crash, a stop, a disable or exhausted attempts came
   * in between): the target may hold its values or the ones before. Null when the SIM's state is certain.
   */
  uncertain: (string | null)[];
  /** When the SIM's daily counters last went out to the target (epoch ms), undefined when never or unknown. */
  countersSentAt: (number | undefined)[];
}

/** What the store holds about one SIM (`kite-cc sim`). JSON strings as stored, null where absent. */
export interface SimState {
  /**
   * The SIM's record in the newest snapshot that holds it. `unchanged`: that snapshot kept the SIM without mapping
   * it (its Kite entry did not change and every target held its record), so the record is the one the targets hold.
   */
  snapshot?: { cycle: number; record: string; unchanged?: true };
  /**
   * Why the newest fetch that saw the SIM could not map it (`bad-icc`, `bad-date:activationDate`, …), when that
   * fetch is newer than `snapshot`: its targets keep what they hold.
   */
  rejected?: { cycle: number; reason: string };
  targets: Record<
    string,
    {
      /** The record the target acknowledged last. */
      published: string | null;
      /** The patch waiting to be published. */
      pending: string | null;
      /** Its permanent failure, if the last publish was refused. */
      failure?: StoredFailure;
      /** A patch handed to the target and not yet acknowledged. */
      inFlight: string | null;
    }
  >;
  /** Newest first. */
  audit: AuditEntry[];
}

/** A group name that cannot be a Redis hash tag (braces, colons, wildcards, …). Not retryable. */
export class InvalidGroupNameError extends Error {
  override name = FailureType.InvalidGroupName;
}

/**
 * Lua: prepends ENTRY to the SIM's audit lines, keeping at most MAX entries none older than CUTOFF. Newest first,
 * so the first too old one ends the walk. With HELD and RECORD, a line ending in HELD (the entry of a full publish
 * stored as "what the target holds", audit-format.ts kind H) ends in RECORD instead: the target's record is about
 * to change, so the entry takes the record it stood for.
 */
const AUDIT_LUA = `${AUDIT_AT_LUA}
local function audit(key, iccid, entry, max, cutoff, held, record)
  if max <= 0 then return end
  local out = {entry}
  local old = redis.call('HGET', key, iccid)
  if old then
    for line in string.gmatch(old, '[^\\n]+') do
      if #out >= max then break end
      local at = audit_at(line)
      if not at or at < cutoff then break end
      if held and string.sub(line, -#held) == held then line = string.sub(line, 1, #line - #held) .. record end
      out[#out + 1] = line
    end
  end
  redis.call('HSET', key, iccid, table.concat(out, '\\n'))
end`;

/**
 * Lua: a stored value's appendix follows the character RS (0x1e), which JSON text never holds unescaped:
 * `unmarked` is the value without it, `appendix` the appendix alone (nil when none).
 */
const APPENDIX_LUA = `
local RS = '\\30'
local function unmarked(value)
  local at = string.find(value, RS, 1, true)
  if at then return string.sub(value, 1, at - 1) end
  return value
end
local function appendix(value)
  local at = string.find(value, RS, 1, true)
  if at then return string.sub(value, at + 1) end
  return nil
end`;

/**
 * Atomically, per SIM: if pending still holds the patch we sent, record the merged state (with when the SIM's
 * counters last went out, from the old value or, for a SIM new to the target, from counters:<target>), drop the
 * pending, the failure and the in-flight mark (the target's state is certain again), and add the publish to the
 * audit trail. A full publish of the whole record goes to the trail as "what the target holds" (kind H, no copy of
 * the record) until the target's record changes: then that entry takes the old record (kind R).
 * KEYS: pub, pending, fail, sent, audit, counters. ARGV: max entries, cutoff, the entry heads of a full publish, of
 * a full publish held (a complete line), and of a patch, the end of a held line, the head of a record entry's
 * what (kind R, the target), then per SIM: iccid, patch, merged (as pub stores it), the patch as the trail stores
 * it, and '1' when the patch is the merged record.
 */
const COMMIT_SCRIPT = `${AUDIT_LUA}
${APPENDIX_LUA}
local max, cutoff, fullHead, heldLine, patchHead = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local heldEnd, recordHead = ARGV[6], ARGV[7]
local n = 0
for i = 8, #ARGV, 5 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    local old = redis.call('HGET', KEYS[1], ARGV[i])
    local full = not old
    local countersAt = redis.call('HGET', KEYS[6], ARGV[i])
    if countersAt then redis.call('HDEL', KEYS[6], ARGV[i]) elseif old then countersAt = appendix(old) end
    redis.call('HSET', KEYS[1], ARGV[i], countersAt and (ARGV[i + 2] .. RS .. countersAt) or ARGV[i + 2])
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('HDEL', KEYS[4], ARGV[i])
    local entry
    if full and ARGV[i + 4] == '1' then entry = heldLine
    elseif full then entry = fullHead .. ARGV[i + 3] .. ']'
    else entry = patchHead .. ARGV[i + 3] .. ']' end
    if old then audit(KEYS[5], ARGV[i], entry, max, cutoff, heldEnd, recordHead .. unmarked(old) .. ']')
    else audit(KEYS[5], ARGV[i], entry, max, cutoff) end
    n = n + 1
  end
end
return n`;

/**
 * Records when the daily counters of SIMs (ARGV after the first) last went out: ARGV[1], epoch ms. On the SIM's pub
 * value when the target holds it, else in counters:<target> until its commit. KEYS: pub, counters.
 */
const COUNTERS_SENT_SCRIPT = `${APPENDIX_LUA}
local at = ARGV[1]
for i = 2, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value then
    redis.call('HSET', KEYS[1], ARGV[i], unmarked(value) .. RS .. at)
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], at)
  end
end
return 1`;

/**
 * Atomically, per SIM: if pending still holds the patch, move it to the failures with its reason. The target
 * refused it for good, so it did not apply it: the in-flight mark goes too. The failure goes to the audit trail.
 * KEYS: pending, fail, sent, audit. ARGV: max entries, cutoff, then (iccid, patch, failure JSON, audit entry).
 */
const FAIL_SCRIPT = `${AUDIT_LUA}
local max, cutoff = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV, 4 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
    redis.call('HDEL', KEYS[3], ARGV[i])
    audit(KEYS[4], ARGV[i], ARGV[i + 3], max, cutoff, nil, nil)
    n = n + 1
  end
end
return n`;

/**
 * Atomically, per batch: records each SIM's new event baseline (deleted when empty) and appends its events to
 * every target's queue. KEYS: evbase, then events:<target> per target. ARGV: (iccid, baseline JSON or '',
 * events as comma-joined JSON objects or '') per SIM.
 */
const QUEUE_EVENTS_SCRIPT = `
for i = 1, #ARGV, 3 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i]) else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  if ARGV[i + 2] ~= '' then
    for k = 2, #KEYS do
      local old = redis.call('HGET', KEYS[k], ARGV[i])
      if old then
        redis.call('HSET', KEYS[k], ARGV[i], string.sub(old, 1, -2) .. ',' .. ARGV[i + 2] .. ']')
      else
        redis.call('HSET', KEYS[k], ARGV[i], '[' .. ARGV[i + 2] .. ']')
      end
    end
  end
end
return 1`;

/**
 * Atomically, per SIM: drops the events the target acknowledged. If more were queued after them meanwhile, only
 * the acknowledged ones go. KEYS: events:<target>. ARGV: (iccid, the events JSON array as sent) per SIM.
 */
const COMMIT_EVENTS_SCRIPT = `
local n = 0
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local sent = ARGV[i + 1]
  if current == sent then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  elseif current and string.sub(current, 1, #sent - 1) .. ']' == sent and string.sub(current, #sent, #sent) == ',' then
    redis.call('HSET', KEYS[1], ARGV[i], '[' .. string.sub(current, #sent + 1))
    n = n + 1
  end
end
return n`;

/**
 * SIMs as one argument: their ICCs joined by ICC_SEPARATOR. A page's thousand kept SIMs as two thousand arguments
 * cost the worker more than the command itself (ioredis builds each command as one string, four pieces per
 * argument: about 0.1 s of a 100,000-SIM steady-state cycle, BENCHMARKS.md); the script below splits them again
 * inside Redis.
 */
const ICC_SEPARATOR = ',';

/** `iccids` packed for the script below; fails on an empty ICC or one holding the separator (usable ICCs are digits). */
function packIccs(iccids: string[]): string {
  const bad = iccids.find((i) => i === '' || i.includes(ICC_SEPARATOR));
  if (bad !== undefined) {
    throw new Error(`the state store cannot take the ICC ${JSON.stringify(bad)}: ICCs are non-empty and hold no '${ICC_SEPARATOR}'`); // prettier-ignore
  }
  return iccids.join(ICC_SEPARATOR);
}

/** Lua: the ICCs packed in ARGV[n] (packIccs), as a table. */
const UNPACK_LUA = `
local function unpack_iccs(packed)
  local out = {}
  for iccid in string.gmatch(packed, '[^${ICC_SEPARATOR}]+') do out[#out + 1] = iccid end
  return out
end`;

/**
 * Stages the SIMs packed in ARGV[1] as kept (ARGV[2], the KEPT marker), 2,000 to an HSET (within Lua's unpack
 * limit), and sets the TTL (ARGV[3]). KEYS: snapshot.
 */
const STAGE_KEPT_SCRIPT = `${UNPACK_LUA}
local fields = {}
for _, iccid in ipairs(unpack_iccs(ARGV[1])) do
  fields[#fields + 1] = iccid
  fields[#fields + 1] = ARGV[2]
  if #fields == 4000 then
    redis.call('HSET', KEYS[1], unpack(fields))
    fields = {}
  end
end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1`;

/**
 * Lua: a SIM is settled when its conn value ends with the mark of the current generation (RS, then meta's
 * settledGen), or, for state written before the marks, when the old `settled` hash holds it.
 */
const SETTLED_LUA = `${APPENDIX_LUA}
local function settled_mark(meta)
  return RS .. (redis.call('HGET', meta, 'settledGen') or '0')
end`;

/** Per SIM (ARGV), 1 when settled, else 0. KEYS: conn, settled (old form), meta. */
const SETTLED_SCRIPT = `${SETTLED_LUA}
local mark = settled_mark(KEYS[3])
local old = redis.call('EXISTS', KEYS[2]) == 1
local out = {}
for i = 1, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  local settled = value ~= nil and value ~= false and #value > #mark and string.sub(value, -#mark) == mark
  if not settled and old then settled = redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 end
  out[i] = settled and 1 or 0
end
return out`;

/**
 * Marks the first N SIMs of ARGV settled and the rest unsettled, in conn, and drops them from the old form's hash.
 * A SIM without conn stays unsettled (it goes the whole way next cycle). KEYS: conn, settled (old form), meta.
 * ARGV: N, then the SIMs.
 */
const MARK_SETTLED_SCRIPT = `${SETTLED_LUA}
local mark = settled_mark(KEYS[3])
local n = tonumber(ARGV[1])
local old = redis.call('EXISTS', KEYS[2]) == 1
for i = 2, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value then
    local plain = unmarked(value)
    local next = i <= n + 1 and plain .. mark or plain
    if next ~= value then redis.call('HSET', KEYS[1], ARGV[i], next) end
  end
  if old then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return 1`;

/**
 * Lua: forgets what the target holds for a SIM (pub at KEY): a held entry of its audit trail (at TRAIL), a line
 * ending in HELD, takes the record it stood for (RECORD .. record .. ']'). Returns 1 if the target held it.
 */
const FORGET_ONE_LUA = `${APPENDIX_LUA}
local function forget_one(key, trailKey, iccid, held, record)
  local value = redis.call('HGET', key, iccid)
  if not value then return 0 end
  local trail = redis.call('HGET', trailKey, iccid)
  if trail then
    local out, changed = {}, false
    for line in string.gmatch(trail, '[^\\n]+') do
      if string.sub(line, -#held) == held then
        line = string.sub(line, 1, #line - #held) .. record .. unmarked(value) .. ']'
        changed = true
      end
      out[#out + 1] = line
    end
    if changed then redis.call('HSET', trailKey, iccid, table.concat(out, '\\n')) end
  end
  redis.call('HDEL', key, iccid)
  return 1
end`;

/** Forgets what the target holds for SIMs (ARGV after the first two). KEYS: pub, audit. ARGV: held, record, SIMs. */
const FORGET_PUBLISHED_SCRIPT = `${FORGET_ONE_LUA}
local n = 0
for i = 3, #ARGV do n = n + forget_one(KEYS[1], KEYS[2], ARGV[i], ARGV[1], ARGV[2]) end
return n`;

/**
 * Forgets what the target holds for one HSCAN page of its SIMs, server-side (no values cross the wire). KEYS: pub,
 * audit. ARGV: held, record, cursor. Returns the next cursor and how many SIMs it forgot.
 */
const FORGET_PUBLISHED_PAGE_SCRIPT = `${FORGET_ONE_LUA}
local page = redis.call('HSCAN', KEYS[1], ARGV[3], 'COUNT', 500)
local n = 0
for i = 1, #page[2], 2 do n = n + forget_one(KEYS[1], KEYS[2], page[2][i], ARGV[1], ARGV[2]) end
return {page[1], n}`;

/**
 * One HSCAN page of the group's known SIMs (KEYS[1], conn) with COUNT ARGV[2] from cursor ARGV[1], checked inside
 * Redis: the SIMs present in neither the cycle's snapshot (KEYS[2]) nor its invalid SIMs (KEYS[3]). Returns
 * {next cursor, leavers...}: only ICCs that left cross the wire, never the conn values.
 */
const LEAVERS_PAGE_SCRIPT = `
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local out = {page[1]}
local fields = page[2]
for i = 1, #fields, 2 do
  local iccid = fields[i]
  if redis.call('HEXISTS', KEYS[2], iccid) == 0 and redis.call('HEXISTS', KEYS[3], iccid) == 0 then
    out[#out + 1] = iccid
  end
end
return out`;

/**
 * How many of the group's known SIMs (KEYS[1], conn) are in neither the cycle's snapshot (KEYS[2]) nor its invalid
 * SIMs (KEYS[3]), given that every SIM of the snapshot is in conn (the fetch recorded so): conn's size less the
 * snapshot's and less the invalid SIMs conn holds outside the snapshot. The invalid SIMs are few; conn is not read.
 */
const LEAVERS_COUNT_SCRIPT = `
local listed = redis.call('HLEN', KEYS[2])
local invalid = redis.call('HKEYS', KEYS[3])
for i = 1, #invalid do
  if redis.call('HEXISTS', KEYS[1], invalid[i]) == 1 and redis.call('HEXISTS', KEYS[2], invalid[i]) == 0 then
    listed = listed + 1
  end
end
return redis.call('HLEN', KEYS[1]) - listed`;

type ScriptedRedis = RedisClient & {
  ccSettled(conn: string, oldSettled: string, meta: string, ...iccids: string[]): Promise<number[]>;
  ccMarkSettled(
    conn: string,
    oldSettled: string,
    meta: string,
    settledCount: string,
    ...iccids: string[]
  ): Promise<number>;
  ccLeaversPage(conn: string, snapshot: string, invalid: string, cursor: string, count: string): Promise<string[]>;
  ccLeaversCount(conn: string, snapshot: string, invalid: string): Promise<number>;
  ccCommitAudited(
    pub: string,
    pending: string,
    fail: string,
    sent: string,
    audit: string,
    counters: string,
    ...args: string[]
  ): Promise<number>;
  ccForgetPublished(pub: string, audit: string, held: string, record: string, ...iccids: string[]): Promise<number>;
  ccForgetPublishedPage(
    pub: string,
    audit: string,
    held: string,
    record: string,
    cursor: string
  ): Promise<[string, number]>;
  ccFailAudited(pending: string, fail: string, sent: string, audit: string, ...args: string[]): Promise<number>;
  ccQueueEvents(numKeys: number, ...keysAndArgs: string[]): Promise<number>;
  ccCommitEvents(events: string, ...args: string[]): Promise<number>;
};

/**
 * Speaks in groups, cycles, targets and SIMs; the key layout above is private to it (persisted data: changing it
 * needs a migration). Every method checks the group name first, since the name becomes the keys' hash tag.
 */
export class StateStore {
  private readonly redis: ScriptedRedis;
  private readonly prefix: string;
  private readonly ttl: number;
  private readonly auditEntries: number;
  private readonly auditMaxAgeMs: number;
  /** Inventory sweeps shared by the groups of one Kite account (state/sweeps.ts), under the same prefix. */
  readonly sweeps: InventorySweeps;

  /** @param redis one server or a Cluster (`connectRedis` in state/redis.ts) */
  constructor(redis: RedisClient, options: StateStoreOptions = {}) {
    this.redis = redis as ScriptedRedis;
    this.prefix = options.prefix ?? 'cc';
    this.ttl = options.stagingTtlSeconds ?? 86_400;
    this.auditEntries = options.auditEntriesPerSim ?? 10;
    this.auditMaxAgeMs = (options.auditMaxAgeDays ?? 7) * 86_400_000;
    this.sweeps = new InventorySweeps(redis, { prefix: this.prefix, ttlSeconds: this.ttl });
    if (!this.redis.ccCommitAudited) {
      redis.defineCommand('ccCommitAudited', { numberOfKeys: 6, lua: COMMIT_SCRIPT });
      redis.defineCommand('ccCountersSent', { numberOfKeys: 2, lua: COUNTERS_SENT_SCRIPT });
      redis.defineCommand('ccForgetPublished', { numberOfKeys: 2, lua: FORGET_PUBLISHED_SCRIPT });
      redis.defineCommand('ccForgetPublishedPage', { numberOfKeys: 2, lua: FORGET_PUBLISHED_PAGE_SCRIPT });
      redis.defineCommand('ccFailAudited', { numberOfKeys: 4, lua: FAIL_SCRIPT });
      redis.defineCommand('ccLeaversPage', { numberOfKeys: 3, lua: LEAVERS_PAGE_SCRIPT });
      redis.defineCommand('ccLeaversCount', { numberOfKeys: 3, lua: LEAVERS_COUNT_SCRIPT });
      redis.defineCommand('ccSettled', { numberOfKeys: 3, lua: SETTLED_SCRIPT });
      redis.defineCommand('ccMarkSettled', { numberOfKeys: 3, lua: MARK_SETTLED_SCRIPT });
      redis.defineCommand('ccQueueEvents', { lua: QUEUE_EVENTS_SCRIPT }); // KEYS: 1 + one per target
      redis.defineCommand('ccCommitEvents', { numberOfKeys: 1, lua: COMMIT_EVENTS_SCRIPT });
      redis.defineCommand('ccStageKept', { numberOfKeys: 1, lua: STAGE_KEPT_SCRIPT });
    }
  }

  // --- fetch ---

  /**
   * The last known ICC of SIMs by what identifies them besides their ICC (`stagePage`'s `identities`), null for
   * identities never recorded.
   */
  async lastKnownIccs(group: string, identities: string[]): Promise<(string | null)[]> {
    return this.hmget(this.keys(group).identities, identities);
  }

  /** How many SIMs the group's last complete listing of Kite's inventory held; undefined before the first. */
  async lastListed(group: string): Promise<number | undefined> {
    const value = await this.redis.hget(this.keys(group).meta, 'listed');
    return value === null ? undefined : Number(value);
  }

  /** Records how many SIMs a complete listing of Kite's inventory held (the next listing's paging ceiling). */
  async recordListed(group: string, count: number): Promise<void> {
    await this.redis.hset(this.keys(group).meta, 'listed', String(count));
  }

  /**
   * Records that the group's fetch of `cycle` started at `now` (a retried attempt keeps the first start), and
   * returns when it started and when the fetch of the cycle before started (undefined for the group's first).
   */
  async fetchStarted(group: string, cycle: number, now: number): Promise<{ current: number; previous?: number }> {
    const meta = this.keys(group).meta;
    const stored = await this.redis.hget(meta, 'fetchStart');
    const last = stored ? (JSON.parse(stored) as { cycle: number; at: number; prev?: number }) : undefined;
    if (last?.cycle === cycle) return { current: last.at, previous: last.prev };
    await this.redis.hset(meta, 'fetchStart', JSON.stringify({ cycle, at: now, prev: last?.at }));
    return { current: now, previous: last?.at };
  }

  /**
   * Writes one fetched page of a group: records, connectivity, invalid SIMs, and `identities` (identity → iccid)
   * learnt or changed, dropping the identities in `droppedIdentities` (SIMs now identified otherwise). One round
   * trip.
   */
  async stagePage(
    group: string,
    cycle: number,
    page: {
      records: Entry[];
      connectivity: Entry[];
      invalid: Entry[];
      identities?: Entry[];
      droppedIdentities?: string[];
      /** Settled SIMs whose Kite entry did not change: staged as KEPT, neither mapped nor diffed. */
      kept?: string[];
      /** SIMs staged with a record: no longer settled until the diff finds every target holding it. */
      unsettled?: string[];
      /**
       * Kept SIMs whose `connectivity` value is rewritten (a presence refresh found it unchanged): still settled, so
       * their mark is set again after the write.
       */
      settledAgain?: string[];
    }
  ): Promise<void> {
    const keys = this.keys(group);
    // One transaction: a SIM's new entry hash (in conn) never lands without its settled mark going (a new conn
    // value has none).
    const pipeline = this.redis.multi() as unknown as ScriptedPipeline;
    const snapshot = keys.snapshot(cycle);
    const invalid = keys.invalid(cycle);
    if (page.unsettled?.length) {
      pipeline.ccMarkSettled(keys.connectivity, keys.settled, keys.meta, '0', ...page.unsettled);
    }
    if (page.kept?.length) pipeline.ccStageKept(snapshot, packIccs(page.kept), KEPT, String(this.ttl));
    if (page.records.length) {
      pipeline.hset(snapshot, ...page.records.flat()).expire(snapshot, this.ttl);
      const changed = keys.changed(cycle);
      pipeline.sadd(changed, ...page.records.map(([iccid]) => iccid)).expire(changed, this.ttl);
    }
    if (page.invalid.length) pipeline.hset(invalid, ...page.invalid.flat()).expire(invalid, this.ttl);
    if (page.connectivity.length) pipeline.hset(keys.connectivity, ...page.connectivity.flat());
    if (page.settledAgain?.length) {
      const again = page.settledAgain;
      pipeline.ccMarkSettled(keys.connectivity, keys.settled, keys.meta, String(again.length), ...again);
    }
    if (page.droppedIdentities?.length) pipeline.hdel(keys.identities, ...page.droppedIdentities);
    if (page.identities?.length) pipeline.hset(keys.identities, ...page.identities.flat());
    await execOrThrow(pipeline as unknown as ReturnType<Redis['pipeline']>);
  }

  /**
   * What the fetch needs of a page's members, in one round trip: each one's connectivity JSON last fetched
   * (`{r, t, h, …}`, activities/stored-connectivity.ts; null for a SIM never seen) and whether it is settled (as
   * `settledSims`). The settled mark is read off the connectivity value itself; only state from before the marks
   * (the old `settled` hash) costs a second round trip.
   */
  async memberStates(
    group: string,
    iccids: string[]
  ): Promise<{ connectivity: (string | null)[]; settled: boolean[] }> {
    if (!iccids.length) return { connectivity: [], settled: [] };
    const keys = this.keys(group);
    const [[e1, stored], [e2, gen], [e3, old]] = ((await this.redis
      .pipeline()
      .hmget(keys.connectivity, ...iccids)
      .hget(keys.meta, 'settledGen')
      .exists(keys.settled)
      .exec()) ?? []) as [Error | null, unknown][];
    if (e1 || e2 || e3) throw e1 ?? e2 ?? e3;
    const values = stored as (string | null)[];
    const mark = RS + ((gen as string | null) ?? '0');
    const settled = (old as number) ? await this.settledSims(group, iccids) : values.map((v) => isMarked(v, mark));
    return { connectivity: values.map(withoutAppendix), settled };
  }

  /** Which of `iccids` are settled (every target holds their record, nothing held or in flight). */
  async settledSims(group: string, iccids: string[]): Promise<boolean[]> {
    if (!iccids.length) return [];
    const keys = this.keys(group);
    return (await this.redis.ccSettled(keys.connectivity, keys.settled, keys.meta, ...iccids)).map((v) => v === 1);
  }

  /**
   * The diff's verdict on staged SIMs: `settled` ones are held by every target exactly as staged (nothing held or
   * in flight); the fetch may skip them while their Kite entry does not change. One round trip.
   */
  async recordSettled(group: string, settled: string[], unsettled: string[]): Promise<void> {
    if (!settled.length && !unsettled.length) return;
    const keys = this.keys(group);
    const n = String(settled.length);
    await this.redis.ccMarkSettled(keys.connectivity, keys.settled, keys.meta, n, ...settled, ...unsettled);
  }

  /**
   * Records the targets the settled marks hold for (after a diff over all of the group's SIMs), and moves what the
   * old form's `settled` hash still holds into conn marks (state written before them): the SIMs this diff passed
   * by as KEPT.
   */
  async recordSettledFor(group: string, targets: string[]): Promise<void> {
    const keys = this.keys(group);
    if (await this.redis.exists(keys.settled)) {
      for await (const entries of this.scan(keys.settled, 1000)) {
        const iccids = entries.map(([iccid]) => iccid);
        await this.redis.ccMarkSettled(keys.connectivity, keys.settled, keys.meta, String(iccids.length), ...iccids);
      }
      await this.redis.unlink(keys.settled);
    }
    await this.redis.hset(keys.meta, 'settledFor', JSON.stringify([...targets].sort()));
  }

  /** The targets the settled marks were last recorded for; undefined before the first. */
  async settledFor(group: string): Promise<string[] | undefined> {
    const json = await this.redis.hget(this.keys(group).meta, 'settledFor');
    return json ? (JSON.parse(json) as string[]) : undefined;
  }

  /**
   * Drops a cycle's snapshot once its diff is done (its publish begins): the next cycle's fetch stages its own.
   * Its invalid SIMs stay until that fetch (or their TTL): `kite-cc sim` shows why a SIM was rejected.
   */
  async dropSnapshot(group: string, cycle: number): Promise<void> {
    const keys = this.keys(group);
    await execOrThrow(this.redis.multi().del(keys.snapshot(cycle), keys.changed(cycle), keys.indexed(cycle)));
  }

  /** Drops a cycle's staging; a cycle's fetch starts from nothing. */
  async dropStaging(group: string, cycle: number): Promise<void> {
    const keys = this.keys(group);
    await execOrThrow(
      this.redis.multi().del(keys.snapshot(cycle), keys.changed(cycle), keys.indexed(cycle), keys.invalid(cycle))
    );
  }

  /**
   * Records that the cycle's fetch staged every page itself (its writes index each record in changed:<cycle>), and
   * whether every SIM it staged has conn (`everyStagedKnown`): then the diff reads only the records, and finds that
   * no SIM left by counting.
   */
  async recordStagingIndexed(group: string, cycle: number, everyStagedKnown: boolean): Promise<void> {
    await this.redis.set(this.keys(group).indexed(cycle), everyStagedKnown ? 'conn' : 'records', 'EX', this.ttl);
  }

  /** How the cycle's fetch finished staging (see recordStagingIndexed); undefined when its fetch did not say. */
  async stagingIndexed(group: string, cycle: number): Promise<{ everyStagedKnown: boolean } | undefined> {
    const value = await this.redis.get(this.keys(group).indexed(cycle));
    return value === null ? undefined : { everyStagedKnown: value === 'conn' };
  }

  // --- diff ---

  /** Pages through a cycle's staged snapshot: `[iccid, record JSON]`. An entry may repeat if the hash is rehashed. */
  scanSnapshot(group: string, cycle: number, count = 1000): AsyncGenerator<Entry[]> {
    return this.scan(this.keys(group).snapshot(cycle), count);
  }

  /**
   * Pages through the records a cycle's snapshot holds (not the KEPT SIMs), by its changed:<cycle> index: only
   * valid once stagingIndexed says so. An entry may repeat.
   */
  async *scanStagedRecords(group: string, cycle: number, count = 1000): AsyncGenerator<Entry[]> {
    const keys = this.keys(group);
    let cursor = '0';
    do {
      const [next, iccids] = await this.redis.sscan(keys.changed(cycle), cursor, 'COUNT', count);
      cursor = next;
      const records = await this.hmget(keys.snapshot(cycle), iccids);
      const entries: Entry[] = [];
      iccids.forEach((iccid, i) => records[i] !== null && records[i] !== KEPT && entries.push([iccid, records[i]!]));
      if (entries.length) yield entries;
    } while (cursor !== '0');
  }

  /** How many SIMs of the group the cycle's snapshot holds. */
  async snapshotCount(group: string, cycle: number): Promise<number> {
    return this.redis.hlen(this.keys(group).snapshot(cycle));
  }

  /** Staged records of a cycle (canonical JSON), null for SIMs not in the snapshot. */
  async snapshotRecords(group: string, cycle: number, iccids: string[]): Promise<(string | null)[]> {
    return this.hmget(this.keys(group).snapshot(cycle), iccids);
  }

  /**
   * For each target, in order: what it holds for `iccids`, their recorded failures and their uncertain patches.
   * One round trip.
   */
  async lookups(group: string, targets: string[], iccids: string[]): Promise<TargetLookup[]> {
    const keys = this.keys(group);
    if (!iccids.length) {
      return targets.map(() => ({ published: [], failures: [], uncertain: [], countersSentAt: [] }));
    }
    const replies = await this.hmgetMany(
      targets.flatMap((t) => [
        { key: keys.published(t), fields: iccids },
        { key: keys.failures(t), fields: iccids },
        { key: keys.sent(t), fields: iccids },
        { key: keys.countersSentAt(t), fields: iccids },
      ])
    );
    return targets.map((_, t) => {
      const published = replies[4 * t];
      return {
        published: published.map((stored, i) => publishedRecord(iccids[i], stored)),
        failures: replies[4 * t + 1].map(parseFailure),
        uncertain: replies[4 * t + 2],
        countersSentAt: replies[4 * t + 3].map((at, i) => {
          const sentAt = at ?? appendixOf(published[i]);
          return sentAt ? Number(sentAt) : undefined;
        }),
      };
    });
  }

  /** Whether the target has pending patches not yet acknowledged. */
  async hasPending(group: string, target: string): Promise<boolean> {
    return (await this.redis.hlen(this.keys(group).pending(target))) > 0;
  }

  /** How many SIMs have a patch not yet acknowledged by the target. */
  async pendingCount(group: string, target: string): Promise<number> {
    return this.redis.hlen(this.keys(group).pending(target));
  }

  /**
   * Sets and deletes pending patches of one target, and records when the daily counters of `countersReleased`
   * SIMs went out (kept in Redis, so a held change outlives crashes and continue-as-new). One round trip.
   */
  async writePending(
    group: string,
    target: string,
    sets: Entry[],
    deletes: string[],
    countersReleased: { iccids: string[]; at: number } = { iccids: [], at: 0 }
  ): Promise<void> {
    if (!sets.length && !deletes.length && !countersReleased.iccids.length) return;
    const keys = this.keys(group);
    const pipeline = this.redis.pipeline() as unknown as ScriptedPipeline;
    if (sets.length) pipeline.hset(keys.pending(target), ...sets.flat());
    if (deletes.length) pipeline.hdel(keys.pending(target), ...deletes);
    if (countersReleased.iccids.length) {
      const at = String(countersReleased.at);
      pipeline.ccCountersSent(keys.published(target), keys.countersSentAt(target), at, ...countersReleased.iccids);
    }
    await execOrThrow(pipeline);
  }

  /** How many SIMs the group has had since they were first fetched (those with connectivity on record). */
  async knownCount(group: string): Promise<number> {
    return this.redis.hlen(this.keys(group).connectivity);
  }

  /**
   * The group's known SIMs that are neither in the cycle's snapshot nor among its invalid SIMs: they left the
   * group. Each appears once. The check runs inside Redis, `count` SIMs per round trip, and only leavers come back:
   * a cycle without leavers moves no SIM data.
   */
  async leavers(group: string, cycle: number, count = 1000): Promise<string[]> {
    const keys = this.keys(group);
    const indexed = await this.stagingIndexed(group, cycle);
    // Every staged SIM has conn: conn's SIMs in neither the snapshot nor its invalid SIMs are counted, not listed.
    if (indexed?.everyStagedKnown) {
      const left = await this.redis.ccLeaversCount(keys.connectivity, keys.snapshot(cycle), keys.invalid(cycle));
      if (left === 0) return [];
    }
    const leavers = new Set<string>();
    let cursor = '0';
    do {
      const [next, ...page] = await this.redis.ccLeaversPage(
        keys.connectivity,
        keys.snapshot(cycle),
        keys.invalid(cycle),
        cursor,
        String(count)
      );
      cursor = next;
      for (const iccid of page) leavers.add(iccid);
    } while (cursor !== '0');
    return [...leavers];
  }

  // --- events (record/events.ts) ---

  /** The SIMs' event baselines (JSON), null for SIMs without one. */
  async eventBaselines(group: string, iccids: string[]): Promise<(string | null)[]> {
    return this.hmget(this.keys(group).eventBaselines, iccids);
  }

  /** Whether a diff with events on has completed for the group: its SIMs have baselines, new ones are joining. */
  async eventsBaselined(group: string): Promise<boolean> {
    return (await this.redis.hget(this.keys(group).meta, 'events')) === '1';
  }

  /** Records that a diff with events on completed for the group (see `eventsBaselined`). */
  async markEventsBaselined(group: string): Promise<void> {
    await this.redis.hset(this.keys(group).meta, 'events', '1');
  }

  /** Events are off for the group: forget what detection saw, so turning them on again starts afresh. */
  async dropEventBaselines(group: string): Promise<void> {
    const keys = this.keys(group);
    await this.redis.pipeline().hdel(keys.meta, 'events').unlink(keys.eventBaselines).exec();
  }

  /**
   * Atomically for the batch: records each SIM's new baseline (null deletes it) and queues its events (JSON
   * objects) for every target. A diff that dies before this call sees the same changes again; after it, none.
   */
  async queueEvents(
    group: string,
    targets: string[],
    sims: { iccid: string; baseline: string | null; events: string[] }[]
  ): Promise<void> {
    if (!sims.length) return;
    const keys = this.keys(group);
    const eventKeys = targets.map((t) => keys.events(t));
    const args = sims.flatMap((s) => [s.iccid, s.baseline ?? '', s.events.join(',')]);
    await this.redis.ccQueueEvents(1 + eventKeys.length, keys.eventBaselines, ...eventKeys, ...args);
  }

  /** Pages through a target's queued events: `[iccid, JSON array of events]`. */
  scanEvents(group: string, target: string, count = 1000): AsyncGenerator<Entry[]> {
    return this.scan(this.keys(group).events(target), count);
  }

  /** How many SIMs have events the target has not acknowledged. */
  async eventsPendingCount(group: string, target: string): Promise<number> {
    return this.redis.hlen(this.keys(group).events(target));
  }

  /** Drops events the target acknowledged (or refused for good), per SIM as sent. Returns how many SIMs. */
  async commitEvents(group: string, target: string, sent: Entry[]): Promise<number> {
    if (!sent.length) return 0;
    return this.redis.ccCommitEvents(this.keys(group).events(target), ...sent.flat());
  }

  /**
   * Forgets SIMs that left the group, for every target: a SIM that joins again is published in full. In the same
   * transaction, queues each `leftGroup` event (JSON) of `told` for its targets, so that it is queued once.
   */
  async forget(
    group: string,
    targets: string[],
    iccids: string[],
    told: { iccid: string; targets: string[]; event: string }[] = []
  ): Promise<void> {
    if (!iccids.length) return;
    const keys = this.keys(group);
    const identities = (await this.hmget(keys.connectivity, iccids)).map(withoutAppendix).flatMap((json) => {
      const identity = json ? (JSON.parse(json) as { i?: unknown }).i : undefined;
      return typeof identity === 'string' ? [identity] : [];
    });
    const pipeline = told.length ? this.redis.multi() : this.redis.pipeline();
    for (const { iccid, targets: to, event } of told) {
      const eventKeys = to.map((t) => keys.events(t));
      (pipeline as unknown as { ccQueueEvents(...args: (string | number)[]): unknown }).ccQueueEvents(
        1 + eventKeys.length,
        keys.eventBaselines,
        ...eventKeys,
        iccid,
        '',
        event
      );
    }
    if (identities.length) pipeline.hdel(keys.identities, ...identities);
    pipeline.hdel(keys.connectivity, ...iccids);
    pipeline.hdel(keys.settled, ...iccids);
    pipeline.hdel(keys.audit, ...iccids);
    pipeline.hdel(keys.eventBaselines, ...iccids);
    for (const target of targets) {
      pipeline.hdel(keys.published(target), ...iccids);
      pipeline.hdel(keys.pending(target), ...iccids);
      pipeline.hdel(keys.failures(target), ...iccids);
      pipeline.hdel(keys.sent(target), ...iccids);
      pipeline.hdel(keys.countersSentAt(target), ...iccids);
    }
    await execOrThrow(pipeline);
  }

  // --- publish ---

  /** Pages through a target's pending patches: `[iccid, patch JSON]`. An entry may repeat while the hash shrinks. */
  scanPending(group: string, target: string, count = 1000): AsyncGenerator<Entry[]> {
    return this.scan(this.keys(group).pending(target), count);
  }

  /** The records the target holds (canonical JSON), null for SIMs it does not hold. */
  async publishedRecords(group: string, target: string, iccids: string[]): Promise<(string | null)[]> {
    const stored = await this.hmget(this.keys(group).published(target), iccids);
    return stored.map((value, i) => publishedRecord(iccids[i], value));
  }

  /** The SIMs' recorded permanent failures at the target, undefined for SIMs without one. */
  async failures(group: string, target: string, iccids: string[]): Promise<(StoredFailure | undefined)[]> {
    return (await this.hmget(this.keys(group).failures(target), iccids)).map(parseFailure);
  }

  /** How many SIMs of the group failed permanently at the target and have not changed since. */
  async failingCount(group: string, target: string): Promise<number> {
    return this.redis.hlen(this.keys(group).failures(target));
  }

  /**
   * Marks patches as handed to the target, before they are sent: until a commit or a permanent failure clears the
   * mark, the target's state for those keys is unknown, and the next diff re-sends them (TargetLookup.uncertain).
   */
  async markSent(group: string, target: string, entries: Entry[]): Promise<void> {
    if (entries.length) await this.redis.hset(this.keys(group).sent(target), ...entries.flat());
  }

  /** Records acknowledged SIMs as published, atomically per SIM. Returns how many were still pending. */
  async commitPublished(group: string, target: string, items: CommitItem[]): Promise<number> {
    if (!items.length) return 0;
    const keys = this.keys(group);
    const trail = this.auditEntries > 0;
    const args = items.flatMap((i) => {
      const whole = i.patch === i.merged;
      // A full publish of the whole record goes to the trail as what the target holds (kind H); else short keys.
      return [i.iccid, i.patch, packRecord(i.iccid, i.merged), trail ? compactPatch(i.patch) : '', whole ? '1' : ''];
    });
    const now = Date.now();
    return this.redis.ccCommitAudited(
      keys.published(target),
      keys.pending(target),
      keys.failures(target),
      keys.sent(target),
      keys.audit,
      keys.countersSentAt(target),
      String(this.auditEntries),
      String(now - this.auditMaxAgeMs),
      entryHead(now, AuditKind.full, target),
      heldLine(now, target),
      entryHead(now, AuditKind.patch, target),
      heldEnd(target),
      recordWhatHead(target),
      ...args
    );
  }

  /** Moves permanently failed SIMs from pending to failures, with their reason. */
  async recordFailures(group: string, target: string, items: FailureItem[]): Promise<number> {
    if (!items.length) return 0;
    const keys = this.keys(group);
    const at = Date.now();
    const args = items.flatMap((i) => {
      const failure: StoredFailure = { reason: i.reason, patch: i.patch, at };
      return [i.iccid, i.patch, JSON.stringify(failure), failureLine(at, target, i.reason)];
    });
    return this.redis.ccFailAudited(
      keys.pending(target),
      keys.failures(target),
      keys.sent(target),
      keys.audit,
      String(this.auditEntries),
      String(at - this.auditMaxAgeMs),
      ...args
    );
  }

  /** The SIM's audit trail, newest first: what was published to which target and when, and what failed. */
  async auditTrail(group: string, iccid: string): Promise<AuditEntry[]> {
    const keys = this.keys(group);
    const lines = await this.redis.hget(keys.audit, iccid);
    const cutoff = Date.now() - this.auditMaxAgeMs;
    const entries = (lines ?? '')
      .split('\n')
      .map((line) => parseAuditLine(line, iccid))
      .filter((entry): entry is AuditEntry => entry !== undefined && entry.at >= cutoff)
      .slice(0, this.auditEntries);
    // A held entry stands for the record its target holds now (the commit that changes it writes the record in).
    for (const entry of entries.filter((e) => e.held)) {
      const [record] = await this.publishedRecords(group, entry.target, [iccid]);
      delete entry.held;
      if (record !== null) entry.published = JSON.parse(record) as Record<string, unknown>;
    }
    return entries;
  }

  /**
   * Forgets what the target holds for `iccids` (all of the group's SIMs when absent), and their failures, so the
   * next diff queues their whole record again (`kite-cc resync`). Returns how many SIMs it queued.
   */
  async forgetPublished(group: string, target: string, iccids?: string[]): Promise<number> {
    const keys = this.keys(group);
    // The SIMs' trail entries that stood for what the target holds take the record first (kind H → R).
    const held = [heldEnd(target), recordWhatHead(target)] as const;
    if (iccids) {
      if (!iccids.length) return 0;
      const pipeline = this.redis.pipeline() as unknown as ScriptedPipeline;
      pipeline.hdel(keys.failures(target), ...iccids);
      pipeline.ccMarkSettled(keys.connectivity, keys.settled, keys.meta, '0', ...iccids);
      pipeline.ccForgetPublished(keys.published(target), keys.audit, ...held, ...iccids);
      const replies = ((await (pipeline as unknown as ReturnType<Redis['pipeline']>).exec()) ?? []) as [
        Error | null,
        number,
      ][];
      for (const [err] of replies) if (err) throw err;
      return replies[2][1];
    }
    // Every settled mark goes first, at once: a new generation, which no mark in conn carries.
    await execOrThrow(
      this.redis.pipeline().unlink(keys.failures(target), keys.settled).hincrby(keys.meta, 'settledGen', 1)
    );
    let count = 0;
    let cursor = '0';
    do {
      const [next, forgotten] = await this.redis.ccForgetPublishedPage(
        keys.published(target),
        keys.audit,
        ...held,
        cursor
      );
      cursor = String(next);
      count += forgotten;
    } while (cursor !== '0');
    return count;
  }

  // --- inspection (kite-cc sim, failures) ---

  /**
   * What Redis holds about a group: the cycles with a staged snapshot or invalid SIMs (newest first) and the targets
   * with state.
   * SCANs the keyspace for the group's keys (a few per group and target).
   */
  async groupFootprint(group: string): Promise<{ snapshotCycles: number[]; targets: string[] }> {
    const { base } = this.keys(group);
    const cycles = new Set<number>();
    const targets = new Set<string>();
    for await (const keys of scanKeys(this.redis, `${base}*`)) {
      for (const key of keys) {
        const [kind, name] = key.slice(base.length).split(':');
        // A cycle's snapshot goes once it is diffed; its invalid SIMs stay (why a SIM was rejected).
        if (kind === 'snap' || kind === 'invalid') cycles.add(Number(name));
        else if (['pub', 'pending', 'fail', 'sent'].includes(kind) && name) targets.add(name);
      }
    }
    return { snapshotCycles: [...cycles].sort((a, b) => b - a), targets: [...targets].sort() };
  }

  /**
   * Redis memory of the group's keys by family, in bytes (`MEMORY USAGE … SAMPLES 0`): `snap`, `pub:<target>`,
   * `conn`, `audit`, …, a cycle's keys under their family without the cycle. For the bench and tests; SCANs the
   * group's keys, one round trip per key.
   */
  async memoryByFamily(group: string): Promise<Record<string, number>> {
    const { base } = this.keys(group);
    const out: Record<string, number> = {};
    for await (const keys of scanKeys(this.redis, `${base}*`)) {
      for (const key of keys) {
        const family = key.slice(base.length).replace(/:-?\d+$/, '');
        const bytes = Number(await this.redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
        out[family] = (out[family] ?? 0) + bytes;
      }
    }
    return out;
  }

  /** Everything the store holds about one SIM: its record in each snapshot cycle given, and per target its state. */
  async simState(group: string, iccid: string, cycles: number[], targets: string[]): Promise<SimState> {
    const keys = this.keys(group);
    const pipeline = this.redis.pipeline();
    for (const cycle of cycles) pipeline.hget(keys.snapshot(cycle), iccid);
    for (const cycle of cycles) pipeline.hget(keys.invalid(cycle), iccid);
    for (const t of targets) {
      pipeline.hget(keys.published(t), iccid);
      pipeline.hget(keys.pending(t), iccid);
      pipeline.hget(keys.failures(t), iccid);
      pipeline.hget(keys.sent(t), iccid);
    }
    const replies = ((await pipeline.exec()) ?? []).map(([err, value]) => {
      if (err) throw err;
      return value as string | null;
    });
    targets.forEach((_, i) => {
      const at = 2 * cycles.length + 4 * i;
      replies[at] = publishedRecord(iccid, replies[at]);
    });
    const snapshotIndex = cycles.findIndex((_, i) => replies[i] !== null);
    const rejectedIndex = cycles.findIndex((_, i) => replies[cycles.length + i] !== null);
    const state: SimState = { targets: {}, audit: await this.auditTrail(group, iccid) };
    const base = 2 * cycles.length;
    if (snapshotIndex >= 0 && replies[snapshotIndex] !== KEPT) {
      state.snapshot = { cycle: cycles[snapshotIndex], record: replies[snapshotIndex]! };
    } else if (snapshotIndex >= 0) {
      // Kept means settled: every target held exactly the record when the snapshot was staged.
      const held = targets.map((_, i) => replies[base + 4 * i]).find((published) => published !== null);
      if (held) state.snapshot = { cycle: cycles[snapshotIndex], record: held, unchanged: true };
    }
    if (rejectedIndex >= 0 && (snapshotIndex < 0 || rejectedIndex < snapshotIndex)) {
      state.rejected = { cycle: cycles[rejectedIndex], reason: replies[cycles.length + rejectedIndex]! };
    }
    targets.forEach((t, i) => {
      const [published, pending, failure, sent] = replies.slice(base + 4 * i, base + 4 * i + 4);
      state.targets[t] = { published, pending, failure: parseFailure(failure), inFlight: sent };
    });
    return state;
  }

  /** Pages through a target's recorded permanent failures: `[iccid, failure]`. */
  async *scanFailures(group: string, target: string, count = 1000): AsyncGenerator<[string, StoredFailure][]> {
    for await (const entries of this.scan(this.keys(group).failures(target), count)) {
      yield entries.map(([iccid, json]) => [iccid, parseFailure(json)!]);
    }
  }

  /** Deletes every key of a group (for `kite-cc stop --forget` and tests). */
  async dropGroup(group: string): Promise<void> {
    // The group's keys share its hash tag, hence one Cluster slot: one DEL may take several.
    for await (const keys of scanKeys(this.redis, `${this.keys(group).base}*`)) await this.redis.del(...keys);
  }

  // --- private: the key layout and raw reads ---

  /** The group's keys. Throws InvalidGroupNameError for a name that would break the hash tag or a SCAN pattern. */
  private keys(group: string) {
    const problem = groupNameError(group);
    if (problem) throw new InvalidGroupNameError(problem);
    const base = `${this.prefix}:{${group}}:`;
    return {
      base,
      snapshot: (cycle: number) => `${base}snap:${cycle}`,
      invalid: (cycle: number) => `${base}invalid:${cycle}`,
      changed: (cycle: number) => `${base}changed:${cycle}`,
      indexed: (cycle: number) => `${base}indexed:${cycle}`,
      connectivity: `${base}conn`,
      settled: `${base}settled`,
      identities: `${base}ids`,
      published: (target: string) => `${base}pub:${target}`,
      pending: (target: string) => `${base}pending:${target}`,
      failures: (target: string) => `${base}fail:${target}`,
      sent: (target: string) => `${base}sent:${target}`,
      countersSentAt: (target: string) => `${base}counters:${target}`,
      audit: `${base}audit`,
      meta: `${base}meta`,
      eventBaselines: `${base}evbase`,
      events: (target: string) => `${base}events:${target}`,
    };
  }

  /** Values of `fields` in the hash at `key`, null where absent: one round trip. */
  private async hmget(key: string, fields: string[]): Promise<(string | null)[]> {
    return fields.length ? this.redis.hmget(key, ...fields) : [];
  }

  /** Several HMGETs in one round trip. */
  private async hmgetMany(requests: { key: string; fields: string[] }[]): Promise<(string | null)[][]> {
    const pipeline = this.redis.pipeline();
    for (const { key, fields } of requests) pipeline.hmget(key, ...fields);
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, value]) => {
      if (err) throw err;
      return value as (string | null)[];
    });
  }

  /** Pages through a hash with HSCAN; entries may repeat if the hash is rehashed meanwhile. */
  private async *scan(key: string, count: number): AsyncGenerator<Entry[]> {
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(key, cursor, 'COUNT', count);
      cursor = next;
      const entries: Entry[] = [];
      for (let i = 0; i < flat.length; i += 2) entries.push([flat[i], flat[i + 1]]);
      if (entries.length) yield entries;
    } while (cursor !== '0');
  }
}

/** A pipeline or transaction with the store's scripts. */
type ScriptedPipeline = ReturnType<Redis['pipeline']> & {
  ccStageKept(snapshot: string, packedIccs: string, kept: string, ttlSeconds: string): unknown;
  ccMarkSettled(conn: string, oldSettled: string, meta: string, settledCount: string, ...iccids: string[]): unknown;
  ccForgetPublished(pub: string, audit: string, held: string, record: string, ...iccids: string[]): unknown;
  ccCountersSent(pub: string, counters: string, at: string, ...iccids: string[]): unknown;
};

/** The separator of a stored value's appendix (RS): conn's settled mark, pub's counters time. JSON never holds it. */
const RS = '\x1e';

/** A stored value without its appendix (conn's settled mark, pub's counters time): a conn value as fetch wrote it. */
function withoutAppendix(value: string | null): string | null {
  if (value === null) return null;
  const at = value.indexOf(RS);
  return at < 0 ? value : value.slice(0, at);
}

/** Whether a conn value ends with the settled `mark` (RS, then the generation), as SETTLED_SCRIPT reads it. */
function isMarked(value: string | null, mark: string): boolean {
  return value !== null && value.length > mark.length && value.endsWith(mark);
}

/** A stored value's appendix, undefined when none. */
function appendixOf(value: string | null): string | undefined {
  const at = value === null ? -1 : value.indexOf(RS);
  return at < 0 ? undefined : value!.slice(at + 1);
}

/** The canonical JSON of what pub stores for a SIM (either form, without the counters time), null when absent. */
function publishedRecord(iccid: string, stored: string | null): string | null {
  return unpackRecordOrNull(iccid, withoutAppendix(stored));
}

function parseFailure(json: string | null): StoredFailure | undefined {
  return json ? (JSON.parse(json) as StoredFailure) : undefined;
}

async function execOrThrow(pipeline: ReturnType<Redis['pipeline']>): Promise<void> {
  for (const [err] of (await pipeline.exec()) ?? []) if (err) throw err;
}
