import { request } from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { until } from '@faregate/testing/env';
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

const ask = (content: string) => [{ role: 'user' as const, content }];
/** Generation calls the fake served (model listings by discovery are not counted). */
const chatCalls = () => stack.fake.calls().filter((c) => c.model !== null).length;

async function usageRows(requestId: string) {
  const r = await stack.sql.query(
    'SELECT id, provider, model, input_tokens, output_tokens, cost_micros::text AS cost, outcome, final FROM usage_events WHERE request_id = $1',
    [requestId],
  );
  return r.rows as Array<{
    id: string;
    provider: string;
    model: string;
    input_tokens: number;
    output_tokens: number;
    cost: string;
    outcome: string;
    final: boolean;
  }>;
}

describe('chat completions through the whole system', () => {
  it('answers a non-streaming request with the official client, and bills it once', async () => {
    const { data: res, response } = await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask('What is the largest planet?') })
      .withResponse();
    expect(res.object).toBe('chat.completion');
    expect(res.model).toBe('openai/gpt-4o-mini');
    expect(res.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(res.choices[0]?.finish_reason).toBe('stop');
    expect(res.usage?.prompt_tokens).toBeGreaterThan(0);
    expect(res.usage?.completion_tokens).toBeGreaterThan(0);
    const requestId = response.headers.get('x-request-id');
    expect(requestId).toBe(res.id);

    const rows = await until(
      async () => {
        const r = await usageRows(res.id);
        return r.length > 0 ? r : undefined;
      },
      { what: 'usage row' },
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      provider: 'openai',
      model: 'gpt-4o-mini',
      input_tokens: res.usage?.prompt_tokens,
      output_tokens: res.usage?.completion_tokens,
      outcome: 'success',
      final: true,
    });
    expect(BigInt(rows[0]!.cost)).toBeGreaterThan(0n);
    // The fake provider served exactly one call for it, with the same usage.
    const calls = stack.fake.calls().filter((c) => c.provider === 'openai' && c.status === 200);
    expect(
      calls.some(
        (c) =>
          c.promptTokens === res.usage?.prompt_tokens && c.completionTokens === res.usage?.completion_tokens,
      ),
    ).toBe(true);
  });

  it('streams with stream: true, and the text equals the non-streamed answer', async () => {
    const messages = ask('Tell me about Jupiter');
    const plain = await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    let id = '';
    for await (const chunk of stream) {
      id = chunk.id;
      expect(chunk.object).toBe('chat.completion.chunk');
      if (chunk.choices[0]) {
        text += chunk.choices[0].delta.content ?? '';
        finish = chunk.choices[0].finish_reason ?? finish;
      } else {
        usage = chunk.usage;
      }
    }
    expect(text).toBe(plain.choices[0]?.message.content);
    expect(finish).toBe('stop');
    expect(usage?.completion_tokens).toBe(plain.usage?.completion_tokens);
    const rows = await until(async () => ((await usageRows(id)).length ? usageRows(id) : undefined), {
      what: 'usage row',
    });
    expect(rows[0]?.output_tokens).toBe(usage?.completion_tokens);
  });

  it('lists the models the configured pools serve', async () => {
    const models = await client.models.list();
    const ids = models.data.map((m) => m.id);
    expect(ids).toContain('openai/gpt-4o-mini');
    expect(models.data.every((m) => m.object === 'model')).toBe(true);
  });
});

describe('async jobs and the WebSocket', () => {
  it('accepts a job with 202, then serves its status and result', async () => {
    const r = await fetch(`${stack.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: ask('hello job') }),
    });
    expect(r.status).toBe(202);
    const job = (await r.json()) as { id: string; status: string };
    expect(job.status).toBe('queued');
    const done = await until(
      async () => {
        const g = await fetch(`${stack.url}/v1/jobs/${job.id}`, {
          headers: { authorization: `Bearer ${stack.apiKey}` },
        });
        const body = (await g.json()) as {
          status: string;
          result?: { choices: Array<{ message: { content: string } }> };
        };
        return body.status === 'completed' ? body : undefined;
      },
      { what: 'job completion' },
    );
    expect(done.result?.choices[0]?.message.content.length).toBeGreaterThan(0);
  });

  it('streams a job over the WebSocket: frames in order, ending with the result', async () => {
    const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    const frames: Array<Record<string, unknown>> = [];
    const finished = new Promise<void>((resolve, reject) => {
      ws.on('message', (d) => {
        const f = JSON.parse(d.toString()) as Record<string, unknown>;
        frames.push(f);
        if (f.type === 'done' || f.type === 'error') resolve();
        if (f.type === 'nack') reject(new Error(JSON.stringify(f)));
      });
      ws.on('error', reject);
    });
    await new Promise((r) => ws.once('open', r));
    ws.send(
      JSON.stringify({
        op: 'submit',
        id: 'c1',
        request: { model: 'gpt-4o-mini', messages: ask('stream me') },
      }),
    );
    await finished;
    ws.close();
    const jobFrames = frames.filter((f) => typeof f.seq === 'number');
    expect(jobFrames.map((f) => f.seq)).toEqual(jobFrames.map((_, i) => i + 1));
    expect(jobFrames[0]?.type).toBe('accepted');
    const text = jobFrames
      .filter((f) => f.type === 'delta')
      .map((f) => f.text ?? '')
      .join('');
    const done = jobFrames.at(-1) as {
      type: string;
      result: { choices: Array<{ message: { content: string } }> };
    };
    expect(done.type).toBe('done');
    expect(text).toBe(done.result.choices[0]?.message.content);
  });

  it('refuses a WebSocket without a valid key', async () => {
    const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/stream`, {
      headers: { authorization: 'Bearer nope' },
    });
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
    });
    expect(status).toBe(401);
  });
});

describe('bad input gets an OpenAI-shaped error and enqueues nothing', () => {
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json', ...headers },
      body,
    });

  it.each([
    ['invalid JSON', '{"model": "gpt-4o-mini", ', 400, null],
    ['missing messages', JSON.stringify({ model: 'gpt-4o-mini' }), 400, 'messages'],
    ['empty messages', JSON.stringify({ model: 'gpt-4o-mini', messages: [] }), 400, 'messages'],
    [
      'wrongly typed field',
      JSON.stringify({ model: 'gpt-4o-mini', messages: ask('x'), temperature: 'hot' }),
      400,
      'temperature',
    ],
    [
      'unknown field',
      JSON.stringify({ model: 'gpt-4o-mini', messages: ask('x'), api_base: 'http://evil' }),
      400,
      null,
    ],
    ['unknown model', JSON.stringify({ model: 'no-such-model', messages: ask('x') }), 404, 'model'],
    ['unknown provider', JSON.stringify({ model: 'nope/gpt-4o-mini', messages: ask('x') }), 404, 'model'],
  ])('%s', async (_name, body, status, param) => {
    const before = chatCalls();
    const r = await post(body);
    expect(r.status).toBe(status);
    const e = (await r.json()) as {
      error: { message: string; type: string; param: string | null; code: string | null };
    };
    expect(typeof e.error.message).toBe('string');
    expect(e.error.message.length).toBeGreaterThan(5);
    expect(typeof e.error.type).toBe('string');
    if (param) expect(e.error.param).toBe(param);
    expect(chatCalls()).toBe(before);
  });

  it('refuses a missing or wrong key with 401', async () => {
    const none = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    expect(none.status).toBe(401);
    const wrong = await post(JSON.stringify({ model: 'gpt-4o-mini', messages: ask('x') }), {
      authorization: 'Bearer fg_live_wrong',
    });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    const bad = new OpenAI({ apiKey: 'wrong-key', baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const refused = await bad.chat.completions
      .create({ model: 'gpt-4o-mini', messages: ask('x') })
      .catch((e) => e);
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
    // Every answer is quotable by its id, refusals before any job was made included.
    expect((refused as InstanceType<typeof OpenAI.APIError>).requestID).toMatch(/^req_/);
    const good = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const unknown = await good.chat.completions
      .create({ model: 'no-such-model', messages: ask('x') })
      .catch((e) => e);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect((unknown as InstanceType<typeof OpenAI.APIError>).requestID).toMatch(/^req_/);
    // Every other answer too: listings, unknown URLs, Anthropic's door (its own header as well).
    const auth = { authorization: `Bearer ${stack.apiKey}` };
    for (const [path, init] of [
      ['/v1/models', { headers: auth }],
      ['/v1/balance', { headers: auth }],
      ['/v1/nope', { headers: auth }],
      ['/v1/messages', { headers: auth }],
    ] as const) {
      const r = await fetch(`${stack.url}${path}`, init);
      await r.body?.cancel();
      expect(r.headers.get('x-request-id'), path).toMatch(/^req_/);
      if (path === '/v1/messages') expect(r.headers.get('request-id')).toBe(r.headers.get('x-request-id'));
    }
  });

  it('refuses a body over the limit with 413, from its declared length, without reading it', async () => {
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${stack.apiKey}`,
          'content-type': 'application/json',
          'content-length': 9 * 1024 * 1024,
        },
      });
      req.on('response', (res) => {
        let t = '';
        res.on('data', (c) => {
          t += c;
        });
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, text: t });
        });
      });
      req.on('error', (e) =>
        e.message.includes('EPIPE') || e.message.includes('ECONNRESET') ? undefined : reject(e),
      );
      req.write('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"');
    });
    expect(status).toBe(413);
    expect((JSON.parse(text) as { error: { message: string } }).error.message).toMatch(/too large/);
  });

  it('relays a provider error as an OpenAI-shaped error with a sensible status', async () => {
    stack.fake.script('openai', [{ fault: '400' }]);
    const err = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: ask('bad upstream') })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.status).toBe(400);
  });

  it('unknown routes answer 404 in the same shape', async () => {
    const r = await fetch(`${stack.url}/v1/nothing`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: { type: string } }).error.type).toBeTypeOf('string');
  });
});

describe('browser WebSocket tokens', () => {
  it('a short-lived token opens the WebSocket once, and only once', async () => {
    const r = await fetch(`${stack.url}/v1/stream/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(r.status).toBe(201);
    const { token } = (await r.json()) as { token: string };
    const open = (t: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(
          `${stack.url.replace('http', 'ws')}/v1/stream?token=${encodeURIComponent(t)}`,
        );
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => {
          ws.send(JSON.stringify({ op: 'ping', id: 'p' }));
          ws.once('message', (d) => {
            expect(JSON.parse(d.toString())).toMatchObject({ type: 'pong', id: 'p' });
            ws.close();
            resolve(101);
          });
        });
      });
    expect(await open(token)).toBe(101);
    expect(await open(token)).toBe(401);
    expect(await open('wst_forged')).toBe(401);
  });
});

describe('provider administration', () => {
  it('changes a pool limit at run time through the admin API, guarded by the admin token', async () => {
    const put = (body: unknown, token = stack.adminToken) =>
      fetch(`${stack.url}/admin/v1/providers/openai/limits`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect((await put({ rpm: 1234 }, 'not-the-admin-token')).status).toBe(401);
    expect((await put({ rpm: -1 })).status).toBe(400);
    expect((await put({ rpm: 1234, maxInFlight: 50 })).status).toBe(200);
    const r = await fetch(`${stack.url}/admin/v1/providers`, {
      headers: { authorization: `Bearer ${stack.adminToken}` },
    });
    const list = (await r.json()) as {
      data: Array<{ id: string; live: boolean; circuit: string; limit_overrides: Record<string, number> }>;
    };
    expect(list.data.find((p) => p.id === 'openai')).toMatchObject({
      live: true,
      circuit: 'closed',
      limit_overrides: { rpm: 1234, maxInFlight: 50 },
    });
    // `null` removes an override again.
    await put({ rpm: null, maxInFlight: null });
    // A pool that never registered (a typo) is a 404, not an override nobody reads.
    for (const name of ['opneai', 'constructor']) {
      const typo = await fetch(`${stack.url}/admin/v1/providers/${name}/limits`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ rpm: 5 }),
      });
      expect(typo.status).toBe(404);
      expect(((await typo.json()) as { error: { message: string } }).error.message).toContain(name);
    }
  });
});
