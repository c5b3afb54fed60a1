import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobData } from '@faregate/contracts/jobs';
import { newId } from '@faregate/contracts/ids';
import type { CallRecord, Fault } from '@faregate/fake-provider/server';
import { makeKeys } from '@faregate/queue/keys';
import { ProviderQueues } from '@faregate/queue/queues';
import { until } from '@faregate/testing/env';
import { type ApiBody, jobApi } from './support/jobs.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * What a stream that breaks is billed, seen from outside against the real services: a cut right
 * after a burst of content, an Anthropic stream cut or cancelled after `message_start` (which
 * already carries usage), a malformed event mid-stream, and the calls a request's hold covers.
 * Every attempt that produced tokens is billed at least what it streamed, exactly once.
 */

const MODELS = {
  openai: 'openai/gpt-4o-mini',
  anthropic: 'anthropic/claude-haiku-4-5',
  gemini: 'gemini/gemini-2.5-flash',
} as const;
type Provider = keyof typeof MODELS;
const PROVIDERS = Object.keys(MODELS) as Provider[];

let stack: Stack;
let api: ReturnType<typeof jobApi>;
let client: OpenAI;
let redis: Redis;

beforeAll(async () => {
  // Every test here breaks streams on purpose: circuits that never open keep each provider called.
  const config = join(tmpdir(), `stream-billing-${process.pid}.json`);
  const circuit = { minSamples: 1_000_000 };
  writeFileSync(
    config,
    JSON.stringify({ providers: Object.fromEntries(PROVIDERS.map((p) => [p, { circuit }])) }),
  );
  stack = await startStack({ providers: PROVIDERS, env: { FAREGATE_CONFIG: config } });
  api = jobApi(stack.url);
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
}, 90_000);

afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

interface UsageRow {
  id: string;
  provider: string;
  hop: number;
  attempt: number;
  input_tokens: number;
  output_tokens: number;
  outcome: string;
  final: boolean;
  cost: string;
}

/** Events each provider sends before its first content delta (role chunk; message_start, block start, ping). */
const PREAMBLE: Record<Provider, number> = { openai: 1, anthropic: 3, gemini: 0 };

const directive = (d: object) => `[[fake:${JSON.stringify(d)}]]`;

/** The request's usage rows once its final one settled, checked for exactly-once settlement. */
async function settled(requestId: string): Promise<UsageRow[]> {
  const rows = await until(
    async () => {
      const r = await stack.sql.query(
        `SELECT id, provider, hop, attempt, input_tokens, output_tokens, outcome, final, cost_micros::text AS cost
           FROM usage_events WHERE request_id = $1 ORDER BY hop, attempt`,
        [requestId],
      );
      return r.rows.some((x) => x.final) ? (r.rows as UsageRow[]) : undefined;
    },
    { what: `final usage of ${requestId}`, timeoutMs: 20_000 },
  );
  // Stable ids (request, hop, attempt), each settled once, and one final event per request.
  expect(rows.map((r) => r.id)).toEqual(rows.map((r) => `${requestId}.h${r.hop}.a${r.attempt}`));
  expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
  expect(rows.filter((r) => r.final)).toHaveLength(1);
  return rows;
}

/** Generation calls the fake served since `from` (listings excluded), in order. */
const callsSince = (from: number): CallRecord[] =>
  stack.fake
    .calls()
    .slice(from)
    .filter((c) => c.model !== null);

/**
 * Every call that produced tokens has its own usage row, billed at least the words it streamed.
 * `firstOnly`: an SSE caller that already received content cannot take a restart (the ingress ends
 * its stream and cancels the job), so a retry races the cancel: only the first call is checked.
 */
function expectEachCallBilled(rows: UsageRow[], calls: CallRecord[], opts: { firstOnly?: boolean } = {}) {
  const billed = rows.filter((r) => r.input_tokens + r.output_tokens > 0);
  expect(calls.length).toBeGreaterThan(0);
  if (!opts.firstOnly) expect(billed).toHaveLength(calls.length);
  for (const [i, call] of (opts.firstOnly ? calls.slice(0, 1) : calls).entries()) {
    expect(call.completionTokens).toBeGreaterThan(0);
    expect(billed[i]).toMatchObject({ outcome: 'failed' });
    expect(billed[i]?.output_tokens, `call ${i + 1}`).toBeGreaterThanOrEqual(call.completionTokens);
    expect(billed[i]?.input_tokens).toBeGreaterThan(0);
  }
}

/** Streams a chat completion over SSE until it ends or breaks; returns the request id and the text. */
async function sse(model: string, content: string, opts: { abortAfter?: number } = {}) {
  const ctrl = new AbortController();
  const { data: stream, response } = await client.chat.completions
    .create({ model, stream: true, messages: [{ role: 'user', content }] }, { signal: ctrl.signal })
    .withResponse();
  const id = response.headers.get('x-request-id') ?? '';
  let text = '';
  let chunks = 0;
  const error = await (async () => {
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      if (c.choices[0]?.delta.content && ++chunks === opts.abortAfter) ctrl.abort();
    }
  })().catch((e: unknown) => e);
  return { id, text, error };
}

/** Submits an async job and waits until it finished. */
async function job(model: string, content: string, extra: object = {}): Promise<ApiBody> {
  const r = await api.call(stack.apiKey, 'POST', '/v1/jobs', {
    model,
    messages: [{ role: 'user', content }],
    ...extra,
  });
  expect(r.status).toBe(202);
  return api.finished(stack.apiKey, r.body.id as string);
}

const words = (s: string) => s.trim().split(/\s+/).filter(Boolean).length;

describe('a stream cut right after a burst of content', () => {
  beforeAll(() => {
    // The burst is one delta of 24 words (a provider flushing output it held back); the body ends
    // right after that event's data line, before the blank line that would close it.
    stack.fake.configure({ tokens: 40, tokensPerChunk: 24, chunkMs: 0 });
  });
  afterAll(() => {
    stack.fake.configure({ tokens: 12, tokensPerChunk: 1 });
  });

  for (const provider of PROVIDERS) {
    const cut = directive({
      fault: 'cut_after_burst',
      afterChunks: PREAMBLE[provider],
      burstTokens: 24,
    });

    it(`${provider} over SSE: every call is billed at least the words it streamed`, async () => {
      const from = stack.fake.calls().length;
      const r = await sse(MODELS[provider], `Tell me more ${cut}`);
      expect(r.error).toBeInstanceOf(Error);
      expect(words(r.text)).toBe(24);
      const rows = await settled(r.id);
      expectEachCallBilled(rows, callsSince(from), { firstOnly: true });
    });

    it(`${provider} as an async job: every call is billed at least the words it streamed`, async () => {
      const from = stack.fake.calls().length;
      const done = await job(MODELS[provider], `Tell me more ${cut}`);
      expect(done.status).toBe('failed');
      const rows = await settled(done.id as string);
      expectEachCallBilled(rows, callsSince(from));
    });
  }
});

describe('anthropic: message_start already reports usage', () => {
  it('a stream cut mid-answer is billed what it streamed, not the placeholder', async () => {
    const from = stack.fake.calls().length;
    // message_start, content_block_start, ping, then eleven one-word deltas before the cut.
    const r = await sse(
      MODELS.anthropic,
      `Cut me ${directive({ fault: 'cut_mid_stream', afterChunks: 14 })}`,
    );
    expect(r.error).toBeInstanceOf(Error);
    const rows = await settled(r.id);
    expectEachCallBilled(rows, callsSince(from), { firstOnly: true });
    expect(rows[0]?.output_tokens).toBeGreaterThanOrEqual(11);
    expect(rows[0]?.output_tokens).toBeLessThanOrEqual(2 * 11);
  });

  it('a stream the caller cancels is billed what it streamed, not the placeholder', async () => {
    stack.fake.configure({ provider: 'anthropic', chunkMs: 20, tokens: 200 });
    try {
      const from = stack.fake.calls().length;
      const r = await sse(MODELS.anthropic, 'A long answer, please', { abortAfter: 8 });
      const rows = await settled(r.id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'cancelled', final: true });
      // The provider stops when the worker hangs up: what it sent is what was generated.
      const sent = await until(() => {
        const c = callsSince(from)[0];
        return c && c.completionTokens > 0 ? c.completionTokens : undefined;
      });
      expect(rows[0]?.output_tokens).toBeGreaterThanOrEqual(8);
      expect(rows[0]?.output_tokens).toBeGreaterThanOrEqual(sent - 2);
      expect(rows[0]?.output_tokens).toBeLessThan(200);
    } finally {
      stack.fake.configure({ provider: 'anthropic', chunkMs: 0, tokens: 12 });
    }
  });
});

describe('what a cut stream hides', () => {
  it('a cut n > 1 stream is billed every choice it streamed, not one max_tokens', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 5, tokens: 30 });
    try {
      const ctrl = new AbortController();
      const { data: stream, response } = await client.chat.completions
        .create(
          {
            model: MODELS.openai,
            stream: true,
            n: 4,
            max_tokens: 30,
            messages: [{ role: 'user', content: 'Four, please' }],
          },
          { signal: ctrl.signal },
        )
        .withResponse();
      let streamed = 0;
      let first = 0;
      await (async () => {
        for await (const c of stream) {
          for (const ch of c.choices) if (ch.delta.content) streamed++;
          if (c.choices.some((ch) => ch.index === 0 && ch.delta.content) && ++first === 25) ctrl.abort();
        }
      })().catch(() => {});
      const rows = await settled(response.headers.get('x-request-id') ?? '');
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'cancelled', final: true });
      // Before: capped at max_tokens (30) for all four answers together.
      expect(streamed).toBeGreaterThan(60);
      expect(rows[0]!.output_tokens).toBeGreaterThanOrEqual(streamed);
      expect(rows[0]!.output_tokens).toBeLessThanOrEqual(4 * 30);
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
    }
  });

  it("an OpenAI reasoning model's stream the caller cuts after one token is billed the reasoning it never showed", async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 5, tokens: 40 });
    try {
      const from = stack.fake.calls().length;
      const r = await sse('openai/o3', `Think hard ${directive({ reasoningTokens: 5000 })}`, {
        abortAfter: 1,
      });
      const rows = await settled(r.id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'cancelled', final: true });
      // The call ran on, unseen, to the provider's own count: 5,000 reasoning tokens and the answer.
      const call = callsSince(from)[0]!;
      expect(call.completionTokens).toBeGreaterThanOrEqual(5000);
      expect(rows[0]!.output_tokens).toBe(call.completionTokens);
      expect(rows[0]!.input_tokens).toBe(call.promptTokens);
      const reasoning = await stack.sql.query(
        'SELECT reasoning_tokens FROM usage_events WHERE request_id = $1',
        [r.id],
      );
      expect(reasoning.rows[0]).toEqual({ reasoning_tokens: 5000 });
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
    }
  });

  it('a model that shows all it makes is still cut at once when its caller goes', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 20, tokens: 200 });
    try {
      const from = stack.fake.calls().length;
      const r = await sse(MODELS.openai, 'A long answer, please', { abortAfter: 5 });
      const rows = await settled(r.id);
      expect(rows[0]).toMatchObject({ outcome: 'cancelled', final: true });
      expect(rows[0]!.output_tokens).toBeGreaterThanOrEqual(5);
      expect(rows[0]!.output_tokens).toBeLessThan(200);
      expect(callsSince(from)[0]!.completionTokens).toBeLessThan(200);
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
    }
  });
});

describe('a call the provider read, whose answer never reached the caller', () => {
  it('a whole answer the caller disconnects from, after the call was sent, is billed its prompt (cancelled)', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 30_000 });
    try {
      const from = stack.fake.calls().length;
      const ctrl = new AbortController();
      const pending = client.chat.completions
        .create(
          {
            model: MODELS.openai,
            messages: [{ role: 'user', content: 'A prompt the provider reads. '.repeat(50) }],
          },
          { signal: ctrl.signal },
        )
        .withResponse()
        .catch((e: unknown) => e);
      await until(() => (callsSince(from).length > 0 ? true : undefined), { what: 'the call sent' });
      ctrl.abort();
      expect(await pending).toBeInstanceOf(Error);
      const id = await until(
        async () =>
          (
            await stack.sql.query(
              "SELECT request_id FROM usage_events WHERE outcome = 'cancelled' AND provider = 'openai' AND input_tokens > 250 ORDER BY occurred_at DESC LIMIT 1",
            )
          ).rows[0]?.request_id as string | undefined,
        { what: 'the cancelled call settled' },
      );
      const rows = await settled(id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'cancelled', final: true, output_tokens: 0 });
      // Estimated from the prompt: at least what the provider counted.
      expect(rows[0]?.input_tokens).toBeGreaterThanOrEqual(callsSince(from)[0]!.promptTokens);
    } finally {
      stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
    }
  });

  it('a stream cut after its 2xx, before any content, is billed its prompt, each call', async () => {
    const from = stack.fake.calls().length;
    // Every call of the job is cut so (the directive is in the prompt): each is retried, then it fails.
    const done = await job(
      MODELS.openai,
      `No content ${directive({ fault: 'cut_mid_stream', afterChunks: 0 })}`,
    );
    expect(done.status).toBe('failed');
    const rows = await settled(done.id as string);
    const calls = callsSince(from);
    expect(calls.every((c) => c.status === 200)).toBe(true);
    expect(rows.filter((r) => r.input_tokens > 0)).toHaveLength(calls.length);
    for (const row of rows.filter((r) => r.input_tokens > 0)) {
      expect(row.input_tokens).toBeGreaterThanOrEqual(calls[0]!.promptTokens);
      expect(row.output_tokens).toBe(0);
    }
  });
});

describe('calls that cost little leave the hold room for more', () => {
  it('two calls cut after the prompt was read (each billed its prompt) are followed by a third that answers', async () => {
    const cut = { fault: 'cut_mid_stream', afterChunks: 0 } as Fault;
    stack.fake.script('openai', [cut, cut]);
    const from = stack.fake.calls().length;
    // Two cut calls, then the third attempt (WORKER_ATTEMPTS 3) answers: the hold of two of the
    // route's costliest calls still has room, as the cut calls cost only their prompts.
    const done = await job(MODELS.openai, 'Say something after two cuts', { max_tokens: 20 });
    expect(done.status).toBe('completed');
    const rows = await settled(done.id as string);
    expect(callsSince(from)).toHaveLength(3);
    expect(rows.filter((r) => r.input_tokens > 0)).toHaveLength(3);
    expect(rows.at(-1)).toMatchObject({ outcome: 'success', final: true });
  });
});

describe('a malformed event mid-stream', () => {
  beforeAll(() => stack.fake.configure({ tokens: 40 }));
  afterAll(() => stack.fake.configure({ tokens: 12 }));

  for (const provider of PROVIDERS) {
    // Ten one-word deltas, then an event whose JSON is cut short (the stream goes on after it).
    const bad = directive({ fault: 'malformed_sse', afterChunks: PREAMBLE[provider] + 10 });

    it(`${provider} over SSE: the words streamed before it are billed`, async () => {
      const from = stack.fake.calls().length;
      const r = await sse(MODELS[provider], `Go on ${bad}`);
      expect(r.error).toBeInstanceOf(Error);
      expect(words(r.text)).toBe(10);
      const rows = await settled(r.id);
      expect(callsSince(from).length).toBeGreaterThan(0);
      expect(rows[0]).toMatchObject({ outcome: 'failed' });
      expect(rows[0]?.output_tokens).toBeGreaterThanOrEqual(10);
    });

    it(`${provider} as an async job: every call is billed, retried or failed for good`, async () => {
      const from = stack.fake.calls().length;
      const done = await job(MODELS[provider], `Go on ${bad}`);
      expect(done.status).toBe('failed');
      const rows = await settled(done.id as string);
      // One row per call, each billed at least the ten words: the retried ones and the last one.
      const billed = rows.filter((x) => x.output_tokens > 0);
      expect(billed).toHaveLength(callsSince(from).length);
      expect(billed.at(-1)?.final).toBe(true);
      for (const row of billed) expect(row.output_tokens).toBeGreaterThanOrEqual(10);
    });
  }
});

describe('retries stay within the hold', () => {
  const burst = (n: number): Fault => ({ fault: 'cut_after_burst', afterChunks: 1, burstTokens: n });

  /** Account and key of the bootstrap key, for jobs put on the queue directly. */
  async function principal() {
    const r = await stack.sql.query('SELECT id, account_id FROM api_keys ORDER BY created_at LIMIT 1');
    return { key: r.rows[0].id as string, account: r.rows[0].account_id as string };
  }

  /** Puts a job on its first candidate's queue as the ingress would, with `holdCalls` set. */
  async function enqueue(plan: JobData['plan'], holdCalls: number, content: string): Promise<string> {
    const id = newId('req');
    const now = Date.now();
    const data: JobData = {
      v: 1,
      id,
      ...(await principal()),
      request: { model: plan[0]!.model, messages: [{ role: 'user', content }] },
      requestedModel: `${plan[0]!.provider}/${plan[0]!.model}`,
      plan,
      hop: 0,
      deltas: true,
      created: now,
      deadline: now + 60_000,
      holdCalls,
      attempts: [],
    };
    const queues = new ProviderQueues(redis, makeKeys(stack.prefix));
    await queues.add(data);
    await queues.close();
    return id;
  }

  it('the ingress hold: no call past holdCalls, and settlement within the hold', async () => {
    // Each call costs about its maximum: a short prompt, and 58 of the 60 allowed words streamed.
    stack.fake.configure({ provider: 'openai', firstByteMs: 150 });
    try {
      const from = stack.fake.calls().length;
      const cut = directive({ ...burst(58), tokens: 60 });
      const r = await api.call(stack.apiKey, 'POST', '/v1/jobs', {
        model: MODELS.openai,
        max_tokens: 60,
        messages: [{ role: 'user', content: `Hi ${cut}` }],
      });
      expect(r.status).toBe(202);
      const id = r.body.id as string;
      // What the ingress put on the job: how many calls its hold covers, and the hold itself.
      const raw = await redis.hget(`${stack.prefix}:{llm-openai}:${id}`, 'data');
      const data = JSON.parse(raw ?? '{}') as JobData;
      expect(data.hold?.micros).toMatch(/^\d+$/);
      const holdCalls = data.holdCalls ?? 1;

      const done = await api.finished(stack.apiKey, id);
      expect(done.status).toBe('failed');
      expect(done.error?.code).toBe('upstream_error');
      expect(done.error?.message).toMatch(/hold/);
      const rows = await settled(id);
      const calls = callsSince(from);
      expect(calls).toHaveLength(holdCalls);
      expectEachCallBilled(rows, calls);
      const total = rows.reduce((n, row) => n + BigInt(row.cost), 0n);
      expect(total).toBeGreaterThan(0n);
      expect(total).toBeLessThanOrEqual(BigInt(data.hold?.micros ?? '0'));
    } finally {
      stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
    }
  });

  it('holdCalls 1: a stream cut after content is not called again; the job fails with a clear error', async () => {
    const from = stack.fake.calls().length;
    const id = await enqueue([{ provider: 'openai', model: 'gpt-4o-mini' }], 1, `Hi ${directive(burst(8))}`);
    const done = await api.finished(stack.apiKey, id);
    expect(callsSince(from)).toHaveLength(1);
    expect(done.status).toBe('failed');
    expect(done.error).toMatchObject({ code: 'upstream_error', type: 'server_error' });
    expect(done.error?.message).toMatch(/retry budget covered by the request's hold is spent/);
    expect(done.error?.message).toContain('openai/gpt-4o-mini');
    const rows = await settled(id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'failed', final: true });
    expect(rows[0]?.output_tokens).toBeGreaterThanOrEqual(8);
  });

  it('holdCalls 2: the count survives a retry and a fallback hop; calls without tokens do not count', async () => {
    // openai: cut after content (1), then a context-length refusal (no tokens: falls back);
    // anthropic: cut after content (2): the hold is spent, so no retry on anthropic, no third call.
    stack.fake.script('openai', [burst(8), { fault: 'context_length' }]);
    stack.fake.script('anthropic', [{ ...burst(8), afterChunks: 3 }, burst(8)]);
    try {
      const from = stack.fake.calls().length;
      const id = await enqueue(
        [
          { provider: 'openai', model: 'gpt-4o-mini' },
          { provider: 'anthropic', model: 'claude-haiku-4-5' },
        ],
        2,
        'Hi there',
      );
      const done = await api.finished(stack.apiKey, id);
      const calls = callsSince(from);
      expect(calls.map((c) => `${c.provider}:${c.fault}`)).toEqual([
        'openai:cut_after_burst',
        'openai:context_length',
        'anthropic:cut_after_burst',
      ]);
      expect(done.status).toBe('failed');
      expect(done.error?.code).toBe('upstream_error');
      expect(done.error?.message).toMatch(/hold is spent/);
      expect(done.error?.message).toContain('openai/gpt-4o-mini');
      expect(done.error?.message).toContain('anthropic/claude-haiku-4-5');
      const rows = await settled(id);
      expect(rows.filter((r) => r.output_tokens > 0).map((r) => [r.provider, r.hop])).toEqual([
        ['openai', 0],
        ['anthropic', 1],
      ]);
    } finally {
      await fetch(`${stack.fake.url}/_control/faults`, { method: 'DELETE' });
    }
  });
});
