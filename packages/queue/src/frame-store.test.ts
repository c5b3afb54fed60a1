import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { testRedis, until } from '@faregate/testing/env';
import { FrameStore, isStoredNotice, newLogCursor, seqOf } from './frame-store.ts';
import { followJob, followLog } from './follow.ts';
import { makeKeys, usagePartition } from './keys.ts';
import { LiveHub } from './live-hub.ts';
import { createRedis } from './redis.ts';
import { sampleCompletion as completion } from '@faregate/testing/completion';

const REC = { account: 'acct_test', model: 'm', created: 0 };

let redis: Redis;
let sub: Redis;
let store: FrameStore;
let hub: LiveHub;
const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let n = 0;
const jobId = () => `req_test${prefix}${++n}`;

beforeAll(async () => {
  redis = createRedis(url);
  sub = createRedis(url, { blocking: true });
  store = new FrameStore(redis, keys);
  hub = new LiveHub(sub, keys);
  // Connected: a store hands frames over before the write's answer only once its writes can leave.
  await redis.ping();
});
afterAll(() => {
  redis.disconnect();
  sub.disconnect();
});

/** A store whose own reply channel collects what it hands over in process, and a speculative attempt's write options with a fresh cursor. */
function cursorWriter() {
  const id = jobId();
  const channel = keys.replyChannel(`cursor-${n}`);
  const local: string[] = [];
  const localStore = new FrameStore(redis, keys, { channel, deliver: (m) => local.push(m) });
  const cursor = newLogCursor();
  return {
    id,
    channel,
    local,
    localStore,
    cursor,
    opts: { owner: 'a', ttlMs: 60_000, replyTo: channel, claim: REC, cursor },
  };
}

describe('FrameStore', () => {
  it('assigns gapless sequence numbers in Redis, whoever writes', async () => {
    const id = jobId();
    await store.claim(id, 'a', 60_000, REC);
    await store.append(
      id,
      [
        { type: 'delta', text: 'a' },
        { type: 'delta', text: 'b' },
      ],
      { owner: 'a', ttlMs: 60_000 },
    );
    await store.append(id, [{ type: 'delta', text: 'c' }], { owner: 'a', ttlMs: 60_000 });
    const frames = (await store.read(id, 0)).map((r) => JSON.parse(r));
    expect(frames.map((f) => f.seq)).toEqual([1, 2, 3]);
    expect(frames.map((f) => f.text).join('')).toBe('abc');
    expect(frames[0]).toMatchObject({ v: 1, job: id, type: 'delta' });
    expect(frames.map((f) => seqOf(JSON.stringify(f)))).toEqual([1, 2, 3]);
  });

  it('frames for its own reply channel reach it in process, exactly as published, and not through Redis', async () => {
    const id = jobId();
    const channel = keys.replyChannel(`local-${n}`);
    const local: string[] = [];
    const localStore = new FrameStore(redis, keys, { channel, deliver: (m) => local.push(m) });
    const published: string[] = [];
    const onReply = (ch: string, m: string) => {
      if (ch === channel) published.push(m);
    };
    const viaLive: string[] = [];
    const unlisten = await hub.listen(id, (m) => viaLive.push(m));
    sub.on('message', onReply);
    await sub.subscribe(channel);
    try {
      await localStore.claim(id, 'a', 60_000, REC);
      await localStore.append(
        id,
        [
          { type: 'delta', text: 'a' },
          { type: 'delta', text: 'b' },
        ],
        {
          owner: 'a',
          ttlMs: 60_000,
          replyTo: channel,
        },
      );
      await localStore.append(id, [{ type: 'done', result: completion('ab') }], {
        owner: 'a',
        ttlMs: 60_000,
        replyTo: channel,
        state: 'done',
      });
      // Another process's channel still gets them through Redis.
      await localStore.append(id, [], { owner: 'a', ttlMs: 60_000, replyTo: `${channel}-other` });
      await until(() => (viaLive.length === 3 ? true : undefined));
      // The same messages the job's live channel carries, in order.
      expect(local).toEqual(viaLive);
      expect(local.map(seqOf)).toEqual([1, 2, 3]);
      expect(await store.read(id, 0)).toEqual(local);
      expect(published).toEqual([]);
    } finally {
      unlisten();
      sub.off('message', onReply);
      await sub.unsubscribe(channel);
    }
  });

  it('with a cursor, hands its frames to its own channel as the write leaves, numbered as the write numbers them', async () => {
    const { id, local, localStore, cursor, opts } = cursorWriter();
    // The first write claims the job (a speculative attempt): its frames are the caller's before
    // Redis has answered (append has not been awaited yet).
    const first = localStore.append(id, [{ type: 'delta', text: 'a' }], opts);
    expect(local.map(seqOf)).toEqual([1]);
    expect(await first).toBe(1);
    const done = localStore.append(
      id,
      [
        { type: 'usage', usage: completion('ab').usage },
        { type: 'done', result: completion('ab') },
      ],
      { ...opts, state: 'completed', usage: { id: `u-${id}` } },
    );
    expect(local.map(seqOf)).toEqual([1, 2, 3]);
    expect(await done).toBe(3);
    expect(cursor).toEqual({ last: 3, broken: false });
    // What the caller was handed is what the log holds, byte for byte.
    expect(await store.read(id, 0)).toEqual(local);
  });

  it('with a cursor, refuses a write unless the log ends where the cursor says, and ends the caller it handed frames to', async () => {
    const { id, channel, local, localStore, cursor, opts } = cursorWriter();
    // Something else wrote the job's log first (the attempt is no longer its only writer).
    await store.append(id, [{ type: 'status', state: 'running' }], { owner: '', ttlMs: 60_000 });
    await expect(localStore.append(id, [{ type: 'delta', text: 'a' }], opts)).rejects.toThrow(/^NOTOWNER/);
    // Nothing of the refused write is in the log: no frame, no claim.
    expect((await store.read(id, 0)).map((r) => JSON.parse(r).type)).toEqual(['status']);
    expect(await redis.hget(keys.meta(id), 'owner')).toBeNull();
    // The caller had the delta: it is ended at once, by an error right after it.
    expect(local.map(seqOf)).toEqual([1, 2]);
    expect(JSON.parse(local[1] ?? '')).toMatchObject({
      type: 'error',
      error: { code: 'upstream_error', message: expect.stringMatching(/could not be recorded/) },
    });
    expect(cursor.broken).toBe(true);
    // Later writes go as without a cursor: numbered by the log, after the write, and fenced as ever.
    await localStore.append(id, [{ type: 'delta', text: 'b' }], { ...opts, owner: '' });
    expect(local.map(seqOf)).toEqual([1, 2, 2]);

    // A terminal frame handed over and then refused: the caller has its end, nothing is added.
    const id2 = jobId();
    const local2: string[] = [];
    const store2 = new FrameStore(redis, keys, { channel, deliver: (m) => local2.push(m) });
    await store.append(id2, [{ type: 'status', state: 'running' }], { owner: '', ttlMs: 60_000 });
    await expect(
      store2.append(id2, [{ type: 'done', result: completion() }], { ...opts, cursor: newLogCursor() }),
    ).rejects.toThrow(/^NOTOWNER/);
    expect(local2.map((m) => JSON.parse(m).type)).toEqual(['done']);
  });

  it('fences a stale attempt once another attempt has claimed the job', async () => {
    const id = jobId();
    await store.claim(id, 'old', 60_000, REC);
    await store.append(id, [{ type: 'delta', text: 'x' }], { owner: 'old', ttlMs: 60_000 });
    await store.claim(id, 'new', 60_000, REC);
    await expect(
      store.append(id, [{ type: 'delta', text: 'zombie' }], { owner: 'old', ttlMs: 60_000 }),
    ).rejects.toThrow(/NOTOWNER/);
    await store.append(id, [{ type: 'delta', text: 'y' }], { owner: 'new', ttlMs: 60_000 });
    expect((await store.read(id, 0)).map((r) => JSON.parse(r).text)).toEqual(['x', 'y']);
  });

  it('writes the terminal frame, state and usage event together; a later claim sees the job ended', async () => {
    const id = jobId();
    await store.claim(id, 'w', 60_000, REC);
    const usage = keys.usage(usagePartition(id));
    const before = await redis.xlen(usage);
    await store.append(id, [{ type: 'done', result: completion() }], {
      owner: 'w',
      ttlMs: 60_000,
      state: 'completed',
      usage: { id: 'u1' },
    });
    expect(await redis.xlen(usage)).toBe(before + 1);
    expect(await redis.hget(keys.meta(id), 'state')).toBe('completed');
    expect(await store.claim(id, 'again', 60_000, REC)).toMatchObject({ terminal: true });
  });

  it('lets an attempt that did not claim first claim with its first write, unless it lost the job', async () => {
    const id = jobId();
    const rec = { account: 'acct_x', model: 'openai/gpt-4o-mini', created: 1_700_000_000_000 };
    await store.append(id, [{ type: 'delta', text: 'a' }], { owner: 'a', ttlMs: 60_000, claim: rec });
    expect(await redis.hgetall(keys.meta(id))).toMatchObject({
      owner: 'a',
      state: 'running',
      account: 'acct_x',
      model: 'openai/gpt-4o-mini',
      created: '1700000000000',
    });
    // Owned by `a` now: another unclaimed attempt cannot take it, and a re-run's claim fences `a` out.
    await expect(
      store.append(id, [{ type: 'delta', text: 'x' }], { owner: 'b', ttlMs: 60_000, claim: rec }),
    ).rejects.toThrow(/NOTOWNER/);
    await store.claim(id, 'c', 60_000, rec);
    await expect(
      store.append(id, [{ type: 'delta', text: 'y' }], { owner: 'a', ttlMs: 60_000, claim: rec }),
    ).rejects.toThrow(/NOTOWNER/);

    // A job that ended without an owner (written unfenced, as the safety net does) is not claimed by a late write.
    const ended = jobId();
    await store.append(ended, [{ type: 'done', result: completion() }], {
      owner: '',
      ttlMs: 60_000,
    });
    await expect(
      store.append(ended, [{ type: 'delta', text: 'late' }], { owner: 'a', ttlMs: 60_000, claim: rec }),
    ).rejects.toThrow(/NOTOWNER/);
    expect(await store.read(ended, 0)).toHaveLength(1);
  });

  it('every terminal type ends a job for a later claim and an unowned first write: done, error, embeddings', async () => {
    const rec = { account: 'acct_x', model: 'm', created: 1 };
    const big = { object: 'list', data: [{ object: 'embedding', index: 0, embedding: 'A'.repeat(200_000) }] };
    const terminals = [
      { type: 'done', result: completion() },
      { type: 'error', status: 500, error: { code: 'internal_error', message: 'x' } },
      { type: 'embeddings', result: { ...big, model: 'e', usage: { prompt_tokens: 1, total_tokens: 1 } } },
    ] as const;
    for (const frame of terminals) {
      const id = jobId();
      await store.append(id, [frame as never], { owner: '', ttlMs: 60_000 });
      expect(await store.claim(id, 'late', 60_000, REC)).toMatchObject({ terminal: true });
      await expect(
        store.append(id, [{ type: 'delta', text: 'late' }], { owner: 'b', ttlMs: 60_000, claim: rec }),
      ).rejects.toThrow(/NOTOWNER/);
      expect(await store.read(id, 0)).toHaveLength(1);
    }
    // Written with its type first whatever order its fields came in.
    const late = jobId();
    await store.append(
      late,
      [{ status: 500, error: { code: 'internal_error', message: 'x' }, type: 'error' } as never],
      {
        owner: '',
        ttlMs: 60_000,
      },
    );
    expect(await store.claim(late, 'w', 60_000, REC)).toMatchObject({ terminal: true });
    // A delta whose text reads like a terminal frame is not one (its quotes are escaped).
    const id = jobId();
    await store.append(id, [{ type: 'delta', text: '"seq":1,"type":"done"' }], { owner: '', ttlMs: 60_000 });
    expect(await store.claim(id, 'w', 60_000, REC)).toMatchObject({ terminal: false, lastSeq: 1 });
  });

  it('refuses a claim by a copy of the job at an earlier hop than it went on to (a fallback, or moved off a lost pool)', async () => {
    // Moved to hop 1 before any attempt: hop 0's copy may not run, hop 1 may.
    const moved = jobId();
    await store.moved(moved, 1, 60_000);
    expect(await store.claim(moved, 'w1:0:1', 60_000, REC)).toMatchObject({
      terminal: false,
      superseded: true,
    });
    const next = await store.claim(moved, 'w2:1:1', 60_000, REC);
    expect(next.superseded).toBeUndefined();
    expect(await redis.hget(keys.meta(moved), 'owner')).toBe('w2:1:1');
    // The mark only rises; a retry on the same hop and a later hop still claim.
    await store.moved(moved, 0, 60_000);
    expect((await store.claim(moved, 'w3:1:2', 60_000, REC)).superseded).toBeUndefined();
    expect((await store.claim(moved, 'w3:2:1', 60_000, REC)).superseded).toBeUndefined();
    expect(await store.claim(moved, 'w1:1:1', 60_000, REC)).toMatchObject({ superseded: true });
    expect(await redis.hget(keys.meta(moved), 'owner')).toBe('w3:2:1');
    expect(await redis.pttl(keys.meta(moved))).toBeGreaterThan(0);

    // A fallback without a mark: the owner's hop is ahead (a crashed hop 0 re-run after it queued hop 1).
    const fell = jobId();
    await store.claim(fell, 'w1:0:1', 60_000, REC);
    await store.claim(fell, 'w2:1:1', 60_000, REC);
    expect(await store.claim(fell, 'w1:0:2', 60_000, REC)).toMatchObject({ superseded: true });
    expect(await redis.hget(keys.meta(fell), 'owner')).toBe('w2:1:1');
  });

  it('records an async job with its first frame, without taking ownership', async () => {
    const id = jobId();
    await store.append(id, [{ type: 'accepted', model: 'm', created: 1 }], {
      owner: '',
      ttlMs: 60_000,
      state: 'queued',
      record: { account: 'acct_r', model: 'm', created: 1_000 },
    });
    const meta = await redis.hgetall(keys.meta(id));
    expect(meta).toEqual({ account: 'acct_r', model: 'm', created: '1000', state: 'queued' });
    expect(await redis.pttl(keys.meta(id))).toBeGreaterThan(0);
    expect(await store.claim(id, 'w', 60_000, REC)).toMatchObject({ terminal: false, lastSeq: 1 });
  });

  it('reports a job cancelled before any worker started it', async () => {
    const id = jobId();
    await redis.hset(keys.meta(id), 'cancel', '1');
    expect(await store.claim(id, 'w', 60_000, REC)).toMatchObject({ terminal: false, cancelled: true });
  });
});

describe('FrameStore.claim of a content-final job', () => {
  it('reports the attempt that streamed content (and takes the job from it); status frames alone do not count', async () => {
    const id = jobId();
    await store.claim(id, 'w1:0:1', 60_000, REC, true);
    // Status frames, enough to span pages of the scan, then content.
    const status = Array.from({ length: 150 }, () => ({
      type: 'status' as const,
      state: 'retrying' as const,
    }));
    await store.append(id, status, { owner: 'w1:0:1', ttlMs: 60_000 });
    const before = await store.claim(id, 'w2:0:1', 60_000, REC, true);
    expect(before).toMatchObject({ terminal: false, cancelled: false });
    expect(before.streamedBy).toBeUndefined();
    await store.append(id, [{ type: 'delta', text: 'Once upon' }], { owner: 'w2:0:1', ttlMs: 60_000 });
    // A job whose content is not final (a job or WebSocket submission) is simply re-run.
    expect((await store.claim(id, 'w3:0:1', 60_000, REC)).streamedBy).toBeUndefined();
    await store.append(id, [{ type: 'delta', text: ' a time' }], { owner: 'w3:0:1', ttlMs: 60_000 });
    const after = await store.claim(id, 'w4:0:2', 60_000, REC, true);
    expect(after).toMatchObject({ terminal: false, cancelled: false, streamedBy: 'w3:0:1' });
    // The attempt that streamed is fenced: the one that found its content owns the ending.
    await expect(
      store.append(id, [{ type: 'delta', text: '!' }], { owner: 'w3:0:1', ttlMs: 60_000 }),
    ).rejects.toThrow(/NOTOWNER/);
  });
});

describe('followJob', () => {
  it('delivers backlog then live frames exactly once, in order, from any cursor', async () => {
    const id = jobId();
    await store.claim(id, 'w', 60_000, REC);
    for (let i = 0; i < 5; i++)
      await store.append(id, [{ type: 'delta', text: String(i) }], { owner: 'w', ttlMs: 60_000 });
    const got: number[] = [];
    const h = await followJob(hub, store, id, 2, (_raw, seq) => got.push(seq));
    const writes: Promise<number>[] = [];
    for (let i = 5; i < 40; i++)
      writes.push(store.append(id, [{ type: 'delta', text: String(i) }], { owner: 'w', ttlMs: 60_000 }));
    await Promise.all(writes);
    await store.append(id, [{ type: 'done', result: completion() }], { owner: 'w', ttlMs: 60_000 });
    await h.ended;
    expect(got).toEqual(Array.from({ length: 39 }, (_, i) => i + 3));
  });

  it('resumes after the end: a finished job replays from the cursor and ends', async () => {
    const id = jobId();
    await store.claim(id, 'w', 60_000, REC);
    await store.append(
      id,
      [
        { type: 'delta', text: 'a' },
        { type: 'delta', text: 'b' },
        { type: 'done', result: completion() },
      ],
      { owner: 'w', ttlMs: 60_000 },
    );
    const got: number[] = [];
    const h = await followJob(hub, store, id, 1, (_r, seq) => got.push(seq));
    await h.ended;
    expect(got).toEqual([2, 3]);
  });

  it('fills a gap in live delivery from the stream', async () => {
    const id = jobId();
    await store.claim(id, 'w', 60_000, REC);
    const got: number[] = [];
    const h = await followJob(hub, store, id, 0, (_r, seq) => got.push(seq));
    // Write frames to the stream without publishing (as if pub/sub dropped them), then one live frame.
    await redis.xadd(
      keys.frames(id),
      '0-1',
      'f',
      JSON.stringify({ v: 1, job: id, seq: 1, type: 'delta', text: 'lost' }),
    );
    await store.append(id, [{ type: 'done', result: completion() }], { owner: 'w', ttlMs: 60_000 });
    await until(() => got.length === 2, { what: 'gap filled' });
    await h.ended;
    expect(got).toEqual([1, 2]);
  });

  it('keeps live frames that come early (past a gap, or while the stream is read) until their turn, though the stream never has them', async () => {
    // Frames handed over in process before their write (LogCursor) are not in the stream yet, and
    // are never if the write is then refused: a follower that dropped them for the stream to supply
    // waited for them to its deadline.
    const log = [1, 2].map((seq) => JSON.stringify({ v: 1, job: 'j', seq, type: 'delta', text: 'x' }));
    const live = (seq: number, type = 'delta') => JSON.stringify({ v: 1, job: 'j', seq, type });
    let push!: (m: string) => void;
    let release!: () => void;
    let reads = 0;
    const got: number[] = [];
    const following = followLog(
      {
        read: async (after) => {
          // The first read is held until the test has pushed frames live meanwhile.
          if (reads++ === 0) await new Promise<void>((r) => (release = r));
          return log.filter((raw) => seqOf(raw) > after);
        },
        isLast: (raw) => raw.includes('"type":"error"'),
        listen: (cb) => {
          push = cb;
          return () => {};
        },
        onResync: () => () => {},
      },
      0,
      (_raw, seq) => got.push(seq),
    );
    await until(() => release !== undefined, { what: 'the first read' });
    // While the stream is read: the next frame, which the stream does not have.
    push(live(3));
    release();
    const h = await following;
    expect(got).toEqual([1, 2, 3]);
    // Past a gap: kept, then delivered when the gap is filled live.
    push(live(5));
    push(`${live(6, 'error')}`);
    await until(() => reads >= 2, { what: 'the gap read' });
    expect(got).toEqual([1, 2, 3]);
    push(live(4));
    await h.ended;
    expect(got).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('delivers what came live in order even when the stream read it waited on fails (Redis failing after a reconnect)', async () => {
    const log = [1, 2].map((seq) => JSON.stringify({ v: 1, job: 'j', seq, type: 'delta', text: 'x' }));
    let push!: (m: string) => void;
    let resync!: () => void;
    let fail!: () => void;
    let reads = 0;
    const got: number[] = [];
    const h = await followLog(
      {
        read: async (after) => {
          // The read after the reconnect fails once the test has pushed the last frame live.
          if (reads++ === 1)
            await new Promise<void>((_, reject) => (fail = () => reject(new Error('Connection is closed.'))));
          return log.filter((raw) => seqOf(raw) > after);
        },
        isLast: (raw) => raw.includes('"type":"error"'),
        listen: (cb) => {
          push = cb;
          return () => {};
        },
        onResync: (cb) => {
          resync = cb;
          return () => {};
        },
      },
      0,
      (_raw, seq) => got.push(seq),
    );
    expect(got).toEqual([1, 2]);
    resync();
    await until(() => fail !== undefined, { what: 'the read after the reconnect' });
    push(JSON.stringify({ v: 1, job: 'j', seq: 3, type: 'error' }));
    fail();
    await h.ended;
    expect(got).toEqual([1, 2, 3]);
  });

  it('publishes a frame too large for pub/sub as a notice; followers read it whole from the stream', async () => {
    const id = jobId();
    await store.claim(id, 'w', 60_000, REC);
    const got: string[] = [];
    const h = await followJob(hub, store, id, 0, (raw) => got.push(raw), { reply: true });
    const live: string[] = [];
    const spy = createRedis(url, { blocking: true });
    await spy.subscribe(keys.live(id));
    spy.on('message', (_c: string, m: string) => live.push(m));
    // 2 MB: whole, it would count against the subscriber's output buffer (32 MB kills the connection).
    const big = completion();
    big.choices[0]!.message.content = 'x'.repeat(2 * 1024 * 1024);
    await store.append(id, [{ type: 'delta', text: 'small' }], { owner: 'w', ttlMs: 60_000 });
    await store.append(id, [{ type: 'done', result: big }], { owner: 'w', ttlMs: 60_000 });
    await h.ended;
    expect(got.map(seqOf)).toEqual([1, 2]);
    expect(got[1]?.length).toBeGreaterThan(2 * 1024 * 1024);
    expect(JSON.parse(got[1] ?? '').result.choices[0].message.content).toBe(big.choices[0]?.message.content);
    await until(() => live.length === 2, { what: 'live messages' });
    expect(isStoredNotice(live[0] ?? '')).toBe(false);
    expect(JSON.parse(live[1] ?? '')).toEqual({ v: 1, job: id, seq: 2, stored: true });
    expect(isStoredNotice(live[1] ?? '')).toBe(true);
    spy.disconnect();
  });

  it('recovers frames published while the subscriber connection was down', async () => {
    const sub2 = createRedis(url, { blocking: true });
    const hub2 = new LiveHub(sub2, keys);
    await until(() => sub2.status === 'ready', { what: 'subscriber ready' });
    const id = jobId();
    await store.claim(id, 'w', 60_000, REC);
    const got: number[] = [];
    const h = await followJob(hub2, store, id, 0, (_r, seq) => got.push(seq));
    // Drop the connection (it reconnects by itself) and publish while it is down: pub/sub loses it.
    sub2.disconnect(true);
    await store.append(
      id,
      [
        { type: 'delta', text: 'x' },
        { type: 'done', result: completion() },
      ],
      { owner: 'w', ttlMs: 60_000 },
    );
    await until(() => got.length === 2, { what: 'frames after reconnect' });
    await h.ended;
    expect(got).toEqual([1, 2]);
    sub2.disconnect();
  });
});

describe('hold-call count', () => {
  it('is pushed by the write that carries the usage event, and not by a write that is refused', async () => {
    const id = jobId();
    await store.claim(id, 'a', 60_000, REC);
    const call = { line: 'openai/m (hop 0, attempt 1): upstream_error (x)', keepMs: 60_000 };
    await expect(
      store.append(id, [], { owner: 'zombie', ttlMs: 60_000, usage: { id: 'u0' }, call }),
    ).rejects.toThrow(/NOTOWNER/);
    expect(await redis.lrange(keys.holdCalls(id), 0, -1)).toEqual([]);
    await store.append(id, [], { owner: 'a', ttlMs: 60_000, usage: { id: 'u1' }, call });
    expect(await redis.lrange(keys.holdCalls(id), 0, -1)).toEqual([call.line]);
    expect(await redis.pttl(keys.holdCalls(id))).toBeGreaterThan(0);
  });
});
