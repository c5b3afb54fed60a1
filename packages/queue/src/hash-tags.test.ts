import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { JobData } from '@faregate/contracts/jobs';
import { testRedis } from '@faregate/testing/env';
import { FastLane } from './fast-lane.ts';
import { FrameStore } from './frame-store.ts';
import { makeKeys, usagePartition } from './keys.ts';
import { ProviderQueues } from './queues.ts';
import { createRedis } from './redis.ts';
import { sampleCompletion as completion } from '@faregate/testing/completion';

/**
 * DESIGN.md, "Cluster-safe keys": every key a script touches together shares a hash tag. This runs
 * the package's scripts on a real client that records the keys of each script call, and checks them
 * the way Redis Cluster picks a slot (frame-store.append included: a job's keys and its usage
 * partition's stream share a tag).
 */

/** The part of a key Redis Cluster hashes: the first non-empty `{…}`, else the whole key. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
const calls: { command: string; keys: string[] }[] = [];

beforeAll(() => {
  redis = createRedis(url);
  // Record the KEYS of every script defined on this client (the scripts still run on Redis).
  const define = redis.defineCommand.bind(redis);
  redis.defineCommand = (name, def) => {
    define(name, def);
    const client = redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const run = client[name] as (...a: unknown[]) => Promise<unknown>;
    client[name] = (...args: unknown[]) => {
      calls.push({ command: name, keys: args.slice(0, def.numberOfKeys ?? 0) as string[] });
      return run.apply(redis, args);
    };
  };
});
afterAll(() => redis.disconnect());

describe('hash tags of script keys', () => {
  it('each script call of the frame store and the fast lane keeps its keys in one slot', async () => {
    const id = `req_tags${prefix}`;
    const store = new FrameStore(redis, keys);
    await store.claim(id, 'a', 60_000, { account: 'acct', model: 'm', created: 0 });
    await store.append(id, [{ type: 'delta', text: 'x' }], { owner: 'a', ttlMs: 60_000 });
    await store.append(id, [{ type: 'done', result: completion() }], {
      owner: 'a',
      ttlMs: 60_000,
      state: 'done',
      usage: { id: 'u' },
    });

    const lane = new FastLane(redis, keys, 'tags', { graceMs: 60_000, leaseMs: 60_000 });
    const job = { id, plan: [] } as unknown as JobData;
    await lane.push(job);
    await lane.take([id]);
    await lane.renew([id]);
    await lane.sweep();
    await lane.finish(id);

    const scripts = new Set(calls.map((c) => c.command.split(':')[1]));
    expect([...scripts].sort()).toEqual([
      'fast-lane.push',
      'fast-lane.renew',
      'fast-lane.sweep',
      'fast-lane.take',
      'frame-store.append',
      'frame-store.claim',
    ]);
    const append = calls.find((c) => c.command.startsWith('lua:frame-store.append:'));
    expect(append?.keys).toContain(keys.usage(usagePartition(id)));
    for (const call of calls) {
      const own = call.keys;
      expect(new Set(own.map(hashTag)).size, `${call.command} ${own.join(' ')}`).toBe(1);
      expect(
        own.every((k) => k.includes('{')),
        `${call.command} keys carry a hash tag`,
      ).toBe(true);
    }
    await redis.del(keys.frames(id), keys.meta(id), keys.usage(usagePartition(id)));
  });

  it("keeps every key of a pool's BullMQ queue in one slot (its scripts touch several)", async () => {
    const queues = new ProviderQueues(redis, keys);
    const job = {
      id: `req_q${prefix}`,
      hop: 0,
      plan: [{ provider: 'tags', model: 'm' }],
    } as unknown as JobData;
    await queues.add(job, 3, { delay: 60_000 });
    await queues.add({ ...job, id: `req_r${prefix}` }, 3);
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*llm-tags*`, 'COUNT', 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    expect(found.length).toBeGreaterThan(2);
    expect(new Set(found.map(hashTag))).toEqual(new Set(['llm-tags']));
    await queues.get('tags').obliterate({ force: true });
    await queues.close();
  });
});
