/**
 * Connecting to Redis from one URL: a single server, or a Redis Cluster from a list of seed nodes.
 *
 *   redis://[[user]:password@]host[:port][/db]            one server (`rediss://` for TLS)
 *   redis-cluster://[[user]:password@]host[:port][,host[:port]…]   a Cluster, from any of its nodes
 *                                                          (`rediss-cluster://` for TLS); no db, a Cluster has one
 *
 * Ports default to 6379. A Cluster needs one reachable seed; the client learns the others (and which node holds
 * which hash slot) from it. Every key of a group, and each budget key, carries a hash tag, so the state store's
 * scripts and pipelines stay within one slot (see state/store.ts).
 */
import Redis, { Cluster, type RedisOptions } from 'ioredis';
import { textOr } from '../shared/settings';

/** A connection to one Redis server or to a Redis Cluster; the state store and the budgets take either. */
export type RedisClient = Redis | Cluster;

/** What a Redis URL names, without its secret. */
export interface RedisAddress {
  cluster: boolean;
  tls: boolean;
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
  /** The database of a single server. @default 0 */
  db?: number;
}

const SCHEMES: Record<string, { cluster: boolean; tls: boolean }> = {
  'redis:': { cluster: false, tls: false },
  'rediss:': { cluster: false, tls: true },
  'redis-cluster:': { cluster: true, tls: false },
  'rediss-cluster:': { cluster: true, tls: true },
};

/** The accepted forms, for error messages. */
export const REDIS_URL_FORMS = 'redis://host:port[/db], rediss://…, or redis-cluster://host:port,host:port,…';

/**
 * Reads a Redis URL (see the module's comment). Throws an Error saying what is wrong, never quoting the URL (it
 * may carry a password).
 */
export function parseRedisUrl(url: string): RedisAddress {
  const match = /^([a-z-]+:)\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?$/i.exec(url.trim());
  if (!match) throw new Error(`must be a Redis URL: ${REDIS_URL_FORMS}`);
  const [, rawScheme, userInfo, hostList, path] = match;
  const scheme = SCHEMES[rawScheme.toLowerCase()];
  if (!scheme) {
    throw new Error(`must use redis:, rediss:, redis-cluster: or rediss-cluster:, not ${rawScheme.toLowerCase()}`);
  }
  const nodes = hostList.split(',').map((node) => {
    const hostPort = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(node.trim());
    const port = Number(hostPort?.[2] ?? 6379);
    if (!hostPort || port < 1 || port > 65_535)
      throw new Error(`has a node that is not host[:port]: ${REDIS_URL_FORMS}`);
    return { host: hostPort[1].replace(/^\[|\]$/g, ''), port };
  });
  if (!scheme.cluster && nodes.length > 1) {
    throw new Error('lists several nodes: use redis-cluster:// (or rediss-cluster://) for a Redis Cluster');
  }
  const address: RedisAddress = { ...scheme, nodes };
  if (userInfo !== undefined) {
    const colon = userInfo.indexOf(':');
    const username = decodeURIComponent(colon < 0 ? '' : userInfo.slice(0, colon));
    const password = decodeURIComponent(colon < 0 ? userInfo : userInfo.slice(colon + 1));
    if (username) address.username = username;
    if (password) address.password = password;
  }
  const db = (path ?? '').replace(/^\//, '');
  if (db) {
    if (scheme.cluster) throw new Error('names a database: a Redis Cluster has only database 0, drop the /db');
    if (!/^\d+$/.test(db)) throw new Error('has a database that is not a number');
    address.db = Number(db);
  }
  return address;
}

/** The nodes of a Redis URL, without its credentials: for messages. */
export function describeRedis(url: string): string {
  try {
    const { cluster, nodes } = parseRedisUrl(url);
    const list = nodes.map(({ host, port }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`));
    return cluster ? `the Redis Cluster at ${list.join(',')}` : list[0];
  } catch {
    return 'an invalid Redis URL';
  }
}

/** A setting holding a Redis URL (any form above). @param fallback the default URL */
export function redisUrlSetting(fallback: string) {
  return textOr(fallback).superRefine((value, ctx) => {
    try {
      parseRedisUrl(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });
}

/**
 * An ioredis client for a Redis URL: `Redis` for one server, `Cluster` for a cluster. `options` apply to each
 * node's connection (`lazyConnect` to the client).
 */
export function connectRedis(url: string, options: RedisOptions = {}): RedisClient {
  const address = parseRedisUrl(url);
  const nodeOptions: RedisOptions = {
    maxRetriesPerRequest: 5,
    enableAutoPipelining: false,
    ...options,
    ...(address.username ? { username: address.username } : {}),
    ...(address.password ? { password: address.password } : {}),
    ...(address.tls ? { tls: {} } : {}),
  };
  if (!address.cluster) {
    const [{ host, port }] = address.nodes;
    return new Redis({ ...nodeOptions, host, port, db: address.db ?? 0 });
  }
  const { lazyConnect, ...redisOptions } = nodeOptions;
  return new Cluster(address.nodes, {
    lazyConnect,
    enableAutoPipelining: false,
    redisOptions,
    // A node that fails over, or slots that move, are retried after these pauses rather than failed at once.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 200,
  });
}

/**
 * Pages through the keys matching `match`: on every master of a Cluster (a SCAN sees one node only), on the
 * server otherwise. Keys may repeat.
 */
export async function* scanKeys(redis: RedisClient, match: string, count = 500): AsyncGenerator<string[]> {
  const nodes = redis.isCluster ? (redis as Cluster).nodes('master') : [redis as Redis];
  for (const node of nodes) {
    for await (const keys of node.scanStream({ match, count }) as AsyncIterable<string[]>) {
      if (keys.length) yield keys;
    }
  }
}
