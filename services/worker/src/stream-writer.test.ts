import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { testRedis } from '@faregate/testing/env';
import { FrameStore } from '@faregate/queue/frame-store';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { StreamWriter } from './stream-writer.ts';

const REC = { account: 'acct_test', model: 'm', created: 0 };

let redis: Redis;
let store: FrameStore;
const { url, prefix } = testRedis();

beforeAll(() => {
  redis = createRedis(url);
  store = new FrameStore(redis, makeKeys(prefix));
});
afterAll(() => redis.disconnect());

describe('StreamWriter', () => {
  it('sends the first delta at once and coalesces what arrives while a write is in flight', async () => {
    const id = `req_sw${prefix}1`;
    await store.claim(id, 'o', 60_000, REC);
    const w = new StreamWriter(store, id, 'o', 60_000);
    w.push({ type: 'status', state: 'running' });
    for (let i = 0; i < 200; i++) w.text(`t${i} `);
    w.toolCall({ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '' } });
    w.toolCall({ index: 0, function: { arguments: '{"a"' } });
    w.toolCall({ index: 0, function: { arguments: ':1}' } });
    await w.flush();
    const frames = (await store.read(id, 0)).map((r) => JSON.parse(r));
    expect(frames[0].type).toBe('status');
    const text = frames
      .filter((f) => f.type === 'delta')
      .map((f) => f.text ?? '')
      .join('');
    expect(text).toBe(Array.from({ length: 200 }, (_, i) => `t${i} `).join(''));
    // 200 deltas written in far fewer Redis calls.
    expect(w.writes).toBeLessThan(10);
    const calls = frames.flatMap((f) => f.tool_calls ?? []);
    expect(calls).toEqual([
      { index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
    ]);
  });

  it('sends deferred opening frames with the first token, in one write that claims the job', async () => {
    const id = `req_sw${prefix}3`;
    const w = new StreamWriter(store, id, 'o', 60_000, undefined, REC);
    w.defer({ type: 'status', state: 'running' });
    expect(await store.read(id, 0)).toEqual([]);
    w.text('first');
    await w.flush();
    expect(w.writes).toBe(1);
    const frames = (await store.read(id, 0)).map((r) => JSON.parse(r));
    expect(frames.map((f) => f.type)).toEqual(['status', 'delta']);
    expect(await redis.hget(makeKeys(prefix).meta(id), 'owner')).toBe('o');

    // Without content, release() sends them on their own.
    const id2 = `req_sw${prefix}4`;
    const w2 = new StreamWriter(store, id2, 'o', 60_000, undefined, REC);
    w2.defer({ type: 'status', state: 'running' });
    w2.release();
    await w2.flush();
    expect((await store.read(id2, 0)).map((r) => JSON.parse(r).type)).toEqual(['status']);
  });

  it('surfaces a lost ownership as an error', async () => {
    const id = `req_sw${prefix}2`;
    await store.claim(id, 'a', 60_000, REC);
    const w = new StreamWriter(store, id, 'a', 60_000);
    await store.claim(id, 'b', 60_000, REC);
    w.text('x');
    await expect(w.flush()).rejects.toThrow(/NOTOWNER/);
  });
});
