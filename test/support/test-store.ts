/**
 * A state store on the test Redis with a key prefix of the test file's own, its keys deleted after the file. A
 * file that imports `./stores-on-cluster` first gets its stores on the test Redis Cluster instead.
 */
import { scanKeys, type RedisClient } from '../../state/redis';
import { StateStore, type StateStoreOptions } from '../../state/store';
import { testRedis, testRedisCluster, uniqueName } from '../setup/stack';

let onCluster = false;

/** From now on, this file's test stores live on the test Redis Cluster (see stores-on-cluster.ts). */
export function putTestStoresOnCluster(): void {
  onCluster = true;
}

export function testStore(name: string, options: Omit<StateStoreOptions, 'prefix'> = {}) {
  const redis: RedisClient = onCluster ? testRedisCluster() : testRedis();
  const prefix = uniqueName(name);
  const store = new StateStore(redis, { ...options, prefix });
  afterAll(async () => {
    // One key per UNLINK: the prefix spans groups, hence Cluster slots.
    for await (const keys of scanKeys(redis, `${prefix}:*`)) await Promise.all(keys.map((key) => redis.unlink(key)));
    redis.disconnect();
  });
  return { redis, store, prefix };
}
