import { hostname } from 'node:os';
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { until } from '@faregate/testing/env';
import { GatewayError } from '@faregate/contracts/errors';
import { FrameStore } from '@faregate/queue/frame-store';
import { makeKeys } from '@faregate/queue/keys';
import { freePort, type Service, type Stack, startStack } from './support/stack.ts';
import { chatCalls, expectOneAnswerAfterReset, type JobFrame } from './support/reruns.ts';

/**
 * An ingress that hosts its pools (INGRESS_POOLS, as `pnpm start` and compose run it): a request the
 * fast lane would carry to a worker is run by the ingress itself, with the pool's own code, and is
 * billed once; what needs the queue goes to the pool's workers; and if the ingress dies mid-call,
 * the pool's workers re-run the job and bill the dead call, as after a worker's death.
 */

let stack: Stack;
let redis: Redis;
let client: OpenAI;
let metricsPort: number;
const ask = (content: string) => [{ role: 'user' as const, content }];
const live = (name: string) =>
  stack.services.filter((s) => s.name === name && s.proc.exitCode === null && s.proc.signalCode === null);

beforeAll(async () => {
  metricsPort = await freePort();
  stack = await startStack({
    providers: ['openai'],
    // The lane's lease (a dead run is swept after it) is the pools' job lock.
    env: { INGRESS_POOLS: 'openai', WORKER_LOCK_MS: '2000' },
    ingressEnv: { METRICS_PORT: String(metricsPort) },
  });
  redis = new Redis(stack.redisUrl);
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  const keys = makeKeys(stack.prefix);
  // The ingress hosts a pool only while the pool's workers run its lane (which it reads once asked).
  await until(async () => ((await redis.get(keys.fast('openai', 'alive'))) === '1' ? true : undefined));
  // The first requests go to the workers until the ingress has read that the lane runs.
  await until(async () => {
    const r = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: ask('warm up') })
      .withResponse();
    const by = await endedBy(r.response.headers.get('x-request-id')!);
    return ingressOwner(live('ingress')[0]!).test(by) ? true : undefined;
  });
}, 120_000);

afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

/** The process that ended the job's last attempt (`<host>-<pid>-<rand>:<hop>:<attempt>`). */
async function endedBy(id: string): Promise<string> {
  return until(async () => (await redis.hget(makeKeys(stack.prefix).meta(id), 'ended')) ?? undefined);
}

const ingressOwner = (ingress: Service) => new RegExp(`^${hostname()}-${ingress.proc.pid}-[0-9a-f]+:0:1$`);

async function usage(id: string, n: number) {
  return until(async () => {
    const q = await stack.sql.query<{ outcome: string; final: boolean; attempt: number }>(
      'SELECT outcome, final, attempt FROM usage_events WHERE request_id = $1 ORDER BY attempt',
      [id],
    );
    return q.rows.length >= n ? q.rows : undefined;
  });
}

describe('an ingress hosting its pools', () => {
  it('runs lane requests itself, JSON and SSE: answered, one provider call each, billed once, counted in its /metrics', async () => {
    const [ingress] = live('ingress');
    const before = chatCalls(stack, 'openai').length;
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: ask('hello there') })
      .withResponse();
    expect(data.choices[0]?.message.content).toBeTruthy();
    expect(data.model).toBe('openai/gpt-4o-mini');
    const id = response.headers.get('x-request-id')!;
    expect(await endedBy(id)).toMatch(ingressOwner(ingress!));

    const stream = await client.chat.completions
      .create({
        model: 'gpt-4o-mini',
        messages: ask('stream it'),
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    let text = '';
    let usageSeen = false;
    for await (const chunk of stream.data) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usageSeen = true;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usageSeen).toBe(true);
    const streamId = stream.response.headers.get('x-request-id')!;
    expect(await endedBy(streamId)).toMatch(ingressOwner(ingress!));

    expect(chatCalls(stack, 'openai').length - before).toBe(2);
    for (const rid of [id, streamId])
      expect((await usage(rid, 1)).map((r) => [r.attempt, r.outcome, r.final])).toEqual([
        [1, 'success', true],
      ]);
    // The lane forgot both runs.
    const data_ = makeKeys(stack.prefix).fast('openai', 'data');
    await until(async () => ((await redis.hlen(data_)) === 0 ? true : undefined));
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const runs = metrics.match(/^faregate_worker_fast_lane_total\{event="run",provider="openai"\} (\d+)$/m);
    expect(Number(runs?.[1])).toBeGreaterThanOrEqual(2);
    // The ingress's own process metrics are not reported twice.
    expect(metrics.match(/^# TYPE process_cpu_seconds_total /gm) ?? []).toHaveLength(1);
  });

  it('a provider 429 sends the job to the pool queue: a worker retries it and answers', async () => {
    const [worker] = live('worker:openai');
    stack.fake.script('openai', [{ fault: '429', retryAfterMs: 200 }]);
    const before = chatCalls(stack, 'openai').length;
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: ask('rate limited once') })
      .withResponse();
    expect(data.choices[0]?.message.content).toBeTruthy();
    const id = response.headers.get('x-request-id')!;
    // The hosted run hit the 429 (attempt 1); the worker's BullMQ run answered (attempt 2).
    expect(await endedBy(id)).toMatch(new RegExp(`^${hostname()}-${worker!.proc.pid}-[0-9a-f]+:0:2$`));
    expect(chatCalls(stack, 'openai').length - before).toBe(2);
    const rows = await usage(id, 1);
    expect(rows.filter((r) => r.final)).toHaveLength(1);
  });

  it("a stream whose run loses its job mid-answer ends once the job's new owner ends it, or at once with an error if the refused write was handed over; its call is billed once", async () => {
    // The ingress hands a hosted run's chunks to its SSE caller as their write leaves for Redis
    // (when the connection's buffer is empty: most writes). Here the job is taken from the run
    // mid-answer (as a worker does after the run's lease lapsed), so the run's next write is refused.
    // Handed over before the refusal, its chunk is not in the log: the caller is ended at once with
    // an error (before, it waited to its deadline for frames numbered past the log). Not handed
    // over, the caller has exactly the log, and follows the new owner's frames.
    stack.fake.configure({ provider: 'openai', chunkMs: 60, tokens: 60 });
    try {
      const [ingress] = live('ingress');
      const res = await fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          messages: ask('a long answer, taken over'),
          stream: true,
        }),
      });
      expect(res.status).toBe(200);
      const id = res.headers.get('x-request-id')!;
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = '';
      while (!text.includes('"content":"')) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended before any content: ${text}`);
        text += decoder.decode(value, { stream: true });
      }
      const keys = makeKeys(stack.prefix);
      const meta = keys.meta(id);
      // The run's first write claimed the job for the ingress's attempt.
      await until(async () =>
        ingressOwner(ingress!).test((await redis.hget(meta, 'owner')) ?? '') ? true : undefined,
      );
      // Where the job's frames go: the ingress's reply channel (the hosted run's record on the lane).
      const job = JSON.parse((await redis.hget(keys.fast('openai', 'data'), id)) ?? '{}') as {
        replyTo?: string;
      };
      expect(job.replyTo).toBeTruthy();
      const intruder = 'intruder:0:1';
      await redis.hset(meta, 'owner', intruder);
      // The call stopped at the refusal and is billed what it produced, once.
      const rows = await until(async () => {
        const q = await stack.sql.query<{ outcome: string; output_tokens: number }>(
          'SELECT outcome, output_tokens FROM usage_events WHERE request_id = $1',
          [id],
        );
        return q.rows.length > 0 ? q.rows : undefined;
      });
      // The new owner ends the job, as a worker's attempt would end its answer.
      const taken = new GatewayError({ code: 'upstream_error', message: 'taken over by the test' });
      await new FrameStore(redis, keys).append(
        id,
        [{ type: 'error', status: taken.status, error: taken.toJSON() }],
        {
          owner: intruder,
          ttlMs: 60_000,
          replyTo: job.replyTo,
          ends: true,
        },
      );
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      // Exactly one end: the hand-over's own error, or the new owner's; never an answer's [DONE].
      const ends = text.match(/could not be recorded|taken over by the test/g) ?? [];
      expect(ends).toHaveLength(1);
      expect(text.match(/"code":"upstream_error"/g)).toHaveLength(1);
      expect(text).not.toContain('[DONE]');
      expect(rows).toHaveLength(1);
      expect(rows[0]!.output_tokens).toBeGreaterThan(0);
      expect(rows[0]!.output_tokens).toBeLessThan(60);
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
    }
  });

  it('kill -9 of the ingress mid-stream: the pool sweeps the run to its workers, a new ingress resumes the stream, the dead call is billed', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 40, tokens: 60 });
    const [ingress] = live('ingress');
    const before = chatCalls(stack, 'openai').length;
    const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    await new Promise((res) => ws.once('open', res));
    let id = '';
    let deltas = 0;
    const cut = new Promise<void>((resolve) => {
      ws.on('message', (d) => {
        const f = JSON.parse(d.toString()) as { job?: string; type?: string };
        if (f.job && !id) id = f.job;
        if (f.type === 'delta' && ++deltas === 5) resolve();
      });
    });
    ws.send(
      JSON.stringify({
        op: 'submit',
        id: 'k',
        request: { model: 'gpt-4o-mini', messages: ask('a long story') },
      }),
    );
    await cut;
    expect(id).toMatch(/^req_/);
    // The run is the ingress's, on the lane under its lease.
    expect(await redis.hexists(makeKeys(stack.prefix).fast('openai', 'data'), id)).toBe(1);
    ingress!.proc.kill('SIGKILL');
    ws.terminate();
    await stack.start('ingress', { METRICS_PORT: '0' });
    // A process start (TypeScript loaded, migrations checked) on a loaded 2-core box can take longer
    // than the default 10 s (CI once did).
    await until(async () => (await fetch(`${stack.url}/healthz`).catch(() => undefined))?.ok, {
      timeoutMs: 30_000,
      what: 'the new ingress up',
    });

    // A follower on the new ingress reads the job from its first frame to its end.
    const ws2 = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    await new Promise((res) => ws2.once('open', res));
    const frames: JobFrame[] = [];
    const done = new Promise<void>((resolve) => {
      ws2.on('message', (d) => {
        const f = JSON.parse(d.toString()) as JobFrame;
        if (typeof f.seq !== 'number') return;
        frames.push(f);
        if (f.type === 'done' || f.type === 'error') resolve();
      });
    });
    ws2.send(JSON.stringify({ op: 'subscribe', job: id, after: 0 }));
    await done;
    ws2.close();
    await expectOneAnswerAfterReset(stack, id, frames);
    expect(chatCalls(stack, 'openai').length - before).toBe(2);
    stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });

    // The new ingress knew its pools' lanes from its start: its very first request is hosted.
    const [restarted] = live('ingress');
    const first = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: ask('first after the restart') })
      .withResponse();
    expect(await endedBy(first.response.headers.get('x-request-id')!)).toMatch(ingressOwner(restarted!));
  }, 90_000);
});
