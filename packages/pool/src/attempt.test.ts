import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zeroUsage } from '@faregate/contracts/chat';
import type { ChatJobData, JobData } from '@faregate/contracts/jobs';
import { UsageEvent } from '@faregate/contracts/usage';
import { callProvider } from '@faregate/providers/call';
import { adapterForConfig, providersFromEnv } from '@faregate/providers/registry';
import { sampleCompletion } from '@faregate/testing/completion';
import { testRedis } from '@faregate/testing/env';
import { chatJob } from '@faregate/testing/job';
import { requestCancel } from '@faregate/queue/job-control';
import { makeKeys, usagePartition } from '@faregate/queue/keys';
import { ProviderQueues } from '@faregate/queue/queues';
import { createRedis } from '@faregate/queue/redis';
import { runAttempt, type AttemptInput } from './attempt.ts';
import { WorkerConfig } from './config.ts';
import { embeddingsTokens } from './embeddings.ts';
import { testWorkerDeps } from './test-deps.ts';
import type { WorkerDeps } from './deps.ts';
import { RUN_LOST } from './intake/lane.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let queues: ProviderQueues;
let n = 0;

beforeAll(() => {
  redis = createRedis(url);
  queues = new ProviderQueues(redis, keys);
});
afterAll(async () => {
  await queues.close();
  redis.disconnect();
});

/** Deps against real Redis, with the provider call injected. */
function depsWith(call: typeof callProvider): WorkerDeps {
  return testWorkerDeps({
    config: WorkerConfig.parse({ WORKER_PROVIDER: 'openai', REDIS_PREFIX: prefix }),
    redis,
    keys,
    queues,
    call,
    providerUrl: 'http://127.0.0.1:9',
    limits: { attempts: 3 },
    circuitPool: `openai-${prefix}`,
  });
}

const job = (over: Partial<ChatJobData> = {}): JobData =>
  chatJob({
    id: `req_att${prefix}${++n}`,
    request: { model: 'm', messages: [{ role: 'user', content: 'Tell me a story.' }] },
    requestedModel: 'm',
    deltas: true,
    replyTo: `${prefix}:reply:test`,
    ...over,
  });

/** A provider call's whole answer: 3 input tokens, 1 output. */
const completion = () => ({
  completion: {
    model: 'gpt-4o-mini',
    content: 'ok',
    toolCalls: [],
    finishReason: 'stop' as const,
    usage: { ...zeroUsage(), inputTokens: 3, outputTokens: 1 },
  },
  rateLimits: {},
  status: 200,
});

const input = (data: JobData, over: Partial<AttemptInput> = {}): AttemptInput => ({
  data,
  attempt: 1,
  canRetry: true,
  canWaitOnRateLimit: true,
  restart: false,
  speculative: true,
  keyIndex: 0,
  workerId: 'w',
  ...over,
});

async function usageOf(requestId: string): Promise<UsageEvent[]> {
  const entries = await redis.xrange(keys.usage(usagePartition(requestId)), '-', '+');
  return entries
    .map(([, f]) => UsageEvent.parse(JSON.parse(f[1] ?? '')))
    .filter((e) => e.requestId === requestId);
}

describe('attempt: what a call produced is billed', () => {
  it('a lane run that loses its job mid-stream writes none of its frames but bills its tokens, counted against the hold', async () => {
    const lost = new AbortController();
    const data = job();
    const deps = depsWith(async (args) => {
      args.onEvent?.({ type: 'text', text: 'Once upon a time there was a gateway' });
      // The sweep moved the job to BullMQ: the run learns it and stops.
      lost.abort(RUN_LOST);
      await new Promise((_, reject) => {
        if (args.signal?.aborted) reject(args.signal.reason);
        args.signal?.addEventListener('abort', () => reject(args.signal?.reason), { once: true });
      });
      throw new Error('unreachable');
    });
    // Another attempt owns the job (the BullMQ restart claimed it).
    await deps.store.claim(data.id, 'other', 60_000, { account: 'acct', model: 'm', created: 0 });
    const out = await runAttempt(deps, input(data, { signal: lost.signal }));
    expect(out).toEqual({ status: 'already_done' });
    const events = await usageOf(data.id);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ outcome: 'failed', final: false, estimated: true, attempt: 1 });
    expect(events[0]?.outputTokens).toBeGreaterThan(0);
    expect(await redis.lrange(keys.holdCalls(data.id), 0, -1)).toHaveLength(1);
    // None of its frames: the owner's stream is the owner's.
    expect(await deps.store.read(data.id, 0)).toEqual([]);
  });

  it("a hop's running frame names the calls before it even when reading them is slow (an SSE caller's headers are made from it)", async () => {
    const data = job({
      plan: [
        { provider: 'openai', model: 'a' },
        { provider: 'openai', model: 'm' },
      ],
      hop: 1,
      attempts: [{ provider: 'openai', model: 'a', code: 'pool_lost', message: 'no live worker' }],
    });
    const deps = depsWith(async (args) => {
      args.onEvent?.({ type: 'text', text: 'hi' });
      return {
        completion: {
          model: 'm',
          content: 'hi',
          toolCalls: [],
          finishReason: 'stop' as const,
          usage: { ...zeroUsage(), inputTokens: 3, outputTokens: 1 },
        },
        rateLimits: {},
        status: 200,
      };
    });
    // The request's earlier calls take longer to read than the running frame's own wait (50 ms).
    const slowPipeline = () => {
      const p = redis.pipeline();
      const exec = p.exec.bind(p);
      p.exec = (async () => {
        await new Promise((r) => setTimeout(r, 150));
        return exec();
      }) as typeof p.exec;
      return p;
    };
    deps.redis = new Proxy(redis, {
      get: (t, k) => (k === 'pipeline' ? slowPipeline : Reflect.get(t, k, t)),
    }) as typeof redis;
    expect(await runAttempt(deps, input(data, { speculative: false }))).toEqual({ status: 'completed' });
    const frames = (await deps.store.read(data.id, 0)).map((raw) => JSON.parse(raw));
    const running = frames.find((f) => f.type === 'status' && f.state === 'running');
    expect(running?.route).toEqual([{ provider: 'openai', model: 'a', status: null, code: 'pool_lost' }]);
  });

  it('a successful stream whose provider reports no usage bills the estimate, like a broken stream', async () => {
    const data = job();
    const text = 'The quick brown fox jumps over the lazy dog';
    const deps = depsWith(async (args) => {
      args.onEvent?.({ type: 'text', text });
      return {
        completion: {
          model: 'gpt-4o-mini',
          content: text,
          toolCalls: [],
          finishReason: 'stop',
          usage: zeroUsage(),
        },
        rateLimits: {},
        status: 200,
      };
    });
    expect(await runAttempt(deps, input(data))).toEqual({ status: 'completed' });
    const [event] = await usageOf(data.id);
    expect(event).toMatchObject({ outcome: 'success', final: true, estimated: true });
    expect(event?.inputTokens).toBeGreaterThan(0);
    expect(event?.outputTokens).toBeGreaterThanOrEqual(9);
    // The answer (its usage chunk and done frame) carries the tokens billed, not the provider's zeros.
    const frames = (await deps.store.read(data.id, 0)).map((raw) => JSON.parse(raw));
    const done = frames.find((f) => f.type === 'done');
    expect(done?.result?.usage).toMatchObject({
      prompt_tokens: event?.inputTokens,
      completion_tokens: event?.outputTokens,
    });
    expect(frames.find((f) => f.type === 'usage')?.usage).toMatchObject({
      prompt_tokens: event?.inputTokens,
      completion_tokens: event?.outputTokens,
    });
  });

  it('an intake that no longer vouches right before the call (the lane lost its take): no call, no frame, no usage', async () => {
    const data = job();
    let calls = 0;
    const deps = depsWith(async () => {
      calls++;
      throw new Error('unreachable');
    });
    let asked = 0;
    const out = await runAttempt(
      deps,
      input(data, {
        beforeCall: () => {
          asked++;
          return Promise.resolve(false);
        },
      }),
    );
    expect(out).toEqual({ status: 'already_done' });
    expect(asked).toBe(1);
    expect(calls).toBe(0);
    expect(await deps.store.read(data.id, 0)).toEqual([]);
    expect(await usageOf(data.id)).toEqual([]);
    expect(await redis.lrange(keys.holdCalls(data.id), 0, -1)).toEqual([]);
  });
});

describe('attempt: a batch line first started from the queue', () => {
  const batchLine = () => job({ deltas: false, retain: true });

  it('calls before any claim (no round trip in front of the call) and claims with its done frame', async () => {
    const data = batchLine();
    const ownerAtCall: (string | null)[] = [];
    const deps = depsWith(async () => {
      ownerAtCall.push(await redis.hget(keys.meta(data.id), 'owner'));
      return completion();
    });
    expect(await runAttempt(deps, input(data))).toEqual({ status: 'completed' });
    expect(ownerAtCall).toEqual([null]);
    expect(await redis.hget(keys.meta(data.id), 'owner')).toBe('w:0:1');
    expect((await deps.store.read(data.id, 0)).map((f) => JSON.parse(f).type)).toEqual(['done']);
    expect(await usageOf(data.id)).toHaveLength(1);
  });

  it('a line whose first start died mid-call (it leaves no owner) is billed that call by its re-run after the crash, chat and embeddings, once', async () => {
    // Its hold covers two calls, as the ingress's (HOLD_CALLS): the dead call now counts against it.
    const chat: JobData = { ...batchLine(), holdCalls: 2 };
    const embed: JobData = {
      ...batchLine(),
      holdCalls: 2,
      op: 'embeddings',
      request: { model: 'text-embedding-3-small', input: ['one two three four'] },
      plan: [{ provider: 'openai', model: 'text-embedding-3-small' }],
    };
    for (const data of [chat, embed]) {
      const deps = depsWith(async () => completion());
      deps.embed = async () => ({
        embeddings: { model: 'text-embedding-3-small', vectors: [[0.5]], inputTokens: 4 },
        rateLimits: {},
        status: 200,
      });
      // The first start (speculative) called and its worker was killed: nothing in the record. The
      // re-run after the crash (BullMQ found the job stalled) is attempt 2.
      const rerun = input(data, { attempt: 2, speculative: false, afterCrash: true });
      expect(await runAttempt(deps, rerun)).toEqual({ status: 'completed' });
      const events = await usageOf(data.id);
      expect(
        events.map((e) => [e.attempt, e.outcome, e.final]),
        data.op ?? 'chat',
      ).toEqual([
        [1, 'failed', false],
        [2, 'success', true],
      ]);
      expect(events[0]!.inputTokens, data.op ?? 'chat').toBeGreaterThan(0);
      // The dead call counts against the hold, with its estimate (before, it did not: a later call
      // could go past what the hold covers). The answer ends the request: nothing to count after it.
      expect(await redis.lrange(keys.holdCalls(data.id), 0, -1), data.op ?? 'chat').toHaveLength(1);
      // A re-run that is not after a crash bills nothing for attempt 1 (its first start ended).
      const later = data.op ? { ...embed, id: `${embed.id}x` } : { ...chat, id: `${chat.id}x` };
      await runAttempt(deps, input(later, { attempt: 2, speculative: false }));
      expect((await usageOf(later.id)).map((e) => e.attempt)).toEqual([2]);
    }
  });

  it('claims first when this process heard the line was cancelled while queued, and ends cancelled without a call', async () => {
    const data = batchLine();
    let calls = 0;
    const deps = depsWith(async (args) => {
      calls++;
      if (args.signal?.aborted) throw args.signal.reason;
      return completion();
    });
    await requestCancel(redis, keys, data.id, 60_000);
    // The worker's cancel subscription heard it (the job ran nowhere yet).
    expect(deps.cancels.cancel(data.id)).toBe(false);
    const out = await runAttempt(deps, input(data));
    expect(out).toEqual({ status: 'cancelled' });
    expect(calls).toBe(0);
    // Claimed (the claim found the cancel), and nothing billed.
    expect(await redis.hget(keys.meta(data.id), 'owner')).toBe('w:0:1');
    expect((await usageOf(data.id)).filter((e) => e.inputTokens + e.outputTokens > 0)).toEqual([]);
  });

  it('a batch’s cancel heard while its call is under way lets the call finish: the answer and its bill are kept', async () => {
    const data = batchLine();
    const deps: WorkerDeps = depsWith(async (args) => {
      // The batch was cancelled now: the cancel only refuses a start.
      await requestCancel(redis, keys, data.id, 60_000, { unstarted: true });
      deps.cancels.refuseStart(data.id);
      if (args.signal?.aborted) throw args.signal.reason;
      return completion();
    });
    expect(await runAttempt(deps, input(data))).toEqual({ status: 'completed' });
    expect((await deps.store.read(data.id, 0)).map((f) => JSON.parse(f).type)).toEqual(['done']);
    expect(await usageOf(data.id)).toMatchObject([{ outcome: 'success', outputTokens: 1 }]);
  });

  it('a batch’s cancel heard while the line is queued: it ends cancelled without a call', async () => {
    const data = batchLine();
    let calls = 0;
    const deps = depsWith(async () => {
      calls++;
      return completion();
    });
    await requestCancel(redis, keys, data.id, 60_000, { unstarted: true });
    deps.cancels.refuseStart(data.id);
    expect(await runAttempt(deps, input(data))).toEqual({ status: 'cancelled' });
    expect(calls).toBe(0);
  });
});

describe('attempt: onCalling', () => {
  it('fires once the provider request was written, not when the call was started (undici writes on a reused keep-alive socket from a setImmediate)', async () => {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const body = sampleCompletion('chatcmpl-x');
        body.usage.prompt_tokens = 5;
        body.usage.completion_tokens = 1;
        body.usage.total_tokens = 6;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const order: string[] = [];
    const onSent = () => order.push('sent');
    subscribe('undici:client:sendHeaders', onSent);
    try {
      const deps = depsWith(callProvider);
      const config = providersFromEnv({ FAKE_PROVIDER_URL: base }).find((p) => p.id === 'openai');
      if (!config) throw new Error('no openai config');
      deps.provider = { config, adapter: adapterForConfig(config), key: () => undefined };
      // The first call opens the keep-alive connection; the next ones reuse it (the case that defers).
      expect(await runAttempt(deps, input(job({ deltas: false })))).toEqual({ status: 'completed' });
      for (let i = 0; i < 3; i++) {
        order.length = 0;
        const out = await runAttempt(
          deps,
          input(job({ deltas: false }), { onCalling: () => order.push('calling') }),
        );
        expect(out).toEqual({ status: 'completed' });
        expect(order).toEqual(['sent', 'calling']);
      }
    } finally {
      unsubscribe('undici:client:sendHeaders', onSent);
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('attempt: reasoning effort none', () => {
  it.each([
    // The catalog knows gpt-4o-mini does not reason: OpenAI would refuse the field, so it is left out.
    ['gpt-4o-mini', undefined],
    // A reasoning model, and one the catalog does not know, get it as sent.
    ['gpt-5-mini', 'none'],
    ['my-finetune', 'none'],
  ] as const)('reaches %s as %s', async (model, sent) => {
    const seen: unknown[] = [];
    const deps = depsWith(async (args) => {
      seen.push(args.request.reasoning_effort);
      return completion();
    });
    const data = job({
      request: { model, messages: [{ role: 'user', content: 'hi' }], reasoning_effort: 'none' },
      plan: [{ provider: 'openai', model }],
      deltas: false,
    });
    expect(await runAttempt(deps, input(data))).toEqual({ status: 'completed' });
    expect(seen).toEqual([sent]);
  });
});

describe('attempt: an embeddings job', () => {
  it('runs the embeddings call (not chat), ends in its embeddings frame after its running frame, and bills input tokens once', async () => {
    const data: JobData = {
      ...job(),
      op: 'embeddings',
      request: { model: 'text-embedding-3-small', input: ['a', 'b'], encoding_format: 'base64' },
      plan: [{ provider: 'openai', model: 'text-embedding-3-small' }],
    };
    const deps = depsWith(async () => {
      throw new Error('a chat call for an embeddings job');
    });
    deps.embed = async (args) => {
      expect(args.request).toEqual(data.request);
      return {
        embeddings: { model: 'text-embedding-3-small', vectors: [[0.5], [-1]], inputTokens: 2_000_000 },
        rateLimits: {},
        status: 200,
      };
    };
    expect(await runAttempt(deps, input(data))).toEqual({ status: 'completed' });
    const frames = (await deps.store.read(data.id, 0)).map((raw) => JSON.parse(raw));
    expect(frames.map((f) => f.type)).toEqual(['status', 'embeddings']);
    const result = frames[1].result;
    expect(result).toMatchObject({
      object: 'list',
      model: 'openai/text-embedding-3-small',
      usage: { prompt_tokens: 2_000_000, total_tokens: 2_000_000, cost: 0.04 },
    });
    expect(Buffer.from(result.data[1].embedding, 'base64').readFloatLE(0)).toBe(-1);
    const events = await usageOf(data.id);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      outcome: 'success',
      final: true,
      inputTokens: 2_000_000,
      outputTokens: 0,
    });
  });
});

describe('attempt: a provider answer that came but could not be used is billed (the provider billed it)', () => {
  /** 1 MiB of JSON floats. */
  const MiB = `${'0.0123456789,'.repeat(80_000)}`.padEnd(1024 * 1024, ' ');

  /** A provider answering every call with `status` and `body`, then (`endless`) floats until the socket closes. */
  async function provider(status: number, body: string, endless = false) {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/json' });
        if (!endless) return res.end(body);
        res.write(body);
        // At most 64 MiB: the reader stops at its cap and drops the socket.
        let sent = 0;
        const more = () => {
          while (sent < 64 * 1024 * 1024 && !res.destroyed) {
            sent += MiB.length;
            if (!res.write(MiB)) return void res.once('drain', more);
          }
          res.end();
        };
        more();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const deps = depsWith(callProvider);
    const config = providersFromEnv({ FAKE_PROVIDER_URL: base }).find((p) => p.id === 'openai');
    if (!config) throw new Error('no openai config');
    deps.provider = { config, adapter: adapterForConfig(config), key: () => undefined };
    return {
      deps,
      close: () => {
        server.closeAllConnections();
        server.close();
      },
    };
  }
  const request = { model: 'text-embedding-3-large', input: ['one text to embed', 'and another one'] };
  const embeddingsJob = (): JobData => ({
    ...job({ deltas: false }),
    op: 'embeddings',
    request,
    plan: [{ provider: 'openai', model: 'text-embedding-3-large' }],
  });

  it.each([
    ['too large', '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[', true],
    ['not JSON', '{"object":"list","data":[{"object":"embedding","ind', false],
    ['not an embeddings list', '{"object":"list","data":[]}', false],
  ] as const)(
    'embeddings, a 200 answer %s: the input tokens as estimated here, flagged estimated',
    async (_name, body, endless) => {
      const p = await provider(200, body, endless);
      try {
        const data = embeddingsJob();
        const out = await runAttempt(p.deps, input(data, { canRetry: false }));
        expect(out).toEqual({ status: 'failed', code: 'upstream_error' });
        const events = await usageOf(data.id);
        expect(events).toHaveLength(1);
        expect(events[0]).toMatchObject({
          outcome: 'failed',
          final: true,
          estimated: true,
          inputTokens: embeddingsTokens(request),
          outputTokens: 0,
        });
        expect(events[0]?.inputTokens).toBeGreaterThan(0);
      } finally {
        p.close();
      }
    },
  );

  it('a chat completion (not streamed) answered 200 but unreadable: its prompt, as estimated here', async () => {
    const p = await provider(200, '{"id":"chatcmpl-x","choices":[{"message":{"content":"cut');
    try {
      const data = job({ deltas: false });
      expect(await runAttempt(p.deps, input(data, { canRetry: false }))).toEqual({
        status: 'failed',
        code: 'upstream_error',
      });
      const [event, ...more] = await usageOf(data.id);
      expect(more).toEqual([]);
      expect(event).toMatchObject({ outcome: 'failed', final: true, estimated: true, outputTokens: 0 });
      expect(event?.inputTokens).toBeGreaterThan(0);
    } finally {
      p.close();
    }
  });

  it('a call the provider refused (500) produced nothing and bills nothing', async () => {
    const p = await provider(500, '{"error":{"message":"boom","type":"server_error","code":null}}');
    try {
      const data = embeddingsJob();
      expect(await runAttempt(p.deps, input(data, { canRetry: false }))).toEqual({
        status: 'failed',
        code: 'upstream_error',
      });
      const [event, ...more] = await usageOf(data.id);
      expect(more).toEqual([]);
      expect(event).toMatchObject({ outcome: 'failed', final: true, inputTokens: 0, outputTokens: 0 });
      expect(event?.estimated).toBeUndefined();
    } finally {
      p.close();
    }
  });
});
