import { afterAll, describe, expect, it } from 'vitest';
import { testRedis } from '@faregate/testing/env';
import { createRedis, getEach, hashSlot, parseClusterNodes, sendEach } from './redis.ts';

const { url, prefix } = testRedis();
const redis = createRedis(url);
afterAll(() => redis.disconnect());

describe('redis helpers', () => {
  it('hashSlot is the slot Redis Cluster gives a key (CLUSTER KEYSLOT), by its hash tag', () => {
    // Values from `CLUSTER KEYSLOT` (also checked against a live cluster in test/redis-cluster.test.ts).
    expect(hashSlot('foo')).toBe(12182);
    expect(hashSlot('bar')).toBe(5061);
    expect(hashSlot('{user1000}.following')).toBe(hashSlot('user1000'));
    expect(hashSlot('fg:{u3}:req_1:f')).toBe(hashSlot('other:{u3}:req_2:m'));
    // An empty tag does not count: the whole key is hashed.
    expect(hashSlot('a{}b')).not.toBe(hashSlot(''));
  });

  it('sendEach answers in order, one pipeline on one server; getEach is MGET there', async () => {
    const k = (n: number) => `${prefix}:helpers:{t${n}}`;
    await redis.set(k(1), 'one');
    await redis.set(k(3), 'three');
    expect(await getEach(redis, [k(1), k(2), k(3)])).toEqual(['one', null, 'three']);
    expect(
      await sendEach(redis, [
        ['get', k(3)],
        ['exists', k(2)],
        ['strlen', k(1)],
      ]),
    ).toEqual(['three', 0, 3]);
    await expect(sendEach(redis, [['incr', k(1)]])).rejects.toThrow(/not an integer/);
    await redis.del(k(1), k(3));
  });

  it('REDIS_CLUSTER_NODES is host:port[,host:port…]', () => {
    expect(parseClusterNodes('a:7000, 10.0.0.2:7001')).toEqual([
      { host: 'a', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
    ]);
    expect(() => parseClusterNodes('a:7000,b')).toThrow(/host:port/);
  });
});
