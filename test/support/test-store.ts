/** A state store on the test Redis with a key prefix of the test file's own, its keys deleted after the file. */
import { StateStore, type StateStoreOptions } from '../../state/store';
import { testRedis, uniqueName } from '../setup/stack';

export function testStore(name: string, options: Omit<StateStoreOptions, 'prefix'> = {}) {
  const redis = testRedis();
  const prefix = uniqueName(name);
  const store = new StateStore(redis, { ...options, prefix });
  afterAll(async () => {
    for await (const keys of redis.scanStream({ match: `${prefix}:*` }) as AsyncIterable<string[]>)
      if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });
  return { redis, store, prefix };
}
