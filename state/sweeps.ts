/**
 * Inventory sweeps in Redis: one listing of a Kite account's inventory shared by every group that reads that
 * account. Every key of an account carries the account as its hash tag, `cc:{sweep.<account>}:…`, so the Lua
 * scripts below touch one Redis Cluster slot (group names cannot contain a colon or braces, so no group's tag
 * collides with an account's).
 *
 *   lock              STRING token (PX)                 the sweeper; renewed while it pages, taken over once expired
 *   state             HASH id, startedAt, finishedAt,   the current (or last) sweep: its number, when it began and
 *                          cursor, seen, done, groups,  ended, the page index to resume from, SIMs listed so far,
 *                          listed                       the groups it stages, and SIMs of the last complete sweep
 *   groups            ZSET group → expiry (epoch ms)    groups that read the account: the next sweep stages them
 *   build:<group>     LIST chunk                        the running sweep's members of the group, one chunk a page
 *   part:<group>      LIST header JSON, chunks…         the newest finished sweep's members of the group, not taken
 *   taken:<group>:<cycle> LIST header, chunks…          the partition a group's cycle took; its fetch reads it
 *
 * A chunk is text the fetch writes and reads (activities/sweep-chunk.ts: the members' positions in the listing
 * and their Kite entries as sent). The header is
 * `{"id", "startedAt", "finishedAt", "seen"}`. A sweep's page is appended, and its cursor advanced, in one script
 * that checks the lock: a sweeper that lost its lock writes nothing, and the one that took over resumes at the
 * cursor. Finishing renames every `build:` to `part:` and releases the lock in one script.
 */
import type Redis from 'ioredis';
import type { RedisClient } from './redis';

/** A finished sweep as a group's partition shows it. */
export interface SweepHeader {
  id: number;
  startedAt: number;
  finishedAt: number;
  /** SIMs the sweep listed, all groups. */
  seen: number;
}

/** The account's current (or last) sweep. */
export interface SweepState {
  id: number;
  startedAt: number;
  cursor: number;
  seen: number;
  done: boolean;
  groups: string[];
  /** SIMs of the last complete sweep (the paging ceiling); undefined before the first. */
  listed?: number;
}

/** One page's members per group: `[group, chunk JSON]`. */
export type SweepChunk = [group: string, chunk: string];

/** ARGV: token, ttl ms. Takes the lock if free or already ours (renewing it). */
const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

/** ARGV: token, ttl ms. Renews the lock only while it is ours. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

/** ARGV: token. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** KEYS: lock, state, build:<group>…  ARGV: token, ttl ms, id, startedAt, groups JSON. */
const BEGIN = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('HSET', KEYS[2], 'id', ARGV[3], 'startedAt', ARGV[4], 'cursor', 0, 'seen', 0, 'done', 0, 'groups', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/**
 * KEYS: lock, state, then one build:<group> per chunk.  ARGV: token, ttl ms, build ttl s, cursor, SIMs listed,
 * then one chunk JSON per build key.
 */
const APPEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 3, #KEYS do
  redis.call('RPUSH', KEYS[i], ARGV[i + 3])
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
redis.call('HSET', KEYS[2], 'cursor', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'seen', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/**
 * KEYS: lock, state, then (build:<group>, part:<group>) per group.  ARGV: token, header JSON, part ttl s,
 * finishedAt, listed.
 */
const FINISH = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 3, #KEYS, 2 do
  redis.call('LPUSH', KEYS[i], ARGV[2])
  redis.call('RENAME', KEYS[i], KEYS[i + 1])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[3])
end
redis.call('HSET', KEYS[2], 'done', 1, 'finishedAt', ARGV[4], 'listed', ARGV[5])
redis.call('DEL', KEYS[1])
return 1`;

/**
 * KEYS: taken:<group>:<cycle>, part:<group>.  ARGV: oldest acceptable startedAt, ttl s. The cycle's partition:
 * the one it already took, or the newest finished one if it began no earlier than ARGV[1]. Returns its header.
 */
const TAKE = `
local header = redis.call('LINDEX', KEYS[1], 0)
if header then return header end
header = redis.call('LINDEX', KEYS[2], 0)
if not header then return false end
if cjson.decode(header).startedAt < tonumber(ARGV[1]) then return false end
redis.call('RENAME', KEYS[2], KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return header`;

interface SweepRedis extends Redis {
  ccSweepAcquire(lock: string, token: string, ttl: string): Promise<number>;
  ccSweepRenew(lock: string, token: string, ttl: string): Promise<number>;
  ccSweepRelease(lock: string, token: string): Promise<number>;
  ccSweepBegin(n: number, ...keysAndArgs: string[]): Promise<number>;
  ccSweepAppend(n: number, ...keysAndArgs: string[]): Promise<number>;
  ccSweepFinish(n: number, ...keysAndArgs: string[]): Promise<number>;
  ccSweepTake(taken: string, part: string, minStartedAt: string, ttl: string): Promise<string | null>;
}

export interface InventorySweepsOptions {
  /** First segment of every key. @default 'cc' */
  prefix?: string;
  /** How long a sweep's partitions live if no group takes them, in seconds. @default 86400 */
  ttlSeconds?: number;
}

/** The sweeps of Kite accounts; an account is an opaque id (the Kite rate budget's peer, e.g. `kite:<digest>`). */
export class InventorySweeps {
  private readonly redis: SweepRedis;
  private readonly prefix: string;
  private readonly ttl: number;

  constructor(redis: RedisClient, options: InventorySweepsOptions = {}) {
    this.redis = redis as SweepRedis;
    this.prefix = options.prefix ?? 'cc';
    this.ttl = options.ttlSeconds ?? 86_400;
    if (!this.redis.ccSweepAcquire) {
      redis.defineCommand('ccSweepAcquire', { numberOfKeys: 1, lua: ACQUIRE });
      redis.defineCommand('ccSweepRenew', { numberOfKeys: 1, lua: RENEW });
      redis.defineCommand('ccSweepRelease', { numberOfKeys: 1, lua: RELEASE });
      redis.defineCommand('ccSweepBegin', { lua: BEGIN });
      redis.defineCommand('ccSweepAppend', { lua: APPEND });
      redis.defineCommand('ccSweepFinish', { lua: FINISH });
      redis.defineCommand('ccSweepTake', { numberOfKeys: 2, lua: TAKE });
    }
  }

  /** Takes the account's sweep lock (or renews it, when `token` holds it). True when `token` holds it now. */
  async acquire(account: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.ccSweepAcquire(this.keys(account).lock, token, String(ttlMs))) === 1;
  }

  /** Renews the lock while `token` holds it; false when it was lost (expired and taken over). */
  async renew(account: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.ccSweepRenew(this.keys(account).lock, token, String(ttlMs))) === 1;
  }

  async release(account: string, token: string): Promise<void> {
    await this.redis.ccSweepRelease(this.keys(account).lock, token);
  }

  /** The group reads the account until `expiresAt` (epoch ms): sweeps begun before then stage its members. */
  async register(account: string, group: string, expiresAt: number): Promise<void> {
    const k = this.keys(account);
    await this.redis.pipeline().zadd(k.groups, expiresAt, group).expire(k.groups, this.ttl).exec();
  }

  /** The groups registered as reading the account at `now` (their registration not expired). */
  async readers(account: string, now: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys(account).groups, now, '+inf');
  }

  /** The account's current or last sweep; undefined before the first. */
  async state(account: string): Promise<SweepState | undefined> {
    const s = await this.redis.hgetall(this.keys(account).state);
    if (!s.id) return undefined;
    return {
      id: Number(s.id),
      startedAt: Number(s.startedAt),
      cursor: Number(s.cursor),
      seen: Number(s.seen),
      done: s.done === '1',
      groups: JSON.parse(s.groups ?? '[]') as string[],
      listed: s.listed === undefined ? undefined : Number(s.listed),
    };
  }

  /**
   * Begins the account's next sweep, staging the registered groups (those not expired at `now`) and `group`.
   * Needs the lock. Returns the new sweep, or undefined when the lock was lost.
   */
  async begin(account: string, token: string, ttlMs: number, group: string, now: number) {
    const k = this.keys(account);
    await this.redis.zremrangebyscore(k.groups, '-inf', `(${now}`);
    const groups = [...new Set([...(await this.redis.zrange(k.groups, 0, -1)), group])].sort();
    const id = ((await this.state(account))?.id ?? 0) + 1;
    const keys = [k.lock, k.state, ...groups.map(k.build)];
    const args = [token, String(ttlMs), String(id), String(now), JSON.stringify(groups)];
    if ((await this.redis.ccSweepBegin(keys.length, ...keys, ...args)) !== 1) return undefined;
    return (await this.state(account))!;
  }

  /** Appends one page's members and moves the cursor. False when the lock was lost: nothing was written. */
  async append(
    account: string,
    token: string,
    ttlMs: number,
    page: { cursor: number; listed: number; chunks: SweepChunk[] }
  ): Promise<boolean> {
    const k = this.keys(account);
    const keys = [k.lock, k.state, ...page.chunks.map(([group]) => k.build(group))];
    const args = [token, String(ttlMs), String(this.ttl), String(page.cursor), String(page.listed)];
    const chunks = page.chunks.map(([, chunk]) => chunk);
    return (await this.redis.ccSweepAppend(keys.length, ...keys, ...args, ...chunks)) === 1;
  }

  /**
   * Ends the sweep: every staged group's members become its partition (replacing one it did not take), and the
   * lock is released. False when the lock was lost.
   */
  async finish(account: string, token: string, sweep: SweepState, now: number): Promise<boolean> {
    const k = this.keys(account);
    const header: SweepHeader = { id: sweep.id, startedAt: sweep.startedAt, finishedAt: now, seen: sweep.seen };
    const keys = [k.lock, k.state, ...sweep.groups.flatMap((g) => [k.build(g), k.part(g)])];
    const args = [token, JSON.stringify(header), String(this.ttl), String(now), String(sweep.seen)];
    return (await this.redis.ccSweepFinish(keys.length, ...keys, ...args)) === 1;
  }

  /**
   * The group's partition for `cycle`: the one the cycle already took, or else the newest finished sweep's, if it
   * began at `minStartedAt` or later (which the cycle then takes). Undefined when there is none.
   */
  async take(account: string, group: string, cycle: number, minStartedAt: number): Promise<SweepHeader | undefined> {
    const k = this.keys(account);
    const header = await this.redis.ccSweepTake(
      k.taken(group, cycle),
      k.part(group),
      String(minStartedAt),
      String(this.ttl)
    );
    return header ? (JSON.parse(header) as SweepHeader) : undefined;
  }

  /** Chunks `from`..`from + count - 1` (from 0) of the partition the cycle took. */
  async chunks(account: string, group: string, cycle: number, from: number, count: number): Promise<string[]> {
    return this.redis.lrange(this.keys(account).taken(group, cycle), from + 1, from + count);
  }

  /** How many chunks the partition the cycle took holds; 0 when it has none (or is gone). */
  async chunkCount(account: string, group: string, cycle: number): Promise<number> {
    return Math.max(0, (await this.redis.llen(this.keys(account).taken(group, cycle))) - 1);
  }

  /** Drops the partition a cycle took (its fetch is over). */
  async dropTaken(account: string, group: string, cycle: number): Promise<void> {
    await this.redis.del(this.keys(account).taken(group, cycle));
  }

  private keys(account: string) {
    const base = `${this.prefix}:{sweep.${account.replace(/[^A-Za-z0-9_.-]/g, '.')}}:`;
    return {
      lock: `${base}lock`,
      state: `${base}state`,
      groups: `${base}groups`,
      build: (group: string) => `${base}build:${group}`,
      part: (group: string) => `${base}part:${group}`,
      taken: (group: string, cycle: number) => `${base}taken:${group}:${cycle}`,
    };
  }
}
