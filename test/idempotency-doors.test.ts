import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

/**
 * `Idempotency-Key` on the doors other than chat completions (`/v1/messages`, `/v1/responses`,
 * `/v1/embeddings`), behaving as on `/v1/chat/completions`: a retry replays the same answer with
 * no second provider call and no second bill, also while the first still runs and for streams; the
 * same key with another body is a 422 in the door's own error shape.
 */
let stack: Stack;
let openai: OpenAI;
let anthropic: Anthropic;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai', 'anthropic'] });
  openai = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const calls = () => stack.fake.calls().filter((c) => c.model !== null).length;

async function post(path: string, json: unknown, key?: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${stack.apiKey}`,
      'anthropic-version': '2023-06-01',
      'content-type': 'application/json',
      ...(key === undefined ? {} : { 'idempotency-key': key }),
      ...headers,
    },
    body: JSON.stringify(json),
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

async function usageEvents(requestId: string): Promise<number> {
  const r = await stack.sql.query('SELECT count(*)::int AS n FROM usage_events WHERE request_id = $1', [
    requestId,
  ]);
  return r.rows[0].n as number;
}

const messagesBody = (content: string) => ({
  model: 'anthropic/claude-haiku-4-5',
  max_tokens: 64,
  messages: [{ role: 'user', content }],
});
const responsesBody = (input: string) => ({ model: 'openai/gpt-4o-mini', input });
const embeddingsBody = (input: string) => ({ model: 'openai/text-embedding-3-small', input });

describe.each([
  ['/v1/messages', messagesBody],
  ['/v1/responses', responsesBody],
  ['/v1/embeddings', embeddingsBody],
] as const)('Idempotency-Key on %s', (path, body) => {
  const key = (name: string) => `${path.slice(4)}-${name}`;

  it('runs once: the retry replays the same answer, with one provider call and one bill', async () => {
    const before = calls();
    const first = await post(path, body('Name a lake.'), key('once'));
    expect(first.status).toBe(200);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await post(path, body('Name a lake.'), key('once'));
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.json).toEqual(first.json);
    expect(calls() - before).toBe(1);
    const id = first.headers.get('x-request-id') ?? '';
    expect(again.headers.get('x-request-id')).toBe(id);
    await until(async () => ((await usageEvents(id)) > 0 ? true : undefined), { what: 'usage settled' });
    expect(await usageEvents(id)).toBe(1);
  });

  it('the same key with another body is a 422 in the door’s error shape', async () => {
    await post(path, body('Name a hill.'), key('reused'));
    const other = await post(path, body('Name a valley.'), key('reused'));
    expect(other.status).toBe(422);
    if (path === '/v1/messages') {
      expect(other.json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
      expect(JSON.stringify(other.json)).toContain('Idempotency-Key');
    } else {
      expect(other.json.error).toMatchObject({ code: 'idempotency_key_reused', param: 'Idempotency-Key' });
    }
  });

  it('a retry while the first runs waits for it and gets the same answer', async () => {
    const provider = path === '/v1/messages' ? 'anthropic' : 'openai';
    stack.fake.configure({ provider, firstByteMs: 400 });
    try {
      const before = calls();
      const json = body('Slowly, name a sea.');
      const [a, b] = await Promise.all([
        post(path, json, key('concurrent')),
        until(async () => (calls() > before ? true : undefined), { what: 'first call started' }).then(() =>
          post(path, json, key('concurrent')),
        ),
      ]);
      expect(a.status).toBe(200);
      expect(b.status).toBe(200);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(b.json).toEqual(a.json);
      expect(calls() - before).toBe(1);
    } finally {
      stack.fake.configure({ provider, firstByteMs: 0 });
    }
  });
});

describe('streamed door answers replay as the same events', () => {
  it('/v1/messages: the SDK reads the same message from the replay', async () => {
    const before = calls();
    const params = { ...messagesBody('Stream a line.'), stream: true as const };
    const read = async () => {
      const { data, response } = await anthropic.messages
        .create(params as Anthropic.MessageCreateParamsStreaming, {
          headers: { 'Idempotency-Key': 'messages-stream-1' },
        })
        .withResponse();
      const events: string[] = [];
      for await (const e of data) events.push(JSON.stringify(e));
      return { events, replayed: response.headers.get('idempotent-replayed') };
    };
    const first = await read();
    expect(first.replayed).toBeNull();
    expect(first.events.length).toBeGreaterThan(3);
    expect(await read()).toEqual({ events: first.events, replayed: 'true' });
    expect(calls() - before).toBe(1);
  });

  it('/v1/responses: the SDK reads the same response from the replay', async () => {
    const before = calls();
    const read = async () => {
      const s = openai.responses.stream(responsesBody('Stream a word.'), {
        headers: { 'Idempotency-Key': 'responses-stream-1' },
      });
      return await s.finalResponse();
    };
    const first = await read();
    const again = await read();
    expect(again).toEqual(first);
    expect(calls() - before).toBe(1);
  });
});

describe('a 429 is not kept for the key', () => {
  it('a retry after the pause runs, instead of replaying the 429 for the key’s whole TTL', async () => {
    const impatient = { 'x-faregate-patience-ms': '0' };
    // A 429 with retry-after pauses the anthropic pool for a moment.
    const pausing = await post(
      '/v1/messages',
      messagesBody('Busy? [[fake:{"fault":"429","retryAfterMs":1500}]]'),
      undefined,
      impatient,
    );
    expect(pausing.status).toBe(429);
    const json = messagesBody('Name a glacier.');
    const first = await post('/v1/messages', json, 'messages-429', impatient);
    expect(first.status).toBe(429);
    expect(first.json).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect(first.headers.get('retry-after')).not.toBeNull();
    // Retried as told: once the pause is over it runs (a kept 429 would be replayed every time).
    const again = await until(
      async () => {
        const r = await post('/v1/messages', json, 'messages-429', impatient);
        expect(r.headers.get('idempotent-replayed')).toBeNull();
        return r.status === 200 ? r : undefined;
      },
      { what: 'the retry answered', timeoutMs: 15_000, intervalMs: 100 },
    );
    expect(again.json).toMatchObject({ type: 'message', role: 'assistant' });
    // A retry of that answer replays it.
    const replay = await post('/v1/messages', json, 'messages-429', impatient);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.json).toEqual(again.json);
  });
});
