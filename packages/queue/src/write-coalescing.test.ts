import { once } from 'node:events';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { testRedis } from '@faregate/testing/env';
import { createRedis } from './redis.ts';

const { url, prefix } = testRedis();
const opened: Redis[] = [];
const open = async (make: () => Redis = () => createRedis(url)) => {
  const r = make();
  opened.push(r);
  if (r.status !== 'ready') await once(r, 'ready');
  return r;
};
afterAll(() => {
  for (const r of opened) r.disconnect();
});

/** Counts the socket writes (syscall-level: `_write` for one chunk, `_writev` for a corked batch). */
function countWrites(redis: Redis): { writes: number } {
  const n = { writes: 0 };
  const s = redis.stream as unknown as {
    _write: (...a: unknown[]) => void;
    _writev: (...a: unknown[]) => void;
  };
  const w = s._write.bind(s);
  const wv = s._writev.bind(s);
  s._write = (...a) => {
    n.writes++;
    w(...a);
  };
  s._writev = (...a) => {
    n.writes++;
    wv(...a);
  };
  return n;
}

describe('write coalescing (Nagle for Redis commands)', () => {
  it('a command with nothing in flight leaves at once, uncorked', async () => {
    const redis = await open();
    const n = countWrites(redis);
    const reply = redis.ping();
    // Written synchronously, before any later turn of the event loop.
    expect(redis.stream.writableCorked).toBe(0);
    expect(n.writes).toBe(1);
    expect(await reply).toBe('PONG');
  });

  it('commands issued while others are in flight leave together, in order, in one write', async () => {
    const redis = await open();
    const key = `${prefix}:coalesce:n`;
    const n = countWrites(redis);
    const replies = Array.from({ length: 50 }, () => redis.incr(key));
    // The first went out alone; the other 49 wait for this turn's I/O callbacks.
    expect(n.writes).toBe(1);
    expect(redis.stream.writableCorked).toBe(1);
    expect(await Promise.all(replies)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(n.writes).toBe(2);
    await redis.del(key);
  });

  it('holds on a new socket after a reconnect, and on duplicates (how BullMQ opens its connections)', async () => {
    const redis = await open();
    redis.disconnect(true);
    await once(redis, 'ready');
    const dup = await open(() => redis.duplicate());
    for (const r of [redis, dup]) {
      const n = countWrites(r);
      const replies = Array.from({ length: 10 }, (_, i) => r.echo(String(i)));
      expect(r.stream.writableCorked).toBe(1);
      expect(await Promise.all(replies)).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
      expect(n.writes).toBe(2);
    }
  });
});
