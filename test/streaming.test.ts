import { randomInt } from 'node:crypto';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { type ApiBody, assemble, contentOf, jobApi, seededRandom } from './support/jobs.ts';
import { isTerminal, type Message, RawWs } from './support/raw-ws.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Streaming over the WebSocket protocol v1 against the real services: resuming after cuts at random
 * sequence numbers, tenant isolation, slow consumers, submit over the socket, and billing of an SSE
 * caller that leaves mid-answer.
 */
const seed = Number(process.env.STREAM_SEED ?? randomInt(2 ** 31));
console.info(`streaming.test.ts seed=${seed} (set STREAM_SEED=${seed} to replay)`);
const between = seededRandom(seed);

let stack: Stack;
let api: ReturnType<typeof jobApi>;

beforeAll(async () => {
  // Replay streams kept 15 minutes, not 24 h: tests share the local Redis.
  stack = await startStack({ providers: ['openai'], env: { STREAM_TTL_SECONDS: '900' } });
  api = jobApi(stack.url);
}, 90_000);

afterAll(async () => {
  await stack?.stop();
});

const open = () => RawWs.open(stack.url, stack.apiKey);
const seqs = (fs: readonly Message[]) => fs.map((f) => f.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Subscribes after `after` and reads until frame `upTo` (or the end); keeps only frames ≤ upTo. */
async function readSpan(
  c: RawWs,
  job: string,
  after: number,
  upTo = Number.POSITIVE_INFINITY,
): Promise<Message[]> {
  c.send({ op: 'subscribe', job, after });
  await c.next((m) => m.job === job && ((m.seq ?? 0) >= upTo || isTerminal(m)), `frame ${upTo} of ${job}`);
  return c.frames(job).filter((f) => (f.seq ?? 0) <= upTo);
}

describe('resume by sequence number', () => {
  beforeAll(() => {
    // ~100+ frames over ~0.5 s: long enough to cut mid-stream.
    stack.fake.configure({ provider: 'openai', chunkMs: 4, tokens: 120 });
  });

  it('resumes after cuts at random seqs, twice in a row, and again after completion', async () => {
    const job = await api.submit(stack.apiKey, 'Tell me a long story about resuming streams');
    // The client processed frames 1..k1 when the network died: whatever followed is lost with the socket.
    const k1 = between(2, 30);
    const c1 = await open();
    const part1 = await readSpan(c1, job, 0, k1);
    await c1.cut();
    // Reconnected, resumed after k1, and lost the connection again at k2.
    const k2 = between(k1 + 1, k1 + 30);
    const c2 = await open();
    const part2 = await readSpan(c2, job, k1, k2);
    expect(part2[0]?.seq).toBe(k1 + 1);
    await c2.cut();
    const last2 = part2.at(-1)?.seq ?? k1;
    const c3 = await open();
    const part3 = await readSpan(c3, job, last2);
    await c3.close();

    const all = [...part1, ...part2, ...part3];
    const n = all.at(-1)?.seq ?? 0;
    expect(seqs(all), `seed ${seed}: k1=${k1} k2=${k2}`).toEqual(range(1, n));
    expect(all.at(-1)?.type).toBe('done');
    expect(n).toBeGreaterThan(k2);
    const stored = await api.finished(stack.apiKey, job);
    expect(stored.status).toBe('completed');
    expect(stored.last_seq).toBe(n);
    expect(assemble(all)).toBe(contentOf(stored));
    expect(assemble(all).length).toBeGreaterThan(100);

    // After completion the frames are still there: resuming mid-way yields exactly the rest.
    const k3 = between(1, n - 1);
    const c4 = await open();
    const tail = await readSpan(c4, job, k3);
    await c4.close();
    expect(seqs(tail), `seed ${seed}: k3=${k3}`).toEqual(range(k3 + 1, n));
    expect(tail).toEqual(all.slice(k3));
  });

  it('keeps jobs apart on one socket and resumes each from its own cursor', async () => {
    const [a, b] = await Promise.all([
      api.submit(stack.apiKey, 'first of two jobs'),
      api.submit(stack.apiKey, 'second of two jobs'),
    ]);
    const ka = between(2, 20);
    const kb = between(2, 20);
    const c1 = await open();
    const [pa, pb] = await Promise.all([readSpan(c1, a, 0, ka), readSpan(c1, b, 0, kb)]);
    await c1.cut();
    const c2 = await open();
    const [ra, rb] = await Promise.all([readSpan(c2, a, ka), readSpan(c2, b, kb)]);
    await c2.close();
    for (const [job, frames] of [
      [a, [...pa, ...ra]],
      [b, [...pb, ...rb]],
    ] as const) {
      expect(seqs(frames)).toEqual(range(1, frames.length));
      expect(frames.every((f) => f.job === job)).toBe(true);
      expect(assemble(frames)).toBe(contentOf(await api.finished(stack.apiKey, job)));
    }
  });
});

describe('tenant isolation', () => {
  it('refuses a subscription to another tenant’s job exactly as for a job that does not exist', async () => {
    const admin = async (path: string, body: unknown) => {
      const r = await fetch(`${stack.url}/admin/v1/${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(r.status, path).toBeLessThan(300);
      return (await r.json()) as ApiBody;
    };
    const account = await admin('accounts', { name: 'other tenant' });
    await admin('credits', { account_id: account.id, amount_usd: '5' });
    const otherKey = (await admin('keys', { account_id: account.id, name: 'other key' })).key as string;
    const theirs = await api.submit(otherKey, 'a private question');
    const missing = 'req_doesnotexist0000000000000';

    const c = await open();
    c.send({ op: 'subscribe', job: theirs, after: 0, id: 'theirs' });
    c.send({ op: 'subscribe', job: missing, after: 0, id: 'missing' });
    c.send({ op: 'cancel', job: theirs, id: 'cancel' });
    const [nTheirs, nMissing, nCancel] = await Promise.all(
      ['theirs', 'missing', 'cancel'].map((id) => c.next((m) => m.id === id, `reply ${id}`)),
    );
    expect(nTheirs?.type).toBe('nack');
    expect(nTheirs?.error).toMatchObject({ code: 'not_found', type: 'invalid_request_error', param: 'job' });
    // Nothing distinguishes "someone else's" from "does not exist" except the id echoed back.
    expect(JSON.stringify(nTheirs).replaceAll(theirs, '<id>')).toBe(
      JSON.stringify(nMissing).replaceAll(missing, '<id>').replace('"missing"', '"theirs"'),
    );
    expect(nCancel).toMatchObject({ type: 'nack', op: 'cancel', error: { code: 'not_found' } });

    // HTTP agrees; the owner still gets the full job, untouched by the refused cancel.
    const get = await api.call(stack.apiKey, 'GET', `/v1/jobs/${theirs}`);
    expect(get.status).toBe(404);
    const owner = await RawWs.open(stack.url, otherKey);
    const frames = await readSpan(owner, theirs, 0);
    await owner.close();
    expect(frames.at(-1)?.type).toBe('done');
    expect(c.frames(theirs)).toEqual([]);
    await c.close();
  });
});

describe('submit over the WebSocket', () => {
  it('acknowledges with the job id, then streams it from seq 1', async () => {
    const c = await open();
    c.send({ op: 'submit', id: 'bad', request: { model: 'gpt-4o-mini' } });
    const bad = await c.next((m) => m.id === 'bad');
    expect(bad).toMatchObject({ type: 'nack', op: 'submit', error: { type: 'invalid_request_error' } });

    c.send({
      op: 'submit',
      id: 's1',
      request: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'over the socket' }] },
    });
    const ack = await c.next((m) => m.type === 'ack' && m.id === 's1');
    const job = ack.job as string;
    expect(job).toMatch(/^req_/);
    await c.next((m) => m.job === job && isTerminal(m), 'terminal frame');
    await c.close();
    const frames = c.frames(job);
    expect(seqs(frames)).toEqual(range(1, frames.length));
    expect(frames[0]?.type).toBe('accepted');
    expect(assemble(frames)).toBe(contentOf(await api.finished(stack.apiKey, job)));
  });
});

describe('subscriptions on one socket', () => {
  const slow = (what: string) => `[[fake:{"fault":"slow_stream","chunkMs":15,"tokens":40}]] ${what}`;

  it('subscribes to one job sent together deliver each frame once, and one unsubscribe stops them', async () => {
    const c = await open();
    const job = await api.submit(stack.apiKey, slow('subscribed five times at once'));
    for (let i = 0; i < 5; i++) c.send({ op: 'subscribe', job, id: `s${i}` });
    await c.next((m) => m.job === job && isTerminal(m), 'terminal frame');
    // Each subscribe replaces the one before from its own cursor, so frames sent before the last one
    // took over may come again (as for any re-subscribe); after that, one follower: every frame once.
    // (Five followers used to run side by side, each delivering every frame to the end.)
    const frames = c.frames(job);
    const last = Math.max(...seqs(frames).map(Number));
    const times = new Map<number, number>();
    for (const f of frames) times.set(f.seq ?? 0, (times.get(f.seq ?? 0) ?? 0) + 1);
    expect([...times.keys()].sort((a, b) => a - b)).toEqual(range(1, last));
    const repeated = [...times].filter(([, n]) => n > 1).map(([seq]) => seq);
    expect(Math.max(0, ...repeated)).toBeLessThan(last / 2);
    expect(times.get(last)).toBe(1);
    const once = [...new Map(frames.map((f) => [f.seq, f])).values()];
    expect(assemble(once)).toBe(contentOf(await api.finished(stack.apiKey, job)));

    const other = await api.submit(stack.apiKey, slow('subscribed five times, then unsubscribed'));
    for (let i = 0; i < 5; i++) c.send({ op: 'subscribe', job: other, id: `o${i}` });
    await c.next((m) => m.type === 'ack' && m.id === 'o4');
    c.send({ op: 'unsubscribe', job: other, id: 'u' });
    await c.next((m) => m.type === 'ack' && m.id === 'u');
    const at = c.messages.length;
    await api.finished(stack.apiKey, other);
    // A round trip on the socket after the job ended: anything still following it would have sent.
    c.send({ op: 'ping', id: 'after' });
    await c.next((m) => m.id === 'after');
    expect(c.messages.slice(at).filter((m) => m.job === other)).toEqual([]);
    await c.close();
  });

  it('refuses a cursor past a running job’s last frame, or of the wrong kind, naming after', async () => {
    const c = await open();
    const job = await api.submit(stack.apiKey, slow('a cursor from the future'));
    c.send({ op: 'subscribe', job, after: 10_000, id: 'future' });
    const nack = await c.next((m) => m.id === 'future');
    expect(nack).toMatchObject({ type: 'nack', error: { type: 'invalid_request_error', param: 'after' } });
    await api.finished(stack.apiKey, job);
    // Past the end of a finished job is not an error: the ack says it ended.
    c.send({ op: 'subscribe', job, after: 10_000, id: 'ended' });
    expect(await c.next((m) => m.id === 'ended')).toMatchObject({ type: 'ack', ended: true });
    // A cursor of the wrong kind is refused, not read as "from the start".
    c.send({ op: 'subscribe', job, after: { [job]: 3 }, id: 'object' });
    c.send({ op: 'subscribe', batch: 'jbat_0123456789abcdef', after: 3, id: 'number' });
    for (const id of ['object', 'number'])
      expect(await c.next((m) => m.id === id), id).toMatchObject({
        type: 'nack',
        error: { type: 'invalid_request_error', param: 'after' },
      });
    await c.close();
  });

  it('a job batch member not started yet is known at once: subscribed to, it streams when it runs', async () => {
    const r = await api.call(stack.apiKey, 'POST', '/v1/jobs', {
      requests: Array.from({ length: 200 }, (_, i) => ({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: `member ${i}` }],
      })),
    });
    expect(r.status).toBe(202);
    const ids = (r.body as unknown as { jobs: Array<{ id: string }> }).jobs.map((j) => j.id);
    const c = await open();
    // The last members first: the batch feeds them last.
    const last = ids.slice(-20).reverse();
    for (const job of last) c.send({ op: 'subscribe', job, id: job });
    const replies = await Promise.all(last.map((job) => c.next((m) => m.id === job)));
    expect(replies.filter((m) => m.type !== 'ack')).toEqual([]);
    for (const job of last) await c.next((m) => m.job === job && isTerminal(m), `terminal frame of ${job}`);
    for (const job of last) {
      const frames = c.frames(job);
      expect(seqs(frames)).toEqual(range(1, frames.length));
      expect(assemble(frames)).toBe(contentOf(await api.finished(stack.apiKey, job)));
    }
    await c.close();
  });
});

describe('oversized messages', () => {
  it('close the socket with 1009 (message too big), whatever their size; other sockets are untouched', async () => {
    const other = await open();
    for (const mib of [1.5, 4, 16]) {
      const c = await open();
      c.ws.send(JSON.stringify({ op: 'ping', pad: 'x'.repeat(mib * 1024 * 1024) }));
      expect(await c.closed, `${mib} MiB`).toBe(1009);
    }
    other.send({ op: 'ping', id: 'still here' });
    expect(await other.next((m) => m.id === 'still here')).toMatchObject({ type: 'pong' });
    await other.close();
  });
});

describe('slow consumers', () => {
  it('cuts a client that stops reading with 4008, and it resumes from its cursor without loss', async () => {
    // Fast and long: ~6.5 MB in ~2,500 frames per job. Three at once far exceed what the ingress
    // buffers per socket (4 MiB) plus the kernel's socket buffers (~8 MB reached the client here).
    stack.fake.configure({ provider: 'openai', chunkMs: 1, tokens: 500_000, tokensPerChunk: 200 });
    try {
      const c = await open();
      c.tcp.pause();
      const jobs = await Promise.all([1, 2, 3].map((i) => api.submit(stack.apiKey, `flood ${i}`)));
      for (const job of jobs) c.send({ op: 'subscribe', job, after: 0 });
      const stored = await Promise.all(jobs.map((job) => api.finished(stack.apiKey, job, 60_000)));
      c.tcp.resume();
      expect(await c.closed).toBe(4008);

      const c2 = await open();
      for (const [i, job] of jobs.entries()) {
        const before = c.frames(job);
        expect(seqs(before)).toEqual(range(1, before.length));
        const after = before.some(isTerminal) ? [] : await readSpan(c2, job, before.length);
        const all = [...before, ...after];
        expect(seqs(all)).toEqual(range(1, all.length));
        expect(all.at(-1)?.type).toBe('done');
        expect(assemble(all)).toBe(contentOf(stored[i]!));
      }
      // The cut happened mid-stream for at least one job: the resume did real work.
      expect(jobs.some((job) => c.frames(job).every((f) => !isTerminal(f)))).toBe(true);
      await c2.close();
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 4, tokens: 120, tokensPerChunk: 1 });
    }
  }, 90_000);
});

describe('SSE callers that leave', () => {
  it('bills what was generated when an OpenAI client disconnects mid-stream', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 10, tokens: 400, tokensPerChunk: 1 });
    const client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'a long answer I will not wait for' }],
      stream: true,
    });
    let id = '';
    let pieces = 0;
    for await (const chunk of stream) {
      id = chunk.id;
      if (chunk.choices[0]?.delta.content) pieces++;
      if (pieces >= 5) break;
    }
    const row = await until(
      async () => {
        const r = await stack.sql.query(
          'SELECT outcome, output_tokens, cost_micros::text AS cost FROM usage_events WHERE request_id = $1',
          [id],
        );
        return r.rows[0] as { outcome: string; output_tokens: number; cost: string } | undefined;
      },
      { what: 'usage row of the abandoned stream' },
    );
    expect(row.outcome).toBe('cancelled');
    expect(row.output_tokens).toBeGreaterThanOrEqual(5);
    expect(row.output_tokens).toBeLessThan(400);
    expect(BigInt(row.cost)).toBeGreaterThan(0n);
    // Generation stopped: the job is cancelled, not left running to its end.
    expect((await api.finished(stack.apiKey, id)).status).toBe('cancelled');
  });
});
