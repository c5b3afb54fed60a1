import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { hashApiKey } from '@faregate/db/api-keys';
import { createRedis } from '@faregate/queue/redis';
import { makeKeys } from '@faregate/queue/keys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { adminCall } from './support/calls.ts';
import { type Stack, startStack } from './support/stack.ts';

let stack: Stack;
let client: OpenAI;

beforeAll(async () => {
  stack = await startStack({ providers: ['openai'] });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
});

const chatCalls = () => stack.fake.calls().filter((c) => c.model !== null).length;
const body = (content: string, extra: Record<string, unknown> = {}) => ({
  model: 'openai/gpt-4o-mini',
  messages: [{ role: 'user', content }],
  ...extra,
});

async function post(path: string, json: unknown, key?: string) {
  const res = await fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${stack.apiKey}`,
      'content-type': 'application/json',
      ...(key ? { 'idempotency-key': key } : {}),
    },
    body: JSON.stringify(json),
  });
  const answer = (await res.json()) as {
    id?: string;
    error?: { code?: string; param?: string; message?: string };
  } & Record<string, unknown>;
  return { status: res.status, headers: res.headers, json: answer };
}

/** Waits until the async job `id` completed (so later tests count only their own provider calls). */
function jobCompleted(id: unknown): Promise<true> {
  return until(
    async () => {
      const r = await fetch(`${stack.url}/v1/jobs/${id}`, {
        headers: { authorization: `Bearer ${stack.apiKey}` },
      });
      return ((await r.json()) as { status?: string }).status === 'completed' ? true : undefined;
    },
    { what: `job ${id} completed` },
  );
}

async function usageCount(requestId: string): Promise<number> {
  const r = await stack.sql.query('SELECT count(*)::int AS n FROM usage_events WHERE request_id = $1', [
    requestId,
  ]);
  return r.rows[0].n as number;
}

describe('Idempotency-Key', () => {
  it('holds for a disguised spelling of the same route (the matched route decides, not the raw URL)', async () => {
    const before = chatCalls();
    const first = await post('/v1/chat/completions', body('Name a moon.'), 'chat-disguised-1');
    const again = await post('/v1/chat/%63ompletions', body('Name a moon.'), 'chat-disguised-1');
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.json.id).toBe(first.json.id);
    expect(chatCalls() - before).toBe(1);
  });

  it('runs a chat request once: a retry replays the same answer, and it is billed once', async () => {
    const before = chatCalls();
    const { data: first, response } = await client.chat.completions
      .create(
        { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'Name a prime.' }] },
        { headers: { 'Idempotency-Key': 'chat-once-1' } },
      )
      .withResponse();
    expect(response.headers.get('idempotent-replayed')).toBeNull();
    const again = await client.chat.completions
      .create(
        { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'Name a prime.' }] },
        { headers: { 'Idempotency-Key': 'chat-once-1' } },
      )
      .withResponse();
    expect(again.response.headers.get('idempotent-replayed')).toBe('true');
    expect(again.data).toEqual(first);
    // The replay says what served the answer, as the first response did.
    for (const h of ['x-faregate-provider', 'x-faregate-model', 'x-faregate-attempts']) {
      expect(response.headers.get(h), h).toBeTruthy();
      expect(again.response.headers.get(h), h).toBe(response.headers.get(h));
    }
    expect(chatCalls() - before).toBe(1);
    await until(async () => (await usageCount(first.id)) === 1, { what: 'one usage event' });

    // The same key with another body is refused; a key is scoped to its tenant's requests.
    const other = await post('/v1/chat/completions', body('Name another prime.'), 'chat-once-1');
    expect(other.status).toBe(422);
    expect(other.json.error).toMatchObject({ code: 'idempotency_key_reused', param: 'Idempotency-Key' });

    // Another API key of the same tenant has keys of its own: it neither replays this key's answer
    // (which may be of a model it may not call) nor is refused for a body this key sent.
    const [{ account_id }] = (await stack.sql.query('SELECT account_id FROM api_keys LIMIT 1')).rows;
    const sibling = await adminCall(stack, 'POST', '/admin/v1/keys', { account_id, name: 'sibling' });
    const siblingClient = new OpenAI({
      apiKey: sibling.key as string,
      baseURL: `${stack.url}/v1`,
      maxRetries: 0,
    });
    const create = (content: string, key: string) =>
      siblingClient.chat.completions
        .create(
          { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content }] },
          { headers: { 'Idempotency-Key': key } },
        )
        .withResponse();
    const own = await create('Name a prime.', 'chat-once-1');
    expect(own.response.headers.get('idempotent-replayed')).toBeNull();
    expect(own.data.id).not.toBe(first.id);
    const ownAgain = await create('Name a prime.', 'chat-once-1');
    expect(ownAgain.response.headers.get('idempotent-replayed')).toBe('true');
    expect(ownAgain.data.id).toBe(own.data.id);
    expect((await post('/v1/chat/completions', body('Name a moon of Mars.'), 'chat-twice-1')).status).toBe(
      200,
    );
    expect((await create('Name a moon of Jupiter.', 'chat-twice-1')).response.status).toBe(200);
    expect(chatCalls() - before).toBe(4);
  });

  it('a retry while the first request runs waits for it and gets the same answer', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 400 });
    try {
      const before = chatCalls();
      const json = body('Slowly, name a colour.');
      const [a, b] = await Promise.all([
        post('/v1/chat/completions', json, 'chat-concurrent-1'),
        // Sent once the first one is queued: it attaches to the running job.
        until(async () => (chatCalls() > before ? true : undefined), { what: 'first call started' }).then(
          () => post('/v1/chat/completions', json, 'chat-concurrent-1'),
        ),
      ]);
      expect(a.status).toBe(200);
      expect(b.status).toBe(200);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(b.json).toEqual(a.json);
      expect(chatCalls() - before).toBe(1);
    } finally {
      stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
    }
  });

  it('keeps running when the caller disconnects, and the retry gets the stored answer', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 300 });
    const redis = createRedis(stack.redisUrl);
    try {
      const before = chatCalls();
      const json = body('Name a river.');
      const gone = new AbortController();
      const first = fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${stack.apiKey}`,
          'content-type': 'application/json',
          'idempotency-key': 'chat-dropped-1',
        },
        body: JSON.stringify(json),
        signal: gone.signal,
      });
      await until(async () => (chatCalls() > before ? true : undefined), { what: 'call started' });
      gone.abort();
      await expect(first).rejects.toThrow();
      // The request ran to its end and its answer was kept.
      const [apiKey] = (
        await stack.sql.query('SELECT id, account_id FROM api_keys WHERE hash = $1', [
          hashApiKey(stack.apiKey),
        ])
      ).rows;
      const record = makeKeys(stack.prefix).idempotency(
        apiKey.account_id,
        apiKey.id,
        createHash('sha256').update('chat-dropped-1').digest('base64url'),
      );
      await until(async () => (await redis.hget(record, 'state')) === 'done', { what: 'answer kept' });
      const retry = await post('/v1/chat/completions', json, 'chat-dropped-1');
      expect(retry.status).toBe(200);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.json.object).toBe('chat.completion');
      expect(chatCalls() - before).toBe(1);
    } finally {
      redis.disconnect();
      stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
    }
  });

  it('replays a job submission, keeps nothing for a refused request, and validates the key', async () => {
    const first = await post('/v1/jobs', body('An async question.'), 'job-1');
    expect(first.status).toBe(202);
    const retry = await post('/v1/jobs', body('An async question.'), 'job-1');
    expect(retry.status).toBe(202);
    expect(retry.json.id).toBe(first.json.id);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');

    // Invalid the first time: nothing kept, the corrected request may reuse the key.
    const bad = await post('/v1/jobs', { model: 'openai/gpt-4o-mini', messages: [] }, 'job-2');
    expect(bad.status).toBe(400);
    const fixed = await post('/v1/jobs', body('Fixed.'), 'job-2');
    expect(fixed.status).toBe(202);

    const tooLong = await post('/v1/jobs', body('x'), 'k'.repeat(256));
    expect(tooLong.status).toBe(400);
    expect(tooLong.json.error?.param).toBe('Idempotency-Key');

    // The two jobs ran once each; wait for them so later tests count only their own provider calls.
    for (const id of [first.json.id, fixed.json.id]) await jobCompleted(id);
  });

  it('a create whose answer died with its ingress: the retry answers with what it created, or, when it created nothing, runs it once it is stale', async () => {
    const redis = createRedis(stack.redisUrl);
    const [apiKey] = (
      await stack.sql.query('SELECT id, account_id FROM api_keys WHERE hash = $1', [hashApiKey(stack.apiKey)])
    ).rows;
    const recordOf = (k: string) =>
      makeKeys(stack.prefix).idempotency(
        apiKey.account_id,
        apiKey.id,
        createHash('sha256').update(k).digest('base64url'),
      );
    // What a kill -9 after the create and before the answer leaves: the record pending, no answer kept.
    const answerLost = (k: string) =>
      redis
        .multi()
        .hset(recordOf(k), 'state', 'pending')
        .hdel(recordOf(k), 'status', 'body', 'headers')
        .exec();
    const redisNow = async () => {
      const [s, us] = await redis.time();
      return Number(s) * 1000 + Math.floor(Number(us) / 1000);
    };
    try {
      // A job.
      const job = body('A job whose answer was lost.');
      const first = await post('/v1/jobs', job, 'lost-job');
      expect(first.status).toBe(202);
      await answerLost('lost-job');
      const retry = await post('/v1/jobs', job, 'lost-job');
      expect(retry.status).toBe(202);
      expect(retry.json.id).toBe(first.json.id);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.headers.get('location')).toBe(`/v1/jobs/${first.json.id}`);

      // A job batch.
      const batch = { requests: [body('One.'), body('Two.')] };
      const firstBatch = await post('/v1/jobs', batch, 'lost-batch');
      expect(firstBatch.status).toBe(202);
      await answerLost('lost-batch');
      const retryBatch = await post('/v1/jobs', batch, 'lost-batch');
      expect(retryBatch.status).toBe(202);
      expect(retryBatch.json.id).toBe(firstBatch.json.id);
      expect((retryBatch.json.jobs as { id: string }[]).map((j) => j.id)).toEqual(
        (firstBatch.json.jobs as { id: string }[]).map((j) => j.id),
      );

      // An OpenAI batch.
      const file = await client.files.create({
        file: await OpenAI.toFile(
          Buffer.from(
            `${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: body('Hi.') })}\n`,
          ),
          'in.jsonl',
        ),
        purpose: 'batch',
      });
      const create = {
        input_file_id: file.id,
        endpoint: '/v1/chat/completions' as const,
        completion_window: '24h' as const,
      };
      const made = await client.batches.create(create, {
        headers: { 'Idempotency-Key': 'lost-openai-batch' },
      });
      await answerLost('lost-openai-batch');
      const again = await client.batches.create(create, {
        headers: { 'Idempotency-Key': 'lost-openai-batch' },
      });
      expect(again.id).toBe(made.id);

      // Nothing created (the ingress died in admission): 409 while it may still be running, then,
      // once stale, the retry runs it, once.
      const fresh = body('Created nothing.');
      const ran = await post('/v1/jobs', fresh, 'lost-nothing');
      await answerLost('lost-nothing');
      await redis.hdel(recordOf('lost-nothing'), 'job', 'created');
      const early = await post('/v1/jobs', fresh, 'lost-nothing');
      expect(early.status).toBe(409);
      expect(Number(early.headers.get('retry-after'))).toBeGreaterThan(1);
      await redis.hset(recordOf('lost-nothing'), 'at', (await redisNow()) - 61_000);
      const [taken, second] = await Promise.all([
        post('/v1/jobs', fresh, 'lost-nothing'),
        post('/v1/jobs', fresh, 'lost-nothing'),
      ]);
      // One retry takes it over; the other is told to retry (or, if later, replays it).
      const winner = [taken, second].find((r) => r.status === 202 && r.json.id !== ran.json.id);
      expect(winner).toBeDefined();
      expect(
        [taken, second].filter((r) => r.status === 202 && r.headers.get('idempotent-replayed') !== 'true'),
      ).toHaveLength(1);
      const replay = await post('/v1/jobs', fresh, 'lost-nothing');
      expect(replay.status).toBe(202);
      expect(replay.json.id).toBe(winner?.json.id);
      // Named but never created (the ingress died between): once stale, the retry creates it under
      // the id the first request named, the one Postgres keeps for the key.
      const named = body('Named, never created.');
      const namedFirst = await post('/v1/jobs', named, 'lost-named');
      await answerLost('lost-named');
      const never = `req_${'n'.repeat(22)}`;
      await redis.hset(recordOf('lost-named'), 'job', never, 'at', (await redisNow()) - 61_000);
      const takenNamed = await post('/v1/jobs', named, 'lost-named');
      expect(takenNamed.status).toBe(202);
      expect(takenNamed.json.id).toBe(never);
      // Everything this test made has run, so the next test counts only its own provider calls.
      const members = (firstBatch.json.jobs as { id: string }[]).map((j) => j.id);
      for (const id of [first.json.id, ...members, ran.json.id, winner?.json.id, namedFirst.json.id, never])
        await jobCompleted(id);
      await until(
        async () => ((await client.batches.retrieve(made.id)).status === 'completed' ? true : undefined),
        { what: `batch ${made.id} completed` },
      );
    } finally {
      redis.disconnect();
    }
  });

  it('replays a streamed answer as the same chunks, also after the caller dropped mid-stream', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 20, tokens: 12 });
    try {
      const before = chatCalls();
      const params = {
        model: 'openai/gpt-4o-mini',
        messages: [{ role: 'user' as const, content: 'Stream a sentence.' }],
        stream: true as const,
      };
      const read = async () => {
        const chunks: string[] = [];
        const { data: s, response } = await client.chat.completions
          .create(params, { headers: { 'Idempotency-Key': 'stream-1' } })
          .withResponse();
        for await (const c of s) chunks.push(c.choices[0]?.delta?.content ?? '');
        return { text: chunks.join(''), replayed: response.headers.get('idempotent-replayed') };
      };
      const first = await read();
      expect(first.text.length).toBeGreaterThan(0);
      expect(first.replayed).toBeNull();
      // The replay says so, as a replayed non-streaming answer does.
      expect(await read()).toEqual({ text: first.text, replayed: 'true' });
      expect(chatCalls() - before).toBe(1);

      // A caller that drops mid-stream: the job goes on, and the retry gets the whole answer.
      const dropped = new AbortController();
      const s = await client.chat.completions.create(
        { ...params, messages: [{ role: 'user', content: 'Stream another sentence.' }] },
        { headers: { 'Idempotency-Key': 'stream-2' }, signal: dropped.signal },
      );
      let got = '';
      for await (const c of s) {
        got += c.choices[0]?.delta?.content ?? '';
        if (got.length > 0) {
          dropped.abort();
          break;
        }
      }
      const whole = await (async () => {
        const chunks: string[] = [];
        const { data: r, response } = await client.chat.completions
          .create(
            { ...params, messages: [{ role: 'user', content: 'Stream another sentence.' }] },
            { headers: { 'Idempotency-Key': 'stream-2' } },
          )
          .withResponse();
        expect(response.headers.get('idempotent-replayed')).toBe('true');
        for await (const c of r) chunks.push(c.choices[0]?.delta?.content ?? '');
        return chunks.join('');
      })();
      expect(whole.startsWith(got)).toBe(true);
      expect(whole.length).toBeGreaterThan(got.length);
      expect(chatCalls() - before).toBe(2);
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
    }
  });
});
