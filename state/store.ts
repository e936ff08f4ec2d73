/**
 * The connector's state in Redis. Every key of a group carries the group as a hash tag, `cc:{<group>}:…`, so one
 * group's keys share a Redis Cluster slot and a Lua script may touch several of them.
 *
 *   snap:<cycle>      HASH iccid → canonical record JSON          the cycle's staged snapshot (TTL)
 *   invalid:<cycle>   HASH icc or #index → reason                 SIMs of the group that could not be mapped (TTL)
 *   conn              HASH iccid → {h: hints, p: presence}       connectivity hints and presence last fetched
 *   pub:<target>      HASH iccid → canonical record JSON          what the target holds (last acknowledged)
 *   pending:<target>  HASH iccid → canonical patch JSON           changes not yet acknowledged
 *   fail:<target>     HASH iccid → {reason, patch, at}            permanent failures, retried when the patch changes
 */
import Redis, { type RedisOptions } from 'ioredis';

export interface StateStoreOptions {
  /** First segment of every key. @default 'cc' */
  prefix?: string;
  /** How long a cycle's staged snapshot lives if nobody drops it, in seconds. @default 86400 */
  stagingTtlSeconds?: number;
}

export type Entry = [field: string, value: string];

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

/** Atomically, per SIM: if pending still holds the patch we sent, record the merged state and drop the pending. */
const COMMIT_SCRIPT = `
local n = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    n = n + 1
  end
end
return n`;

/** Atomically, per SIM: if pending still holds the patch, move it to the failures with its reason. */
const FAIL_SCRIPT = `
local n = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
    n = n + 1
  end
end
return n`;

/** The fields (ARGV) present in neither hash: existence checks only, no values cross the wire. */
const ABSENT_SCRIPT = `
local out = {}
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 and redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    out[#out + 1] = ARGV[i]
  end
end
return out`;

interface ScriptedRedis extends Redis {
  ccAbsent(a: string, b: string, ...fields: string[]): Promise<string[]>;
  ccCommit(pub: string, pending: string, fail: string, ...args: string[]): Promise<number>;
  ccFail(pending: string, fail: string, ...args: string[]): Promise<number>;
}

/** An ioredis client from a URL (`redis://`, `rediss://` for TLS; a password may be in the URL). */
export function connectRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: 5, enableAutoPipelining: false, ...options });
}

export class StateStore {
  private readonly redis: ScriptedRedis;
  private readonly prefix: string;
  private readonly ttl: number;

  constructor(redis: Redis, options: StateStoreOptions = {}) {
    this.redis = redis as ScriptedRedis;
    this.prefix = options.prefix ?? 'cc';
    this.ttl = options.stagingTtlSeconds ?? 86_400;
    if (!this.redis.ccCommit) {
      redis.defineCommand('ccCommit', { numberOfKeys: 3, lua: COMMIT_SCRIPT });
      redis.defineCommand('ccFail', { numberOfKeys: 2, lua: FAIL_SCRIPT });
      redis.defineCommand('ccAbsent', { numberOfKeys: 2, lua: ABSENT_SCRIPT });
    }
  }

  readonly key = {
    snapshot: (group: string, cycle: number) => `${this.prefix}:{${group}}:snap:${cycle}`,
    invalid: (group: string, cycle: number) => `${this.prefix}:{${group}}:invalid:${cycle}`,
    connectivity: (group: string) => `${this.prefix}:{${group}}:conn`,
    published: (group: string, target: string) => `${this.prefix}:{${group}}:pub:${target}`,
    pending: (group: string, target: string) => `${this.prefix}:{${group}}:pending:${target}`,
    failures: (group: string, target: string) => `${this.prefix}:{${group}}:fail:${target}`,
  };

  /** Values of `fields` in the hash at `key`, null where absent: one round trip. */
  async hmget(key: string, fields: string[]): Promise<(string | null)[]> {
    return fields.length ? this.redis.hmget(key, ...fields) : [];
  }

  /** Several HMGETs in one round trip. */
  async hmgetMany(requests: { key: string; fields: string[] }[]): Promise<(string | null)[][]> {
    const pipeline = this.redis.pipeline();
    for (const { key, fields } of requests) pipeline.hmget(key, ...fields);
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, value]) => {
      if (err) throw err;
      return value as (string | null)[];
    });
  }

  /** Of `fields`, those in neither hash `a` nor hash `b` (same hash tag). One round trip; values are not read. */
  async absentFrom(a: string, b: string, fields: string[]): Promise<string[]> {
    return fields.length ? this.redis.ccAbsent(a, b, ...fields) : [];
  }

  /** Pages through a hash with HSCAN; entries may repeat if the hash is rehashed meanwhile. */
  async *scan(key: string, count = 1000): AsyncGenerator<Entry[]> {
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(key, cursor, 'COUNT', count);
      cursor = next;
      const entries: Entry[] = [];
      for (let i = 0; i < flat.length; i += 2) entries.push([flat[i], flat[i + 1]]);
      if (entries.length) yield entries;
    } while (cursor !== '0');
  }

  async hlen(key: string): Promise<number> {
    return this.redis.hlen(key);
  }

  /** Writes one fetched page of a group: records, connectivity, invalid SIMs. One round trip. */
  async stagePage(
    group: string,
    cycle: number,
    page: { records: Entry[]; connectivity: Entry[]; invalid: Entry[] }
  ): Promise<void> {
    const pipeline = this.redis.pipeline();
    const snapshot = this.key.snapshot(group, cycle);
    const invalid = this.key.invalid(group, cycle);
    if (page.records.length) pipeline.hset(snapshot, ...page.records.flat()).expire(snapshot, this.ttl);
    if (page.invalid.length) pipeline.hset(invalid, ...page.invalid.flat()).expire(invalid, this.ttl);
    if (page.connectivity.length) pipeline.hset(this.key.connectivity(group), ...page.connectivity.flat());
    await execOrThrow(pipeline);
  }

  /** Drops a cycle's staging; a cycle's fetch starts from nothing. */
  async dropStaging(group: string, cycle: number): Promise<void> {
    await this.redis.del(this.key.snapshot(group, cycle), this.key.invalid(group, cycle));
  }

  /** Sets and deletes pending patches of one target. One round trip. */
  async writePending(group: string, target: string, sets: Entry[], deletes: string[]): Promise<void> {
    if (!sets.length && !deletes.length) return;
    const key = this.key.pending(group, target);
    const pipeline = this.redis.pipeline();
    if (sets.length) pipeline.hset(key, ...sets.flat());
    if (deletes.length) pipeline.hdel(key, ...deletes);
    await execOrThrow(pipeline);
  }

  /** Forgets SIMs that left the group, for every target: a SIM that joins again is published in full. */
  async forget(group: string, targets: string[], iccids: string[]): Promise<void> {
    if (!iccids.length) return;
    const pipeline = this.redis.pipeline();
    pipeline.hdel(this.key.connectivity(group), ...iccids);
    for (const target of targets) {
      pipeline.hdel(this.key.published(group, target), ...iccids);
      pipeline.hdel(this.key.pending(group, target), ...iccids);
      pipeline.hdel(this.key.failures(group, target), ...iccids);
    }
    await execOrThrow(pipeline);
  }

  /** Records acknowledged SIMs as published, atomically per SIM. Returns how many were still pending. */
  async commitPublished(group: string, target: string, items: CommitItem[]): Promise<number> {
    if (!items.length) return 0;
    const args = items.flatMap((i) => [i.iccid, i.patch, i.merged]);
    const k = this.key;
    return this.redis.ccCommit(
      k.published(group, target),
      k.pending(group, target),
      k.failures(group, target),
      ...args
    );
  }

  /** Moves permanently failed SIMs from pending to failures, with their reason. */
  async recordFailures(group: string, target: string, items: FailureItem[]): Promise<number> {
    if (!items.length) return 0;
    const at = Date.now();
    const args = items.flatMap((i) => [i.iccid, i.patch, JSON.stringify({ reason: i.reason, patch: i.patch, at })]);
    return this.redis.ccFail(this.key.pending(group, target), this.key.failures(group, target), ...args);
  }

  /** Deletes every key of a group (for `kite-cc stop --forget` and tests). */
  async dropGroup(group: string): Promise<void> {
    const stream = this.redis.scanStream({ match: `${this.prefix}:{${group}}:*`, count: 500 });
    for await (const keys of stream as AsyncIterable<string[]>) if (keys.length) await this.redis.del(...keys);
  }
}

async function execOrThrow(pipeline: ReturnType<Redis['pipeline']>): Promise<void> {
  for (const [err] of (await pipeline.exec()) ?? []) if (err) throw err;
}
