import { toOpenAIUsage, zeroUsage } from '@faregate/contracts/chat';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { testRedis } from '@faregate/testing/env';
import { FrameStore, newLogCursor } from '@faregate/queue/frame-store';
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
  it("handing frames to a caller in process: content counts as the caller's at once; a failed hand-over, even of a status frame, ends that caller for good", async () => {
    // Frames are handed over only once the connection is up (a write queued for it has not left).
    await redis.ping();
    const keys = makeKeys(prefix);
    const channel = keys.replyChannel('sw-local');
    const local: string[] = [];
    const here = new FrameStore(redis, keys, { channel, deliver: (m) => local.push(m) });
    const opened = (id: string) =>
      new StreamWriter(here, id, 'o', 60_000, channel, REC, { cursor: newLogCursor() });

    // Content handed over: the caller has it before the write's answer (a failure after it is final).
    const id = `req_sw${prefix}handed`;
    const w = opened(id);
    w.text('hello');
    expect(w.storedContent).toBe(true);
    expect(local.map((m) => JSON.parse(m).type)).toEqual(['delta']);
    await w.flush();

    // A status frame handed over whose write is refused: the caller was ended with an error, so no
    // other attempt may run for it (storedContent), though no content was handed.
    const taken = `req_sw${prefix}taken`;
    await store.append(taken, [{ type: 'status', state: 'queued' }], { owner: '', ttlMs: 60_000 });
    const lost = opened(taken);
    local.length = 0;
    lost.push({ type: 'status', state: 'running' });
    expect(lost.storedContent).toBe(false);
    await expect(lost.flush()).rejects.toThrow(/^NOTOWNER/);
    expect(lost.storedContent).toBe(true);
    expect(local.map((m) => JSON.parse(m).type)).toEqual(['status', 'error']);
  });

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

  it("puts the prompt's counts told before the answer on the first delta only; told later, nowhere", async () => {
    const id = `req_sw${prefix}prompt`;
    await store.claim(id, 'o', 60_000, REC);
    const w = new StreamWriter(store, id, 'o', 60_000);
    const counts = (n: number) => toOpenAIUsage({ ...zeroUsage(), inputTokens: n });
    w.prompt(counts(12));
    w.text('a');
    await w.flush();
    w.prompt(counts(99));
    w.text('b');
    await w.flush();
    const deltas = (await store.read(id, 0)).map((r) => JSON.parse(r)).filter((f) => f.type === 'delta');
    expect(deltas.map((d) => d.prompt?.prompt_tokens)).toEqual([12, undefined]);
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

  describe('with logprobs', () => {
    const lp = (token: string) => ({ token, logprob: -0.5, bytes: null, top_logprobs: [] });
    type Frame = {
      type: string;
      choice?: number;
      text?: string;
      logprobs?: { content?: { token: string }[] };
    };
    const deltas = async (id: string): Promise<Frame[]> =>
      (await store.read(id, 0)).map((r) => JSON.parse(r) as Frame).filter((f) => f.type === 'delta');
    /** Every delta carries its text with exactly that text's logprobs, and nothing else. */
    const expectPaired = (frames: Frame[]) => {
      for (const f of frames) {
        expect(f.text).toBeTruthy();
        expect(f.logprobs?.content?.map((t) => t.token).join('')).toBe(f.text);
      }
    };

    it("sends a chunk's text with its logprobs, choice by choice, also while a write is in flight", async () => {
      const id = `req_sw${prefix}5`;
      const w = new StreamWriter(store, id, 'o', 60_000, undefined, REC, { logprobs: true });
      w.defer({ type: 'status', state: 'running' });
      // The adapter's order for one upstream chunk: the text, then its logprobs, synchronously.
      w.text('Lantern', 1);
      expect(w.writes).toBe(0);
      w.logprobs({ content: [lp('Lantern')] }, 1);
      expect(w.writes).toBe(1);
      // While that write is in flight, more chunks of both choices.
      for (const [t, c] of [
        [' quick', 0],
        [' brisk', 1],
        [' market.', 0],
      ] as const) {
        w.text(t, c);
        w.logprobs({ content: [lp(t)] }, c);
      }
      await w.flush();
      const frames = await deltas(id);
      expectPaired(frames);
      const text = (c: number) =>
        frames
          .filter((f) => (f.choice ?? 0) === c)
          .map((f) => f.text)
          .join('');
      expect(text(0)).toBe(' quick market.');
      expect(text(1)).toBe('Lantern brisk');
    });

    it('holds content no longer than the current turn when no logprobs come', async () => {
      const id = `req_sw${prefix}6`;
      await store.claim(id, 'o', 60_000, REC);
      const w = new StreamWriter(store, id, 'o', 60_000, undefined, undefined, { logprobs: true });
      w.text('no logprobs here');
      expect(w.writes).toBe(0);
      await Promise.resolve();
      expect(w.writes).toBe(1);
      await w.flush();
      expect((await deltas(id)).map((f) => f.text)).toEqual(['no logprobs here']);
    });

    it('never delays the first text of a stream without logprobs, and learns from the first logprobs', async () => {
      const id = `req_sw${prefix}7`;
      await store.claim(id, 'o', 60_000, REC);
      const w = new StreamWriter(store, id, 'o', 60_000);
      w.text('at once');
      expect(w.writes).toBe(1);
      await w.flush();
      // Not told, the writer holds content once logprobs show up.
      w.logprobs({ content: [lp('x')] });
      await w.flush();
      w.text('a');
      w.logprobs({ content: [lp('a')] });
      await w.flush();
      const frames = await deltas(id);
      expect(frames.at(-1)).toMatchObject({ text: 'a', logprobs: { content: [{ token: 'a' }] } });
    });
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
