/** KITE_REDIS_URL: one server or a Redis Cluster's seed list, read without ever quoting the URL's password. */
import { describeRedis, parseRedisUrl } from '../../state/redis';

test('a single server, with or without credentials, TLS and database', () => {
  expect(parseRedisUrl('redis://127.0.0.1:6379')).toEqual({
    cluster: false,
    tls: false,
    nodes: [{ host: '127.0.0.1', port: 6379 }],
  });
  expect(parseRedisUrl('rediss://kite:p%40ss@redis.example.com/2')).toEqual({
    cluster: false,
    tls: true,
    nodes: [{ host: 'redis.example.com', port: 6379 }],
    username: 'kite',
    password: 'p@ss',
    db: 2,
  });
  expect(parseRedisUrl('redis://:secret@[::1]:7000')).toMatchObject({
    nodes: [{ host: '::1', port: 7000 }],
    password: 'secret',
  });
});

test('a Cluster from seed nodes: one is enough, more are tried in turn', () => {
  expect(parseRedisUrl('redis-cluster://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3')).toEqual({
    cluster: true,
    tls: false,
    nodes: [
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
      { host: '10.0.0.3', port: 6379 },
    ],
  });
  expect(parseRedisUrl('rediss-cluster://:pw@cfg.cache.amazonaws.com:6379')).toMatchObject({
    cluster: true,
    tls: true,
    password: 'pw',
    nodes: [{ host: 'cfg.cache.amazonaws.com', port: 6379 }],
  });
  expect(describeRedis('redis-cluster://:pw@a:1,b:2')).toBe('the Redis Cluster at a:1,b:2');
});

test.each([
  ['http://127.0.0.1:6379', /must use redis:, rediss:, redis-cluster: or rediss-cluster:/],
  ['redis://a:1,b:2', /use redis-cluster:\/\//],
  ['redis-cluster://a:1,b:2/3', /a Redis Cluster has only database 0/],
  ['redis-cluster://a:1,,b:2', /not host\[:port\]/],
  ['redis://:hunter2@a:99999', /not host\[:port\]/],
  ['redis://a/x', /database that is not a number/],
  ['not a url', /must be a Redis URL/],
])('%s is refused with a reason, never with its password', (url, reason) => {
  let message = '';
  try {
    parseRedisUrl(url);
  } catch (err) {
    message = (err as Error).message;
  }
  expect(message).toMatch(reason);
  expect(message).not.toMatch(/hunter2/);
});
