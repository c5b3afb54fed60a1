import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameStore } from '@faregate/queue/frame-store';
import { makeKeys } from '@faregate/queue/keys';
import { LiveHub } from '@faregate/queue/live-hub';
import { createRedis } from '@faregate/queue/redis';
import { testRedis, until } from '@faregate/testing/env';
import { LineReplies, SWEEP_MS } from './line-replies.ts';

/**
 * A batch line's terminal frame reaching the driver on its process's reply channel, written by the
 * frame store's script as a worker writes it, against a real Redis.
 */
const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
const channel = keys.replyChannel('line-replies-test');
let redis: Redis;
let sub: Redis;
let store: FrameStore;
let hub: LiveHub;
let n = 0;
const job = () => `req_linereplies${++n}`;

beforeAll(async () => {
  redis = createRedis(url);
  sub = createRedis(url);
  store = new FrameStore(redis, keys);
  hub = new LiveHub(sub, keys);
  await hub.listenReplies(channel);
});
afterAll(() => {
  redis.disconnect();
  sub.disconnect();
});

/** What a worker writes when a line's job ends (or, `running`, a frame that does not end it). */
const write = (id: string, type: 'done' | 'error' | 'running') =>
  store.append(
    id,
    [
      type === 'done'
        ? { type: 'done', result: { id } }
        : type === 'error'
          ? { type: 'error', status: 400, error: { code: 'invalid_request_error', message: 'no' } }
          : { type: 'status', state: 'running' },
    ] as never,
    { owner: '', ttlMs: 60_000, replyTo: channel },
  );

/** A batch just swept (nothing open) whose lines 1 to 3 are then fed and watched: their job ids. */
function watchThree(r: LineReplies, batch: string): [string, string, string] {
  const ids: [string, string, string] = [job(), job(), job()];
  r.swept(batch, []);
  for (const [i, id] of ids.entries()) r.watch(batch, id, i + 1);
  return ids;
}

describe('LineReplies', () => {
  it('keeps the terminal frame of each line watched, and counts the lines still open', async () => {
    const r = new LineReplies(hub);
    const [a, b] = watchThree(r, 'batch_x');
    await write(a, 'running');
    await write(a, 'done');
    await write(b, 'error');
    // The arrival handler runs as each frame comes: one line left open once both came.
    await until(() => r.openCount('batch_x') === 1);
    const all = r.take('batch_x') ?? new Map();
    expect([...all.values()].map((x) => x.line).sort()).toEqual([1, 2]);
    expect(all.get(a)?.raw).toContain('"type":"done"');
    expect(all.get(b)?.raw).toContain('"type":"error"');
    expect(r.openCount('batch_x')).toBe(1);
    // Taken once: the next take has nothing new.
    expect(r.take('batch_x')?.size).toBe(0);
  });

  it('asks for a full collect before the first sweep, once SWEEP_MS passed, and when no line is left open', async () => {
    const r = new LineReplies(hub);
    const a = job();
    r.watch('batch_y', a, 1);
    // Fed, never swept here: every line in flight must be read.
    expect(r.take('batch_y')).toBeUndefined();
    const t = Date.now();
    r.swept('batch_y', [{ line: 1, job: a }], t);
    expect(r.take('batch_y', t + 10)?.size).toBe(0);
    expect(r.take('batch_y', t + SWEEP_MS)).toBeUndefined();
    r.swept('batch_y', [{ line: 1, job: a }], t + SWEEP_MS);
    await write(a, 'done');
    await until(() => r.openCount('batch_y') === 0);
    // The last open line ended: the batch is concluded from a full collect only.
    expect(r.take('batch_y', t + SWEEP_MS + 10)).toBeUndefined();
  });

  it('after a sweep drops the frames of lines it recorded, and watches open lines it did not feed', async () => {
    const r = new LineReplies(hub);
    const [a, b, c] = [job(), job(), job()];
    r.swept('batch_z', []);
    r.watch('batch_z', a, 1);
    await write(a, 'done');
    await until(() => r.openCount('batch_z') === 0);
    // A full collect ended line 1 itself; lines 2 and 3 are open (fed by a process that died).
    r.swept('batch_z', [
      { line: 2, job: b },
      { line: 3, job: c },
    ]);
    expect(r.openCount('batch_z')).toBe(2);
    await write(b, 'done');
    await until(() => r.openCount('batch_z') === 1);
    expect([...(r.take('batch_z')?.keys() ?? [])]).toEqual([b]);
  });

  it('keeps nothing of a line unwatched or of a batch dropped', async () => {
    const r = new LineReplies(hub);
    const [a, b, c] = watchThree(r, 'batch_w');
    r.unwatch('batch_w', a);
    await write(a, 'done');
    await write(b, 'done');
    await until(() => r.openCount('batch_w') === 1);
    expect([...(r.take('batch_w')?.keys() ?? [])]).toEqual([b]);
    r.drop('batch_w');
    await write(c, 'done');
    // Frames come in order on the channel: once a later one was handled, c's was too.
    const d = job();
    const seen = new Promise<void>((resolve) => hub.onReply(d, () => resolve()));
    await write(d, 'done');
    await seen;
    // Dropped: a take starts from nothing (a full collect), and the frame of c was not kept.
    expect(r.take('batch_w')).toBeUndefined();
    r.swept('batch_w', []);
    expect(r.take('batch_w')).toBeUndefined(); // nothing open
    expect(r.openCount('batch_w')).toBe(0);
  });
});
