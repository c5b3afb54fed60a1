import { setTimeout as sleep } from 'node:timers/promises';
import { createRedis } from '@faregate/queue/redis';
import { testRedis, until } from '@faregate/testing/env';
import pino from 'pino';
import { afterAll, expect, it, vi } from 'vitest';
import { StreamGroup, type StreamGroupOptions } from './stream-group.ts';

const r = testRedis();
const redis = createRedis(r.url, { blocking: true, name: 'fg-stream-group-test' });
afterAll(async () => {
  const found = await redis.keys(`${r.prefix}:*`);
  if (found.length > 0) await redis.del(...found);
  redis.disconnect();
});

/** One of this file's connections is blocked in XREADGROUP (other test files use other names). */
const blockedRead = async () =>
  String(await redis.client('LIST'))
    .split('\n')
    .some((l) => l.includes('name=fg-stream-group-test ') && l.includes('cmd=xreadgroup'));

const opts: Omit<StreamGroupOptions, 'consumer'> = {
  batchSize: 10,
  batchMs: 10,
  claimIdleMs: 30_000,
  claimEveryMs: 60_000,
  backoffMinMs: 10,
  backoffMaxMs: 100,
  statusEveryMs: 60_000,
  idleBlockMs: 30_000,
};

it('an idle group waits on its streams instead of polling: a new entry is handled at once, stop() ends the wait', async () => {
  const keys = [`${r.prefix}:{s0}:s`, `${r.prefix}:{s1}:s`];
  const seen: string[] = [];
  let arrived = Promise.withResolvers<void>();
  const g = new StreamGroup(
    { redis, log: pino({ level: 'silent' }) },
    { keys, group: 'g', deadLetters: `${r.prefix}:dead` },
    { consumer: 'c', ...opts },
    {
      process: async (entries) => {
        for (const [, fields] of entries) seen.push(fields?.[1] ?? '');
        arrived.resolve();
        return entries;
      },
    },
  );
  const calls = vi.spyOn(redis, 'call');
  const polls = () => calls.mock.calls.filter((c) => c[0] === 'XREADGROUP').length;
  await g.start();
  await g.caughtUp();

  // Idle: one read is blocked on a connection of its own (the command connection stays free).
  await until(blockedRead, { what: 'a blocked XREADGROUP' });
  const idleFrom = polls();
  // An observation window, not a wait for work: polling every batchMs would read ~20 times in it.
  await sleep(200);
  expect(polls() - idleFrom).toBe(0);

  const t0 = Date.now();
  await redis.xadd(keys[1]!, '*', 'e', 'one');
  await arrived.promise;
  // Woken by the entry, not by the end of the 30 s wait.
  expect(Date.now() - t0).toBeLessThan(5_000);
  expect(seen).toEqual(['one']);
  await until(async () => Number(((await redis.xpending(keys[1]!, 'g')) as [number])[0]) === 0, {
    what: 'the entry acked',
  });

  // Busy again: entries arriving together are read in one batch as before.
  arrived = Promise.withResolvers<void>();
  await Promise.all([redis.xadd(keys[0]!, '*', 'e', 'two'), redis.xadd(keys[1]!, '*', 'e', 'three')]);
  await until(() => seen.length === 3, { what: 'both entries handled' });
  expect([...seen].sort()).toEqual(['one', 'three', 'two']);

  // stop() while a read is blocked returns at once, not after idleBlockMs.
  await until(blockedRead, { what: 'a blocked XREADGROUP again' });
  const s0 = Date.now();
  await g.stop();
  expect(Date.now() - s0).toBeLessThan(5_000);
});
