import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BatchEndpoint, BatchOutputLine } from '@faregate/contracts/openai-batches';
import { fakeVector } from '@faregate/fake-provider/embeddings';
import { readJobStates } from '@faregate/queue/job-control';
import { makeKeys } from '@faregate/queue/keys';
import { until } from '@faregate/testing/env';
import { Redis } from 'ioredis';
import { type Stack, startStack } from './support/stack.ts';
import { adminCall } from './support/calls.ts';
import { type Backend, backends } from './support/s3.ts';

/** OpenAI's Batch API through the official SDK, against the real services (the fake provider the only fake). */
let stack: Stack;
let client: OpenAI;
let other: OpenAI;

const admin = (method: string, path: string, body?: unknown) => adminCall(stack, method, path, body);

const req = (id: string, content: string, model = 'gpt-4o-mini') => ({
  custom_id: id,
  method: 'POST',
  url: '/v1/chat/completions',
  body: { model, messages: [{ role: 'user', content }] },
});
const jsonl = (lines: unknown[]) =>
  `${lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')}\n`;

async function upload(text: string, c = client) {
  return c.files.create({ file: await toFile(Buffer.from(text), 'batch.jsonl'), purpose: 'batch' });
}
/** An embeddings line. */
const emb = (id: string, body: Record<string, unknown>) => ({
  custom_id: id,
  method: 'POST',
  url: '/v1/embeddings',
  body: { model: 'text-embedding-3-small', ...body },
});
/** A Responses line. */
const resp = (id: string, body: Record<string, unknown>) => ({
  custom_id: id,
  method: 'POST',
  url: '/v1/responses',
  body: { model: 'gpt-4o-mini', ...body },
});
async function start(
  lines: unknown[],
  metadata?: Record<string, string>,
  endpoint: BatchEndpoint = '/v1/chat/completions',
) {
  const f = await upload(jsonl(lines));
  return client.batches.create({
    input_file_id: f.id,
    endpoint,
    completion_window: '24h',
    ...(metadata ? { metadata } : {}),
  });
}
const ENDED = ['completed', 'failed', 'expired', 'cancelled'];
async function ended(id: string, c = client, timeoutMs = 60_000): Promise<Batch> {
  return until(
    async () => {
      const b = await c.batches.retrieve(id);
      return ENDED.includes(b.status) ? b : undefined;
    },
    { timeoutMs, intervalMs: 100, what: `batch ${id} to end` },
  );
}
/** The request's usage rows once billing has settled its final event. */
async function settled(requestId: string) {
  return until(
    async () => {
      const r = await stack.sql.query(
        'SELECT model, input_tokens, output_tokens, final, outcome FROM usage_events WHERE request_id = $1',
        [requestId],
      );
      return r.rows.some((x) => x.final) ? r.rows : undefined;
    },
    { timeoutMs: 15_000, what: `usage of ${requestId}` },
  );
}
async function linesOf(fileId: string | null | undefined, c = client) {
  if (!fileId) return [];
  const text = await (await c.files.content(fileId)).text();
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const v = JSON.parse(l) as { response: object | null };
      // As OpenAI writes its lines: compact, in its key order.
      expect(l.startsWith('{"id":"batch_req_')).toBe(true);
      expect(Object.keys(v)).toEqual(['id', 'custom_id', 'response', 'error']);
      if (v.response) expect(Object.keys(v.response)).toEqual(['status_code', 'request_id', 'body']);
      return BatchOutputLine.strict().parse(v);
    });
}

/** The job id of a batch's line (the first fed, or the one with `customId`) once it is fed. */
function fedJob(batchId: string, customId?: string): Promise<string> {
  return until(
    async () => {
      const id = (
        await stack.sql.query<{ job_id: string }>(
          'SELECT job_id FROM batch_lines WHERE batch_id = $1 AND ($2::text IS NULL OR custom_id = $2) AND job_id IS NOT NULL',
          [batchId, customId ?? null],
        )
      ).rows[0]?.job_id;
      // The line names its job before it queues it: fed once the job is there to see.
      if (id === undefined) return undefined;
      const seen = await fetch(`${stack.url}/v1/jobs/${id}`, {
        headers: { authorization: `Bearer ${stack.apiKey}` },
      });
      return seen.status === 200 ? id : undefined;
    },
    { what: `line ${customId ?? 'first'} of ${batchId} fed` },
  );
}

/** A completed output line's answer's usage. */
function usageOf<U>(l: BatchOutputLine): U {
  const body = l.response?.body as { usage?: U } | undefined;
  if (!body?.usage) throw new Error(`line ${l.custom_id} has no usage`);
  return body.usage;
}

describe.each(Object.keys(backends))('batches (files stored in %s)', (backendName) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await (backends[backendName] as () => Promise<Backend>)();
    stack = await startStack({
      providers: ['openai'],
      env: { BATCH_TICK_MS: '50', BATCH_MAX_IN_FLIGHT: '16' },
      ingressEnv: backend.env,
    });
    stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
    client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
    const acc = await admin('POST', '/admin/v1/accounts', { name: 'other tenant' });
    const k = await admin('POST', '/admin/v1/keys', { account_id: acc.id, name: 'k' });
    other = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: String(k.key), maxRetries: 0 });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await backend?.stop();
  });

  it('runs every line as a request and writes the output file in OpenAI line format', async () => {
    const b = await start(
      Array.from({ length: 6 }, (_, i) => req(`line-${i}`, `question ${i}`)),
      { team: 'a' },
    );
    expect(b).toMatchObject({
      object: 'batch',
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      status: 'validating',
      metadata: { team: 'a' },
      errors: null,
      output_file_id: null,
    });
    expect(b.id).toMatch(/^batch_/);
    expect(b.expires_at).toBe(b.created_at + 86_400);
    const done = await ended(b.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 6, completed: 6, failed: 0 });
    for (const k of ['in_progress_at', 'finalizing_at', 'completed_at'] as const) {
      expect(done[k]).toBeGreaterThanOrEqual(done.created_at);
      expect(done[k]).toBeLessThan(Date.now() / 1000 + 1);
    }
    expect(done.error_file_id).toBeNull();
    const out = await linesOf(done.output_file_id);
    expect(out.map((l) => l.custom_id)).toEqual(Array.from({ length: 6 }, (_, i) => `line-${i}`));
    for (const l of out) {
      expect(Object.keys(l).sort()).toEqual(['custom_id', 'error', 'id', 'response']);
      expect(l.id).toMatch(/^batch_req_/);
      expect(l.error).toBeNull();
      const response = l.response;
      if (!response) throw new Error('no response');
      expect(Object.keys(response).sort()).toEqual(['body', 'request_id', 'status_code']);
      expect(response.status_code).toBe(200);
      expect(response.body).toMatchObject({
        object: 'chat.completion',
        choices: [{ message: { role: 'assistant' } }],
      });
      // Billed once per line, under the line's request id (billing settles after the line's job
      // ends, so the batch can complete before the row is written).
      const usage = await settled(response.request_id);
      expect(usage.filter((x) => x.outcome === 'success')).toHaveLength(1);
    }
    const file = await client.files.retrieve(done.output_file_id ?? '');
    expect(file.purpose).toBe('batch_output');
  });

  it('streams no deltas for a line: its job keeps the replay window while it runs, and its frames are the accepted and done frames', async () => {
    // 8 tokens at 100 ms: the line runs for ~0.8 s (a non-streaming call takes as long as the reply).
    stack.fake.configure({ provider: 'openai', chunkMs: 100, tokens: 8 });
    const redis = new Redis(stack.redisUrl);
    const keys = makeKeys(stack.prefix);
    try {
      const b = await start([req('slow', 'take your time')]);
      const job = await fedJob(b.id);
      // Recorded when fed. A line's first start claims with its done frame (no write before its
      // provider call), so it reads `queued` until it ends.
      await until(async () => (await readJobStates(redis, keys, [job]))[0] === 'queued', {
        what: 'the line recorded',
      });
      // Its deadline leaves every call its hold covers (HOLD_CALLS, 2) a whole request timeout (600 s):
      // before, one request timeout, so a provider that never answered used it all (504, no retry).
      const queued = JSON.parse((await redis.hget(keys.bull('openai', job), 'data')) ?? '{}') as {
        created?: number;
        deadline?: number;
      };
      const span = (queued.deadline ?? 0) - (queued.created ?? 0);
      expect(span).toBeGreaterThan(2 * 600_000 - 10_000);
      expect(span).toBeLessThanOrEqual(2 * 600_000);
      // The day an async job keeps, not the 300 s (SYNC_TTL_SECONDS) of a caller waiting on the answer.
      expect(await redis.pttl(keys.meta(job))).toBeGreaterThan(3_600_000);
      expect(await redis.pttl(keys.frames(job))).toBeGreaterThan(3_600_000);
      const done = await ended(b.id);
      // Its done frame claimed it: the owner is the worker's first attempt.
      expect(await redis.hget(keys.meta(job), 'owner')).toMatch(/:0:1$/);
      const [line] = await linesOf(done.output_file_id);
      const frames = (await redis.xrange(keys.frames(job), '-', '+')).map(
        ([, f]) => JSON.parse(f[1] ?? '{}') as { type: string; result?: unknown },
      );
      expect(frames.map((f) => f.type)).toEqual(['accepted', 'done']);
      expect(frames[1]?.result).toEqual(line?.response?.body);
    } finally {
      redis.disconnect();
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
    }
  });

  it('fails validation naming each bad line: malformed JSON, a missing field, a duplicate custom_id, a wrong url', async () => {
    const b = await start([
      req('a', 'fine'),
      '{"custom_id": "b", "method": "POST", ',
      { method: 'POST', url: '/v1/chat/completions', body: {} },
      req('a', 'again'),
      { ...req('e', 'x'), url: '/v1/embeddings' },
      { ...req('f', 'x'), method: 'GET' },
      { ...req('g', 'x'), body: 'not an object' },
      { ...req('h', 'x'), method: undefined },
    ]);
    const done = await ended(b.id);
    expect(done.status).toBe('failed');
    expect(done.failed_at).toBeGreaterThanOrEqual(done.created_at);
    expect(done.output_file_id).toBeNull();
    const errors = done.errors?.data ?? [];
    expect(errors.map((e) => [e.line, e.code, e.param])).toEqual([
      [2, 'invalid_json_line', null],
      [3, 'missing_required_parameter', 'custom_id'],
      [4, 'duplicate_custom_id', 'custom_id'],
      [5, 'invalid_url', 'url'],
      [6, 'invalid_method', 'method'],
      [7, 'invalid_request', 'body'],
      [8, 'missing_required_parameter', 'method'],
    ]);
    expect(done.errors?.object).toBe('list');
    // Nothing ran.
    const lines = await stack.sql.query('SELECT count(*)::int AS n FROM batch_lines WHERE batch_id = $1', [
      b.id,
    ]);
    expect(lines.rows[0].n).toBe(0);
  });

  it('a line holding a lone UTF-16 surrogate fails the batch at validation naming that line, never an internal_error', async () => {
    // JSON.stringify writes the lone surrogate as the escape "\ud800", as the probe sent it.
    const b = await start([req('a', 'fine'), req('b', 'a\ud800b'), req('c', 'pair \ud83d\ude00')]);
    const done = await ended(b.id);
    expect(done.status).toBe('failed');
    expect(done.errors?.data?.map((e) => [e.line, e.code, e.param])).toEqual([[2, 'invalid_request', null]]);
    expect(done.errors?.data?.[0]?.message).toContain('lone UTF-16 surrogate');
  });

  it('puts a line that fails at run time in the error file, and the others complete', async () => {
    const b = await start([
      req('ok-1', 'one'),
      req('bad-model', 'two', 'no-such-model-xyz'),
      { ...req('bad-body', 'three'), body: { model: 'gpt-4o-mini', messages: 'nope' } },
      req('ok-2', 'four'),
    ]);
    const done = await ended(b.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 4, completed: 2, failed: 2 });
    expect((await linesOf(done.output_file_id)).map((l) => l.custom_id)).toEqual(['ok-1', 'ok-2']);
    const errs = await linesOf(done.error_file_id);
    expect(errs.map((l) => l.custom_id)).toEqual(['bad-model', 'bad-body']);
    const [model, body] = errs;
    expect(model?.response?.status_code).toBe(404);
    expect(model?.response?.body).toMatchObject({
      error: { type: 'invalid_request_error', message: expect.stringContaining('no-such-model-xyz') },
    });
    expect(body?.response?.status_code).toBe(400);
    expect(body?.error).toBeNull();
  });

  it("gives the batch's model and usage: the sums of its completed lines' usage, a failed line adding nothing", async () => {
    /** A line whose answer reports cached and reasoning tokens (the fake provider's directive). */
    const counted = (id: string, cached: number, reasoning: number) =>
      req(id, `count me ${id} [[fake:{"cachedTokens":${cached},"reasoningTokens":${reasoning}}]]`);
    const b = await start([
      counted('u1', 3, 5),
      req('u-bad-model', 'two', 'no-such-model-xyz'),
      counted('u2', 0, 7),
      { ...req('u-bad-body', 'three'), body: { model: 'gpt-4o-mini', messages: 'nope' } },
      counted('u3', 4, 0),
    ]);
    // Validating: no model known yet (absent, as OpenAI's SDK types it), and no tokens used.
    expect(b.status).toBe('validating');
    expect('model' in b).toBe(false);
    const zero = {
      input_tokens: 0,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 0,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 0,
    };
    expect(b.usage).toEqual(zero);
    const done = await ended(b.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 5, completed: 3, failed: 2 });
    // The model the first line names (OpenAI's batches hold one model).
    expect(done.model).toBe('gpt-4o-mini');
    const out = await linesOf(done.output_file_id);
    expect(out.map((l) => l.custom_id)).toEqual(['u1', 'u2', 'u3']);
    type ChatUsage = {
      prompt_tokens: number;
      completion_tokens: number;
      total_tokens: number;
      prompt_tokens_details: { cached_tokens: number };
      completion_tokens_details: { reasoning_tokens: number };
    };
    const usages = out.map((l) => usageOf<ChatUsage>(l));
    const sum = (f: (u: ChatUsage) => number) => usages.reduce((n, u) => n + f(u), 0);
    expect(done.usage).toEqual({
      input_tokens: sum((u) => u.prompt_tokens),
      input_tokens_details: { cached_tokens: sum((u) => u.prompt_tokens_details.cached_tokens) },
      output_tokens: sum((u) => u.completion_tokens),
      output_tokens_details: { reasoning_tokens: sum((u) => u.completion_tokens_details.reasoning_tokens) },
      total_tokens: sum((u) => u.total_tokens),
    });
    // The answers' own counts came through (not zeros summed to zeros).
    expect(done.usage?.input_tokens_details.cached_tokens).toBe(7);
    expect(done.usage?.output_tokens_details.reasoning_tokens).toBe(12);
    expect(done.usage?.total_tokens).toBe((done.usage?.input_tokens ?? 0) + (done.usage?.output_tokens ?? 0));
    // The failed lines are in the error file, with no usage to add.
    const errs = await linesOf(done.error_file_id);
    expect(errs.map((l) => l.custom_id)).toEqual(['u-bad-model', 'u-bad-body']);
    for (const l of errs) expect(l.response?.body).not.toHaveProperty('usage');
    // The list shows the same batch object.
    const listed = (await client.batches.list({ limit: 100 })).data.find((x) => x.id === b.id);
    expect(listed).toMatchObject({ model: 'gpt-4o-mini', usage: done.usage });
  });

  it('a batch whose lines name no model has none; its usage stays zero when no line answers', async () => {
    const b = await start([{ ...req('nm', 'x'), body: { messages: [{ role: 'user', content: 'x' }] } }]);
    const done = await ended(b.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 1, completed: 0, failed: 1 });
    expect('model' in done).toBe(false);
    expect(done.usage).toEqual({
      input_tokens: 0,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 0,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 0,
    });
  });

  it('lists with cursor pagination and keeps tenants apart', async () => {
    const a = await start([req('x', 'x')]);
    const c = await start([req('y', 'y')]);
    const page = await client.batches.list({ limit: 1 });
    expect(page.data.map((x) => x.id)).toEqual([c.id]);
    expect(page.has_more).toBe(true);
    const next = await client.batches.list({ limit: 1, after: c.id });
    expect(next.data.map((x) => x.id)).toEqual([a.id]);
    const all: string[] = [];
    for await (const x of client.batches.list({ limit: 2 })) all.push(x.id);
    expect(all.slice(0, 2)).toEqual([c.id, a.id]);
    expect(new Set(all).size).toBe(all.length);

    for (const call of [() => other.batches.retrieve(a.id), () => other.batches.cancel(a.id)]) {
      const e = await call().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    }
    const theirs: string[] = [];
    for await (const x of other.batches.list()) theirs.push(x.id);
    expect(theirs).toEqual([]);
    // Another tenant's batch is no cursor either: a 404 naming `after`, the parameter it came in.
    const cursor = await other.batches.list({ after: a.id }).then(
      () => undefined,
      (err: unknown) => err as InstanceType<typeof OpenAI.APIError>,
    );
    expect(cursor).toBeInstanceOf(OpenAI.NotFoundError);
    expect(cursor?.param).toBe('after');
    // Another tenant's file cannot be a batch's input either.
    const mine = await upload(jsonl([req('z', 'z')]));
    const e = await other.batches
      .create({ input_file_id: mine.id, endpoint: '/v1/chat/completions', completion_window: '24h' })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect(e).toMatchObject({ param: 'input_file_id' });
    await ended(a.id);
    await ended(c.id);
  });

  it('refuses a bad create in OpenAI shape', async () => {
    const f = await upload(jsonl([req('x', 'x')]));
    for (const [body, param] of [
      [
        { input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '1h' },
        'completion_window',
      ],
      [{ input_file_id: f.id, endpoint: '/v1/other', completion_window: '24h' }, 'endpoint'],
      [{ endpoint: '/v1/chat/completions', completion_window: '24h' }, 'input_file_id'],
      [
        { input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h', __proto__x: 1 },
        null,
      ],
    ] as const) {
      const r = await fetch(`${stack.url}/v1/batches`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(r.status).toBe(400);
      const e = ((await r.json()) as { error: { type: string; param: string | null } }).error;
      expect(e.type).toBe('invalid_request_error');
      expect(e.param).toBe(param);
    }
  });

  it('runs an embeddings batch: each line an embeddings request, its body the embeddings list, billed once', async () => {
    const b = await start(
      [
        emb('one', { input: 'hello world' }),
        emb('many', { input: ['first', 'second', 'third'] }),
        emb('short', { model: 'text-embedding-3-large', input: 'shortened', dimensions: 256 }),
        emb('b64', { input: 'bytes', encoding_format: 'base64' }),
      ],
      undefined,
      '/v1/embeddings',
    );
    expect(b.endpoint).toBe('/v1/embeddings');
    const done = await ended(b.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 4, completed: 4, failed: 0 });
    expect(done.error_file_id).toBeNull();
    const out = await linesOf(done.output_file_id);
    expect(out.map((l) => l.custom_id)).toEqual(['one', 'many', 'short', 'b64']);
    const bodies = out.map((l) => {
      expect(l.error).toBeNull();
      expect(l.response?.status_code).toBe(200);
      return l.response?.body as {
        object: string;
        model: string;
        data: { object: string; index: number; embedding: number[] | string }[];
        usage: { prompt_tokens: number; total_tokens: number };
      };
    });
    for (const body of bodies) {
      expect(body.object).toBe('list');
      expect(body.usage.prompt_tokens).toBeGreaterThan(0);
      for (const [i, d] of body.data.entries()) expect(d).toMatchObject({ object: 'embedding', index: i });
    }
    const [one, many, short, b64] = bodies;
    expect(one?.data.map((d) => d.embedding)).toEqual([
      fakeVector('text-embedding-3-small', 'hello world', 1536),
    ]);
    expect(many?.data.map((d) => d.embedding)).toEqual(
      ['first', 'second', 'third'].map((t) => fakeVector('text-embedding-3-small', t, 1536)),
    );
    expect(short?.data[0]?.embedding).toHaveLength(256);
    expect(short?.data[0]?.embedding).toEqual(fakeVector('text-embedding-3-large', 'shortened', 256));
    // base64: the float32 bytes of the vector, as the live door answers it.
    const raw = Buffer.from(String(b64?.data[0]?.embedding), 'base64');
    const floats = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    expect(floats).toHaveLength(1536);
    expect(Array.from(floats)).toEqual(
      Array.from(new Float32Array(fakeVector('text-embedding-3-small', 'bytes', 1536))),
    );
    // The model of its first line, and the sum of its lines' usage: input tokens, no output.
    expect(done.model).toBe('text-embedding-3-small');
    const input = bodies.reduce((n, x) => n + (x?.usage.prompt_tokens ?? 0), 0);
    expect(done.usage).toEqual({
      input_tokens: input,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 0,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: bodies.reduce((n, x) => n + (x?.usage.total_tokens ?? 0), 0),
    });
    expect(input).toBeGreaterThan(0);
    // Billed once per line, under the line's request id, for its input tokens (no output).
    for (const [i, l] of out.entries()) {
      const rows = await settled(l.response?.request_id ?? '');
      const ok = rows.filter((r) => r.outcome === 'success');
      expect(ok).toHaveLength(1);
      expect(ok[0]?.input_tokens).toBe(bodies[i]?.usage.prompt_tokens);
      expect(ok[0]?.output_tokens).toBe(0);
    }
  });

  it('runs a responses batch: each output body is a Responses API object, billed once', async () => {
    const b = await start(
      [
        resp('plain', { input: 'What is a batch?' }),
        resp('items', {
          instructions: 'Be brief.',
          input: [{ role: 'user', content: [{ type: 'input_text', text: 'Say hi.' }] }],
          max_output_tokens: 50,
          metadata: { run: 'r1' },
        }),
      ],
      undefined,
      '/v1/responses',
    );
    expect(b.endpoint).toBe('/v1/responses');
    const done = await ended(b.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    const out = await linesOf(done.output_file_id);
    expect(out.map((l) => l.custom_id)).toEqual(['plain', 'items']);
    for (const l of out) {
      expect(l.response?.status_code).toBe(200);
      const body = l.response?.body as {
        object: string;
        status: string;
        output: { type: string; role?: string; content?: { type: string; text: string }[] }[];
        usage: { input_tokens: number; output_tokens: number; total_tokens: number };
      };
      expect(body).toMatchObject({ object: 'response', status: 'completed' });
      const message = body.output.find((o) => o.type === 'message');
      expect(message?.role).toBe('assistant');
      expect(message?.content?.[0]?.type).toBe('output_text');
      expect(message?.content?.[0]?.text.length).toBeGreaterThan(0);
      expect(body.usage.total_tokens).toBe(body.usage.input_tokens + body.usage.output_tokens);
      const rows = await settled(l.response?.request_id ?? '');
      const ok = rows.filter((r) => r.outcome === 'success');
      expect(ok).toHaveLength(1);
      expect(ok[0]?.output_tokens).toBe(body.usage.output_tokens);
    }
    // Its usage: the sum of the Responses objects' usage.
    const usages = out.map((l) =>
      usageOf<{
        input_tokens: number;
        input_tokens_details: { cached_tokens: number };
        output_tokens: number;
        output_tokens_details: { reasoning_tokens: number };
        total_tokens: number;
      }>(l),
    );
    expect(done.model).toBe('gpt-4o-mini');
    expect(done.usage).toEqual({
      input_tokens: usages.reduce((n, u) => n + u.input_tokens, 0),
      input_tokens_details: {
        cached_tokens: usages.reduce((n, u) => n + u.input_tokens_details.cached_tokens, 0),
      },
      output_tokens: usages.reduce((n, u) => n + u.output_tokens, 0),
      output_tokens_details: {
        reasoning_tokens: usages.reduce((n, u) => n + u.output_tokens_details.reasoning_tokens, 0),
      },
      total_tokens: usages.reduce((n, u) => n + u.total_tokens, 0),
    });
    // The request's own fields are echoed, as the live door does.
    expect(out[1]?.response?.body).toMatchObject({
      instructions: 'Be brief.',
      max_output_tokens: 50,
      metadata: { run: 'r1' },
    });
  });

  it('fails an embeddings or responses batch naming each line whose url is not the batch endpoint', async () => {
    for (const [endpoint, good, wrong] of [
      ['/v1/embeddings', emb('a', { input: 'x' }), req('b', 'x')],
      ['/v1/responses', resp('a', { input: 'x' }), { ...emb('b', { input: 'x' }) }],
      ['/v1/embeddings', emb('a', { input: 'x' }), { ...emb('b', { input: 'x' }), url: '/v1/responses' }],
    ] as const) {
      const b = await start([good, wrong, good], undefined, endpoint);
      const done = await ended(b.id);
      expect(done.status).toBe('failed');
      expect((done.errors?.data ?? []).map((e) => [e.line, e.code, e.param])).toEqual([
        [2, 'invalid_url', 'url'],
        [3, 'duplicate_custom_id', 'custom_id'],
      ]);
      expect(done.errors?.data?.[0]?.message).toContain(`(${endpoint})`);
    }
  });

  it("validates each line's body as its endpoint's door does: a bad one ends in the error file, the rest run", async () => {
    const e = await start(
      [
        emb('ok', { input: 'fine' }),
        // A chat body sent to the embeddings endpoint.
        { ...req('chat-body', 'x'), url: '/v1/embeddings' },
        emb('empty', { input: '' }),
        emb('dims', { model: 'text-embedding-3-small', input: 'x', dimensions: 0 }),
        emb('chat-model', { model: 'gpt-4o-mini', input: 'x' }),
      ],
      undefined,
      '/v1/embeddings',
    );
    const r = await start(
      [
        resp('ok', { input: 'fine' }),
        // A chat body sent to the responses endpoint.
        { ...req('chat-body', 'x'), url: '/v1/responses' },
        resp('stored', { input: 'x', previous_response_id: 'resp_1' }),
        resp('bad-tokens', { input: 'x', max_output_tokens: 'many' }),
      ],
      undefined,
      '/v1/responses',
    );
    const expectations = [
      [
        e,
        ['ok'],
        [
          ['chat-body', 400, 'input'],
          ['empty', 400, 'input'],
          ['dims', 400, 'dimensions'],
          ['chat-model', 400, 'model'],
        ],
      ],
      [
        r,
        ['ok'],
        [
          ['chat-body', 400, 'input'],
          ['stored', 400, 'previous_response_id'],
          ['bad-tokens', 400, 'max_output_tokens'],
        ],
      ],
    ] as const;
    for (const [b, okIds, bad] of expectations) {
      const done = await ended(b.id);
      expect(done.status).toBe('completed');
      expect(done.request_counts).toEqual({
        total: okIds.length + bad.length,
        completed: 1,
        failed: bad.length,
      });
      expect((await linesOf(done.output_file_id)).map((l) => l.custom_id)).toEqual([...okIds]);
      const errs = await linesOf(done.error_file_id);
      expect(
        errs.map((l) => {
          const body = l.response?.body as { error: { type: string; param: string | null } };
          expect(body.error.type).toBe('invalid_request_error');
          expect(l.error).toBeNull();
          return [l.custom_id, l.response?.status_code, body.error.param];
        }),
      ).toEqual(bad.map((x) => [...x]));
      // Refused before anything was held or billed.
      for (const l of errs) {
        const u = await stack.sql.query('SELECT count(*)::int AS n FROM usage_events WHERE request_id = $1', [
          l.response?.request_id,
        ]);
        expect(u.rows[0].n).toBe(0);
      }
    }
  });

  it('an input file deleted while its batch validates fails the batch; a part of the file never runs as the whole', async () => {
    const N = 20_000;
    const text = jsonl(
      Array.from({ length: N }, (_, i) => req(`d${i}`, `delete race ${i} ${'x'.repeat(60)}`)),
    );
    // The delete lands before validation starts, while it reads the file's chunks, or after it.
    for (const delayMs of [0, 30, 100, 300]) {
      const f = await upload(text);
      const b = await client.batches.create({
        input_file_id: f.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      await new Promise((r) => setTimeout(r, delayMs));
      await client.files.delete(f.id);
      const after = await until(
        async () => {
          const x = await client.batches.retrieve(b.id);
          return x.status === 'validating' ? undefined : x;
        },
        { timeoutMs: 60_000, intervalMs: 20, what: `batch ${b.id} past validation` },
      );
      if (after.status === 'failed') {
        expect(after.errors?.data?.map((e) => e.code)).toEqual(['invalid_file']);
        expect(after.errors?.data?.[0]?.message).toMatch(/deleted|no longer exists/);
      } else {
        // Validated before the delete: the whole file, every line.
        expect(after.request_counts?.total, `delete after ${delayMs} ms`).toBe(N);
        await client.batches.cancel(b.id);
        expect((await ended(b.id)).status).toBe('cancelled');
      }
    }
  }, 180_000);

  it('a create retried with the same Idempotency-Key answers with the batch it created, never a second one', async () => {
    const f = await upload(jsonl([req('i1', 'idempotent create')]));
    const body = {
      input_file_id: f.id,
      endpoint: '/v1/chat/completions' as const,
      completion_window: '24h' as const,
    };
    // (The openai SDK sends no Idempotency-Key of its own: the header as a caller sets it.)
    const key = `batch-create-${f.id}`;
    const first = await client.batches.create(body, { headers: { 'Idempotency-Key': key } });
    const again = await client.batches.create(body, { headers: { 'Idempotency-Key': key } });
    expect(again.id).toBe(first.id);
    const page = await client.batches.list({ limit: 100 });
    expect(page.data.filter((b) => b.input_file_id === f.id)).toHaveLength(1);
    // The same key with another body is refused, in OpenAI's shape.
    const reused = await client.batches
      .create({ ...body, metadata: { other: 'body' } }, { headers: { 'Idempotency-Key': key } })
      .catch((e: unknown) => e);
    expect(reused).toMatchObject({ status: 422 });
    expect((await ended(first.id)).status).toBe('completed');
  });

  it('cancels: no more lines are fed, lines not started are stopped, lines in flight finish into the output', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 40, tokens: 10 });
    const modelCalls = () => stack.fake.calls().filter((c) => c.model !== null).length;
    const callsBefore = modelCalls();
    try {
      const b = await start(Array.from({ length: 200 }, (_, i) => req(`c${i}`, `slow ${i}`)));
      await until(async () => ((await client.batches.retrieve(b.id)).request_counts?.completed ?? 0) >= 1, {
        timeoutMs: 30_000,
        what: 'a first line done',
      });
      const c = await client.batches.cancel(b.id);
      expect(c.status).toBe('cancelling');
      expect(c.cancelling_at).toBeGreaterThanOrEqual(c.created_at);
      const done = await ended(b.id);
      expect(done.status).toBe('cancelled');
      expect(done.cancelled_at).toBeGreaterThanOrEqual(c.cancelling_at ?? 0);
      // Straight from cancelling to cancelled, as OpenAI's: never finalizing on the way.
      expect(done.finalizing_at ?? null).toBeNull();
      const counts = done.request_counts;
      expect(counts?.total).toBe(200);
      expect((counts?.completed ?? 0) + (counts?.failed ?? 0)).toBeLessThan(200);
      const out = await linesOf(done.output_file_id);
      expect(out.length).toBe(counts?.completed);
      // Every line whose provider call was made answered into the output file: a call under way at
      // the cancel finishes (stopped mid-call, its line would show nothing of what the provider did).
      expect(modelCalls() - callsBefore).toBe((counts?.completed ?? 0) + (counts?.failed ?? 0));
      // Cancelling again changes nothing.
      expect((await client.batches.cancel(b.id)).status).toBe('cancelled');
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
    }
  });

  it('a line whose own job is cancelled while its batch runs on ends in the error file: every line in one file, the counts adding up', async () => {
    // Each line takes ~2 s: the cancel reaches the line before it ends.
    stack.fake.configure({ provider: 'openai', chunkMs: 100, tokens: 20 });
    try {
      const b = await start([req('k0', 'first'), req('k1', 'second'), req('k2', 'third')]);
      const job = await fedJob(b.id, 'k1');
      const cancel = await fetch(`${stack.url}/v1/jobs/${job}/cancel`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}` },
      });
      expect(cancel.status).toBe(200);
      const done = await ended(b.id);
      // Before: completed with 2 of 3 counted, k1 in neither file (its call billed all the same).
      expect(done.status).toBe('completed');
      expect(done.request_counts).toEqual({ total: 3, completed: 2, failed: 1 });
      expect((await linesOf(done.output_file_id)).map((l) => l.custom_id).sort()).toEqual(['k0', 'k2']);
      const errors = await linesOf(done.error_file_id);
      expect(errors.map((l) => l.custom_id)).toEqual(['k1']);
      expect(errors[0]?.response?.status_code).toBe(499);
      expect(JSON.stringify(errors[0]?.response?.body)).toContain('"code":"cancelled"');
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
    }
  });

  it('refuses to cancel a batch that has finished: 409 in OpenAI shape, and the batch stays as it ended', async () => {
    const b = await start([req('done-1', 'hello')]);
    expect((await ended(b.id)).status).toBe('completed');
    const err = await client.batches.cancel(b.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.ConflictError);
    expect(err).toMatchObject({
      status: 409,
      error: {
        type: 'invalid_request_error',
        code: 'conflict',
        message: "Cannot cancel a batch with status 'completed'.",
      },
    });
    const after = await client.batches.retrieve(b.id);
    expect(after.status).toBe('completed');
    expect(after.cancelling_at ?? null).toBeNull();
  });

  /** A tenant with `usd` of credit, its client, and a batch of `n` lines each holding ~$0.02. */
  async function tenantBatch(usd: string, n: number) {
    const acc = await admin('POST', '/admin/v1/accounts', { name: `credit ${usd}` });
    await admin('POST', '/admin/v1/credits', { account_id: acc.id, amount_usd: usd });
    const k = await admin('POST', '/admin/v1/keys', { account_id: acc.id, name: 'k' });
    const mine = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: String(k.key), maxRetries: 0 });
    // 16,384 output tokens of gpt-4o-mini ($0.60 / M) on each of the calls a hold covers: ~$0.02 held
    // per line; each costs ~$0.00001 (8 tokens out).
    const big = (id: string) => ({
      ...req(id, `question ${id}`),
      body: { ...req(id, id).body, max_tokens: 16_384 },
    });
    const f = await upload(jsonl(Array.from({ length: n }, (_, i) => big(`c${i}`))), mine);
    const b = await mine.batches.create({
      input_file_id: f.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    return { acc, mine, b };
  }

  it("a line refused 402 because the batch's own lines hold the balance waits for them: every line runs", async () => {
    // $0.03 covers one line's hold, not two: before, the first feed ran one line and failed the rest 402.
    const { acc, mine, b } = await tenantBatch('0.03', 6);
    const done = await ended(b.id, mine, 60_000);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 6, completed: 6, failed: 0 });
    expect(done.error_file_id).toBeNull();
    expect(await linesOf(done.output_file_id, mine)).toHaveLength(6);
    // Each settled at its cost, and no hold is left.
    await until(
      async () => {
        const r = await stack.sql.query(
          `SELECT (SELECT count(*)::int FROM usage_events WHERE account_id = $1 AND final) AS settled,
                  (SELECT count(*)::int FROM holds WHERE account_id = $1) AS held`,
          [acc.id],
        );
        return r.rows[0].settled === 6 && r.rows[0].held === 0;
      },
      { what: 'every line settled, no hold left' },
    );
  });

  it('a line refused 402 with nothing of the account in flight or held fails with it: the batch still ends', async () => {
    // $0.01 covers no line's hold.
    const { mine, b } = await tenantBatch('0.01', 3);
    const done = await ended(b.id, mine, 60_000);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 3, completed: 0, failed: 3 });
    const errs = await linesOf(done.error_file_id, mine);
    expect(errs).toHaveLength(3);
    for (const l of errs)
      expect(l.response).toMatchObject({ status_code: 402, body: { error: { code: 'insufficient_quota' } } });
  });

  it('stops running lines on a key once it is revoked: the rest end in the error file as 401', async () => {
    const acc = await admin('POST', '/admin/v1/accounts', { name: 'revoked' });
    await admin('POST', '/admin/v1/credits', { account_id: acc.id, amount_usd: '5' });
    const k = await admin('POST', '/admin/v1/keys', { account_id: acc.id, name: 'k' });
    const mine = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: String(k.key), maxRetries: 0 });
    stack.fake.configure({ provider: 'openai', chunkMs: 30, tokens: 10 });
    try {
      const f = await upload(jsonl(Array.from({ length: 300 }, (_, i) => req(`k${i}`, `slow ${i}`))), mine);
      const b = await mine.batches.create({
        input_file_id: f.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      await until(async () => ((await mine.batches.retrieve(b.id)).request_counts?.completed ?? 0) >= 1, {
        timeoutMs: 30_000,
        what: 'a first line done',
      });
      await admin('POST', `/admin/v1/keys/${k.id}/revoke`, {});
      const done = await until(
        async () => {
          const r = await stack.sql.query('SELECT status, completed, failed FROM batches WHERE id = $1', [
            b.id,
          ]);
          return r.rows[0]?.status === 'completed' ? r.rows[0] : undefined;
        },
        { timeoutMs: 60_000, what: 'the batch to end' },
      );
      expect(done.completed).toBeLessThan(300);
      expect(done.failed).toBe(300 - done.completed);
      const errors = await stack.sql.query(
        `SELECT result FROM batch_lines WHERE batch_id = $1 AND state = 'failed' ORDER BY line LIMIT 1`,
        [b.id],
      );
      expect(errors.rows[0]?.result.response).toMatchObject({
        status_code: 401,
        body: { error: { code: 'invalid_api_key' } },
      });
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
    }
  }, 90_000);

  it('expires after its window, keeping what finished; lines in flight finish into the output', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 30, tokens: 10 });
    const modelCalls = () => stack.fake.calls().filter((c) => c.model !== null).length;
    const callsBefore = modelCalls();
    try {
      const b = await start(Array.from({ length: 300 }, (_, i) => req(`e${i}`, `slow ${i}`)));
      await until(async () => ((await client.batches.retrieve(b.id)).request_counts?.completed ?? 0) >= 1, {
        timeoutMs: 30_000,
        what: 'a first line done',
      });
      // The window (BATCH_WINDOW_SECONDS from create) passes now rather than in 24 h.
      const now = Math.floor(Date.now() / 1000);
      await stack.sql.query('UPDATE batches SET expires_at = $2 WHERE id = $1', [b.id, now]);
      const done = await ended(b.id, client, 60_000);
      expect(done.status).toBe('expired');
      expect(done.expired_at).toBeGreaterThanOrEqual(now);
      const completed = done.request_counts?.completed ?? 0;
      expect(completed).toBeGreaterThan(0);
      expect(completed).toBeLessThan(300);
      expect((await linesOf(done.output_file_id)).length).toBe(completed);
      const errs = await linesOf(done.error_file_id);
      expect(errs.length).toBe(300 - completed - (done.request_counts?.failed ?? 0));
      expect(errs[0]).toMatchObject({
        response: null,
        error: {
          code: 'batch_expired',
          message: 'This request could not be executed before the completion window expired.',
        },
      });
      // Every line whose provider call was made is in the output file, billed: a call under way when
      // the window ended finished (aborted, the provider's work would be shown nowhere and billed $0).
      expect(modelCalls() - callsBefore).toBe(completed + (done.request_counts?.failed ?? 0));
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
    }
  }, 120_000);
});
