/**
 * Every test of the state store again, on a real 3-master Redis Cluster (ioredis `Cluster`): each Lua script,
 * multi-key command and pipeline of the store must keep to one hash slot (the group's hash tag), or Redis answers
 * CROSSSLOT and these fail.
 */
import '../support/stores-on-cluster';
import './store.test';
import { testStore } from '../support/test-store';

const probe = testStore('store-cluster-probe');

test('the stores of this file are on the Redis Cluster, where a script across two groups is refused', async () => {
  expect(probe.redis.isCluster).toBe(true);
  // What the store must never do: one command over two groups' keys (two hash tags, two slots).
  await expect(probe.redis.del(`${probe.prefix}:{a}:x`, `${probe.prefix}:{b}:x`)).rejects.toThrow(/CROSSSLOT|slot/i);
});
