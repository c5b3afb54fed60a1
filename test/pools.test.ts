import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Redis } from 'ioredis';
import { until } from '@faregate/testing/env';
import { makeKeys } from '@faregate/queue/keys';
import { type Stack, startStack } from './support/stack.ts';
import { contentOf, jobApi } from './support/jobs.ts';
import {
  chatCalls,
  expectDeadCallBilled,
  expectOneAnswerAfterReset,
  type JobFrame,
} from './support/reruns.ts';

const ask = (content: string) => [{ role: 'user' as const, content }];
const clientOf = (s: Stack) => new OpenAI({ apiKey: s.apiKey, baseURL: `${s.url}/v1`, maxRetries: 0 });
const stacks: Stack[] = [];
afterAll(async () => {
  await Promise.all(stacks.map((s) => s.stop()));
});

describe('shared rate limits across worker processes', () => {
  it('three processes with a shared RPM limit never exceed it in any window, and 429 retry-after is honoured', async () => {
    const windowMs = 2_000;
    const limit = 8;
    const guardMs = 800;
    const s = await startStack({
      providers: ['openai'],
      // A loaded 2-core test machine (CI runs two test files at once, each with its own stack) delays
      // requests on their way to the fake by up to several hundred ms (over 400 ms seen on CI); the
      // guard absorbs that, as RATE_GUARD_MS does for network jitter in production.
      // The 34 calls take about five windows: callers are patient enough to wait them all out (with
      // the default 5 s, the last ones would get the 429 instead; rate-limit-storm.test.ts).
      env: {
        WORKER_RPM: String(limit),
        RATE_WINDOW_MS: String(windowMs),
        RATE_GUARD_MS: String(guardMs),
        RATE_LIMIT_PATIENCE_MS: '60000',
      },
    });
    stacks.push(s);
    await s.start('worker:openai');
    await s.start('worker:openai');
    const client = clientOf(s);
    // Warm every process's connection to the provider first; the limit holds for these calls too.
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask(`warm${i}`) }),
      ),
    );
    const n = 28;
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask(`q${i}`) }),
      ),
    );
    expect(answers.every((a) => a.choices[0]?.message.content)).toBe(true);
    const times = chatCalls(s, 'openai')
      .map((c) => c.at)
      .sort((a, b) => a - b);
    expect(times).toHaveLength(n + 6);
    for (const t of times) {
      const inWindow = times.filter((u) => u >= t && u < t + windowMs).length;
      expect(inWindow).toBeLessThanOrEqual(limit);
    }
    // And the limiter is not needlessly slow: the calls take about (calls / limit) windows.
    const span = times.at(-1)! - times[0]!;
    expect(span).toBeGreaterThanOrEqual(Math.floor((n + 6 - 1) / limit) * windowMs - 100);
    expect(span).toBeLessThan((Math.ceil((n + 6) / limit) + 1) * (windowMs + guardMs));

    // A 429 storm with retry-after: no upstream call before each delay ends, and no attempt is used
    // up. (An async job: a caller waiting on its answer waits at most RATE_LIMIT_RETRIES times, see
    // rate-limit-storm.test.ts.)
    s.fake.clearCalls();
    s.fake.script('openai', [
      { fault: '429', retryAfterMs: 400 },
      { fault: '429', retryAfterMs: 400 },
      { fault: '429', retryAfterMs: 400 },
      { fault: '429', retryAfterMs: 400 },
    ]);
    const jobs = jobApi(s.url);
    const jobId = await jobs.submit(s.apiKey, 'after the storm', 'openai/gpt-4o-mini');
    const job = await jobs.finished(s.apiKey, jobId);
    expect(contentOf(job)).toBeTruthy();
    const res = { id: jobId };
    const calls = chatCalls(s, 'openai');
    expect(calls.map((c) => c.status)).toEqual([429, 429, 429, 429, 200]);
    for (let i = 1; i < calls.length; i++)
      expect(calls[i]!.at - calls[i - 1]!.at).toBeGreaterThanOrEqual(400);
    const rows = await until(async () => {
      const r = await s.sql.query('SELECT outcome, final FROM usage_events WHERE request_id = $1', [res.id]);
      return r.rows.length ? r.rows : undefined;
    });
    expect(rows).toEqual([{ outcome: 'success', final: true }]);
  }, 90_000);
});

describe('fallback and the circuit breaker', () => {
  it('falls back during an outage, stops calling the failing provider, and recovers when the circuit closes', async () => {
    const configPath = join(tmpdir(), `fg-config-${Date.now()}.json`);
    writeFileSync(
      configPath,
      JSON.stringify({
        fallbacks: { 'openai/gpt-4o-mini': ['anthropic/claude-haiku-4-5'] },
        providers: {
          openai: { circuit: { minSamples: 4, windowMs: 10_000, openMs: 1_500, failureRatio: 0.5 } },
        },
      }),
    );
    const s = await startStack({
      providers: ['openai', 'anthropic'],
      env: { FAREGATE_CONFIG: configPath, WORKER_ATTEMPTS: '1' },
    });
    stacks.push(s);
    const client = clientOf(s);
    s.fake.script(
      'openai',
      Array.from({ length: 200 }, () => ({ fault: '500' as const })),
    );
    for (let i = 0; i < 12; i++) {
      const r = await client.chat.completions.create({
        model: 'openai/gpt-4o-mini',
        messages: ask(`outage ${i}`),
      });
      expect(r.choices[0]?.message.content).toBeTruthy();
      // The answer names the model that served it: the fallback.
      expect(r.model).toBe('anthropic/claude-haiku-4-5-20251001');
    }
    expect(chatCalls(s, 'anthropic').filter((c) => c.status === 200)).toHaveLength(12);
    // The circuit opened after a few failures: the rest went straight to the fallback.
    const openaiCalls = chatCalls(s, 'openai').length;
    expect(openaiCalls).toBeGreaterThanOrEqual(4);
    expect(openaiCalls).toBeLessThan(12);

    // The outage ends; after openMs a probe goes through and the circuit closes again.
    await fetch(`${s.fake.url}/_control/faults`, { method: 'DELETE' });
    await until(
      async () => {
        await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask('probe') });
        return chatCalls(s, 'openai').some((c) => c.status === 200);
      },
      { timeoutMs: 15_000, intervalMs: 200, what: 'circuit to close' },
    );
    const before = chatCalls(s, 'openai').filter((c) => c.status === 200).length;
    for (let i = 0; i < 3; i++)
      await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask(`back ${i}`) });
    expect(chatCalls(s, 'openai').filter((c) => c.status === 200).length).toBe(before + 3);

    // Everything failing: one clear error naming each attempt.
    s.fake.script(
      'openai',
      Array.from({ length: 3 }, () => ({ fault: '503' as const })),
    );
    s.fake.script(
      'anthropic',
      Array.from({ length: 3 }, () => ({ fault: '529' as const })),
    );
    const err = await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask('all down') })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBeGreaterThanOrEqual(500);
    expect(err.message).toContain('openai/gpt-4o-mini');
    expect(err.message).toContain('anthropic/claude-haiku-4-5');
    // Overloaded everywhere, and no provider said for how long: still a clear refusal, with when to
    // come back.
    expect(err.status).toBe(503);
    expect(err.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
  }, 90_000);

  it('sends non-retryable errors back at once, without fallback', async () => {
    const s = stacks[1]!;
    await fetch(`${s.fake.url}/_control/faults`, { method: 'DELETE' });
    s.fake.clearCalls();
    s.fake.script('openai', [{ fault: '400' }]);
    const err = await clientOf(s)
      .chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask('bad') })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(chatCalls(s, 'anthropic')).toHaveLength(0);
    expect(chatCalls(s, 'openai')).toHaveLength(1);
  });
});

describe('fast lane', () => {
  it('a burst beyond the free slots: what the lane cannot take in its grace runs from BullMQ; every request answered once, billed once, never more in flight than WORKER_CONCURRENCY', async () => {
    const s = await startStack({
      providers: ['openai'],
      env: { WORKER_CONCURRENCY: '2', FAST_LANE_GRACE_MS: '100' },
    });
    stacks.push(s);
    const redis = new Redis(s.redisUrl);
    try {
      const client = clientOf(s);
      await until(async () =>
        (await redis.get(makeKeys(s.prefix).fast('openai', 'alive'))) === '1' ? true : undefined,
      );
      // The first request makes the ingress look the lane up.
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask('warm up') });
      // A request the lane ran never became a BullMQ job: the queue's event log has no `added` for it.
      const queued = async (ids: string[]) => {
        const events = await redis.xrange(`${s.prefix}:{llm-openai}:events`, '-', '+');
        const added = new Set(
          events.filter(([, f]) => f[1] === 'added').map(([, f]) => f[f.indexOf('jobId') + 1]),
        );
        return ids.filter((id) => added.has(id));
      };
      await until(async () => {
        const r = await client.chat.completions.create({
          model: 'gpt-4o-mini',
          messages: ask('on the lane?'),
        });
        return (await queued([r.id])).length === 0 ? true : undefined;
      });
      const durationMs = 600;
      s.fake.configure({ provider: 'openai', chunkMs: durationMs / 12, tokens: 12 });
      const before = chatCalls(s, 'openai').length;
      const answers = await Promise.all(
        [1, 2, 3, 4, 5].map((i) =>
          client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask(`burst ${i}`) }),
        ),
      );
      const calls = chatCalls(s, 'openai').slice(before);
      expect(calls).toHaveLength(5);
      for (const a of answers) expect(a.choices[0]?.message.content?.split(' ').length).toBe(12);
      // A third call can only start once one of the two before it ended.
      const at = calls.map((c) => c.at).sort((x, y) => x - y);
      for (let i = 0; i + 2 < at.length; i++)
        expect(at[i + 2]! - at[i]!).toBeGreaterThanOrEqual(durationMs * 0.9);
      const ids = answers.map((a) => a.id);
      const rows = await until(async () => {
        const q = await s.sql.query(
          'SELECT request_id, count(*)::int AS n FROM usage_events WHERE final AND request_id = ANY($1) GROUP BY 1',
          [ids],
        );
        return q.rows.length === ids.length ? q.rows : undefined;
      });
      expect(rows.every((r) => r.n === 1)).toBe(true);
      // Two slots: one for the lane, one BullMQ keeps. The rest of the burst waited past the grace
      // and went through BullMQ.
      const viaQueue = await queued(ids);
      expect(viaQueue.length).toBeGreaterThanOrEqual(1);
      expect(viaQueue.length).toBeLessThan(ids.length);
    } finally {
      redis.disconnect();
    }
  }, 90_000);
});

describe('durability', () => {
  it('kill -9 of a worker mid-stream: the job is re-run, the subscriber resets, one complete answer; the dead call and the re-run each billed once', async () => {
    const s = await startStack({
      providers: ['openai'],
      env: { WORKER_LOCK_MS: '2000', WORKER_STALLED_INTERVAL_MS: '500' },
    });
    stacks.push(s);
    s.fake.configure({ provider: 'openai', chunkMs: 40, tokens: 60 });
    const r = await fetch(`${s.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: ask('a long story') }),
    });
    const { id } = (await r.json()) as { id: string };
    const ws = new WebSocket(`${s.url.replace('http', 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${s.apiKey}` },
    });
    const frames: JobFrame[] = [];
    let killed = false;
    const worker = s.services.find((x) => x.name === 'worker:openai')!;
    const done = new Promise<void>((resolve) => {
      ws.on('message', (d) => {
        const f = JSON.parse(d.toString());
        if (typeof f.seq !== 'number') return;
        frames.push(f);
        if (!killed && frames.filter((x) => x.type === 'delta').length >= 5) {
          killed = true;
          worker.proc.kill('SIGKILL');
          void s.start('worker:openai');
        }
        if (f.type === 'done' || f.type === 'error') resolve();
      });
    });
    await new Promise((res) => ws.once('open', res));
    ws.send(JSON.stringify({ op: 'subscribe', job: id, after: 0 }));
    await done;
    ws.close();
    expect(killed).toBe(true);
    await expectOneAnswerAfterReset(s, id, frames);
    expect(chatCalls(s, 'openai')).toHaveLength(2);
  }, 90_000);

  it('kill -9 of a worker mid-stream of a fast-lane run: its lease lapses, the job is re-run from BullMQ, nothing lost, each call billed once', async () => {
    const s = stacks.at(-1)!;
    const redis = new Redis(s.redisUrl);
    try {
      s.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 5 });
      // The first interactive request makes the ingress look the pool's lane up; the worker
      // restarted by the test above advertises it once it runs.
      const client = clientOf(s);
      const laneData = makeKeys(s.prefix).fast('openai', 'data');
      await until(async () =>
        (await redis.get(makeKeys(s.prefix).fast('openai', 'alive'))) === '1' ? true : undefined,
      );
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask('warm up') });
      s.fake.configure({ provider: 'openai', chunkMs: 40, tokens: 60 });
      const calls = chatCalls(s, 'openai').length;
      const ws = new WebSocket(`${s.url.replace('http', 'ws')}/v1/stream`, {
        headers: { authorization: `Bearer ${s.apiKey}` },
      });
      await new Promise((res) => ws.once('open', res));
      const frames: JobFrame[] = [];
      let id = '';
      let killed = false;
      let onLane = false;
      const worker = s.services
        .filter((x) => x.name === 'worker:openai' && x.proc.exitCode === null && x.proc.signalCode === null)
        .at(-1)!;
      const done = new Promise<void>((resolve, reject) => {
        ws.on('message', (d) => {
          const f = JSON.parse(d.toString());
          if (f.type === 'nack') reject(new Error(JSON.stringify(f)));
          if (f.type === 'ack' && f.op === 'submit') id = f.job;
          if (typeof f.seq !== 'number') return;
          frames.push(f);
          if (!killed && frames.filter((x) => x.type === 'delta').length >= 5) {
            killed = true;
            void redis.hexists(laneData, id).then((n) => {
              onLane = n === 1;
              worker.proc.kill('SIGKILL');
              void s.start('worker:openai');
            });
          }
          if (f.type === 'done' || f.type === 'error') resolve();
        });
      });
      ws.send(
        JSON.stringify({
          op: 'submit',
          id: 'k',
          request: { model: 'gpt-4o-mini', messages: ask('a long story') },
        }),
      );
      await done;
      ws.close();
      expect(killed).toBe(true);
      // The run was the lane's (not BullMQ's) when the worker died.
      expect(onLane).toBe(true);
      await expectOneAnswerAfterReset(s, id, frames);
      expect(chatCalls(s, 'openai').length - calls).toBe(2);
      // The lane forgot the job once BullMQ had it.
      await until(async () => ((await redis.hexists(laneData, id)) === 0 ? true : undefined));
    } finally {
      redis.disconnect();
    }
    s.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
  }, 90_000);

  it('kill -9 of a worker during a whole (non-streamed) answer on the lane: the re-run answers, and the dead call is billed its prompt', async () => {
    const s = stacks.at(-1)!;
    const redis = new Redis(s.redisUrl);
    try {
      await until(async () =>
        (await redis.get(makeKeys(s.prefix).fast('openai', 'alive'))) === '1' ? true : undefined,
      );
      const client = clientOf(s);
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask('warm up') });
      // The provider takes its time to answer: the kill lands while the call is open.
      s.fake.configure({ provider: 'openai', firstByteMs: 1_500, chunkMs: 0, tokens: 12 });
      const calls = chatCalls(s, 'openai').length;
      // Runs the lane still lists (the warm-up's, until the lane forgets it).
      const ran = await redis.zrange(makeKeys(s.prefix).fast('openai', 'run'), '0', '-1');
      const worker = s.services
        .filter((x) => x.name === 'worker:openai' && x.proc.exitCode === null && x.proc.signalCode === null)
        .at(-1)!;
      const answer = client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: ask('a whole answer') })
        .withResponse();
      await until(async () => (chatCalls(s, 'openai').length > calls ? true : undefined));
      // The run's take follows its provider request by microseconds (README, "Fast lane"), which a
      // loaded box can stretch past the test's kill (CI once did): the kill lands after it, on a run
      // the lane knows was called, while the call is still open (1.5 s to its first byte).
      const runs = makeKeys(s.prefix).fast('openai', 'run');
      await until(async () =>
        (await redis.zrange(runs, '0', '-1')).some((r) => !ran.includes(r)) ? true : undefined,
      );
      worker.proc.kill('SIGKILL');
      s.fake.configure({ provider: 'openai', firstByteMs: 0 });
      void s.start('worker:openai');
      const { data, response } = await answer;
      expect(data.choices[0]?.message.content).toBeTruthy();
      expect(chatCalls(s, 'openai').length - calls).toBe(2);
      // The caller is told of both calls it pays for: the one the kill cut short, then the re-run's.
      expect(response.headers.get('x-faregate-attempts')).toBe('openai:interrupted,openai:ok');
      const id = response.headers.get('x-request-id')!;
      await expectDeadCallBilled(s, id, { streamed: false });
      // The answer's cost is every call billed, the one cut short included: what the ledger settles.
      // Before: the dead call's estimate was billed but left out of `usage.cost`.
      const billed = await s.sql.query<{ micros: string }>(
        'SELECT sum(cost_micros)::text AS micros FROM usage_events WHERE request_id = $1',
        [id],
      );
      const dead = await s.sql.query<{ micros: string }>(
        'SELECT cost_micros::text AS micros FROM usage_events WHERE request_id = $1 AND attempt = 1',
        [id],
      );
      expect(BigInt(dead.rows[0]?.micros ?? '0')).toBeGreaterThan(0n);
      const cost = (data.usage as { cost?: number } | undefined)?.cost ?? -1;
      expect(Math.round(cost * 1e6)).toBe(Number(billed.rows[0]?.micros));
    } finally {
      redis.disconnect();
      s.fake.configure({ provider: 'openai', firstByteMs: 0, chunkMs: 0, tokens: 12 });
    }
  }, 90_000);

  it('SIGTERM drains: the in-flight job finishes and the worker exits 0', async () => {
    const s = stacks.at(-1)!;
    s.fake.configure({ provider: 'openai', chunkMs: 30, tokens: 40 });
    const client = clientOf(s);
    const worker = s.services
      .filter((x) => x.name === 'worker:openai' && x.proc.exitCode === null && x.proc.signalCode === null)
      .at(-1)!;
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: ask('drain me'),
      stream: true,
    });
    let text = '';
    let sent = false;
    const exited = new Promise<number | null>((r) => worker.proc.once('exit', (code) => r(code)));
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      if (!sent && text.length > 0) {
        sent = true;
        worker.proc.kill('SIGTERM');
      }
    }
    expect(sent).toBe(true);
    expect(text.split(' ').length).toBeGreaterThanOrEqual(30);
    expect(await exited).toBe(0);
    s.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
  }, 60_000);

  it('kill -9 of a worker mid-stream of an SSE answer: no second call, the stream ends with an error, the cut-off call billed once', async () => {
    const s = stacks.at(-1)!;
    // The drain above stopped the pool's worker: the new one serves before the stream is sent (a
    // start on a loaded box can outlast the drained worker's pool record, and the pool then reads as lost).
    await s.start('worker:openai');
    await until(
      async () =>
        (await clientOf(s)
          .chat.completions.create({ model: 'gpt-4o-mini', messages: ask('up again?') })
          .then(() => true)
          .catch(() => undefined)) ?? undefined,
      { timeoutMs: 60_000, what: 'the new worker serving' },
    );
    s.fake.configure({ provider: 'openai', chunkMs: 40, tokens: 60 });
    const calls = chatCalls(s, 'openai').length;
    const worker = s.services
      .filter((x) => x.name === 'worker:openai' && x.proc.exitCode === null && x.proc.signalCode === null)
      .at(-1)!;
    const { data: stream, response } = await clientOf(s)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: ask('cut me off'), stream: true })
      .withResponse();
    const id = response.headers.get('x-request-id') ?? '';
    let text = '';
    let killed = false;
    const ended = await (async () => {
      for await (const c of stream) {
        text += c.choices[0]?.delta.content ?? '';
        if (!killed && text.split(' ').length >= 5) {
          killed = true;
          worker.proc.kill('SIGKILL');
          void s.start('worker:openai');
        }
      }
    })().catch((e: unknown) => e);
    expect(killed).toBe(true);
    // The caller has the content streamed so far and cannot take it back: the re-run makes no second
    // call (whose answer nobody would get), and ends the stream with an error saying so.
    expect(ended).toBeInstanceOf(OpenAI.APIError);
    expect((ended as Error).message).toMatch(/The answer from openai\/gpt-4o-mini was cut off/);
    expect(chatCalls(s, 'openai').length - calls).toBe(1);
    // The call that was cut off is billed once, estimated from what it streamed, as the request's
    // final event (the re-run made no call, so it has no event of its own), which releases the hold.
    const rows = await until(async () => {
      const q = await s.sql.query(
        'SELECT outcome, final, output_tokens > 0 AS output, estimated FROM usage_events WHERE request_id = $1',
        [id],
      );
      const held = await s.sql.query('SELECT 1 FROM holds WHERE request_id = $1', [id]);
      return q.rows.length > 0 && held.rows.length === 0 ? q.rows : undefined;
    });
    expect(rows).toEqual([{ outcome: 'failed', final: true, output: true, estimated: true }]);
    s.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
  }, 90_000);
});
