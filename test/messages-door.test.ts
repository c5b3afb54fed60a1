import { request } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.ts';
import { finalUsage } from './support/calls.ts';

/**
 * The Anthropic Messages door (`/v1/messages`) with the official SDK, unchanged, against the real
 * services: every provider's model behind it, whole and streamed, tool round trips, and errors in
 * Anthropic's shape for everything a caller can get wrong.
 */
let stack: Stack;
let client: Anthropic;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai', 'anthropic', 'gemini'] });
  client = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const MODELS = [
  ['openai', 'openai/gpt-4o-mini'],
  ['anthropic', 'anthropic/claude-haiku-4-5'],
  ['gemini', 'gemini/gemini-2.5-flash'],
] as const;

const weather: Anthropic.Tool = {
  name: 'get_weather',
  description: 'Current weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

const settled = (requestId: string) => finalUsage(stack, requestId);

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** The SSE events of a raw stream, as [event name, data]. */
function events(text: string): Array<[string, Record<string, unknown>]> {
  return text
    .split('\n\n')
    .filter((b) => b.trim() !== '')
    .map((b) => {
      const name = /^event: (.*)$/m.exec(b)?.[1] ?? '';
      const data = /^data: (.*)$/m.exec(b)?.[1] ?? '{}';
      return [name, JSON.parse(data) as Record<string, unknown>];
    });
}

describe.each(MODELS)('%s behind /v1/messages', (provider, model) => {
  it('answers structured output (output_config.format) with JSON following the schema', async () => {
    const schema = {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' } },
      required: ['city', 'days'],
      additionalProperties: false,
    };
    const msg = await client.messages.create({
      model,
      max_tokens: 256,
      messages: [{ role: 'user', content: `Plan a trip, ${provider}.` }],
      output_config: { format: { type: 'json_schema', schema } },
    } as Anthropic.MessageCreateParamsNonStreaming);
    const text = msg.content[0]?.type === 'text' ? msg.content[0].text : '';
    expect(JSON.parse(text)).toEqual({ city: 'Oslo', days: 4 });
  });

  it('answers a whole message with the usage billing settled', async () => {
    const {
      data: msg,
      response,
      request_id,
    } = await client.messages
      .create({
        model,
        max_tokens: 64,
        system: 'Be brief.',
        messages: [
          { role: 'user', content: `Hello ${provider}.` },
          { role: 'assistant', content: 'Hi. What do you want to know?' },
          { role: 'user', content: [{ type: 'text', text: 'Something short.' }] },
        ],
      })
      .withResponse();
    expect(msg.type).toBe('message');
    expect(msg.role).toBe('assistant');
    expect(msg.model.startsWith(`${provider}/`)).toBe(true);
    expect(response.headers.get('x-faregate-provider')).toBe(provider);
    expect(msg.stop_reason).toBe('end_turn');
    expect(msg.content[0]?.type).toBe('text');
    const text = msg.content[0]?.type === 'text' ? msg.content[0].text : '';
    expect(text.length).toBeGreaterThan(0);
    const id = response.headers.get('x-request-id')!;
    expect(msg.id).toBe(id);
    // The SDK reads Anthropic's own header: the answer can be quoted by its id.
    expect(request_id).toBe(id);
    const billed = await settled(id);
    const u = msg.usage;
    expect(u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0)).toBe(
      billed.input_tokens,
    );
    expect(u.output_tokens).toBe(billed.output_tokens);
  });

  it('streams the same answer with the SDK, ending with the final usage', async () => {
    const params = {
      model,
      max_tokens: 64,
      messages: [{ role: 'user' as const, content: `Stream to me, ${provider}.` }],
    };
    const whole = await client.messages.create(params);
    const stream = client.messages.stream(params);
    let text = '';
    stream.on('text', (t) => {
      text += t;
    });
    const final = await stream.finalMessage();
    expect(stream.request_id).toMatch(/^req_/);
    expect(whole.content[0]?.type === 'text' && whole.content[0].text).toBe(text);
    expect(final.content).toEqual(whole.content);
    expect(final.stop_reason).toBe('end_turn');
    expect(final.model).toBe(whole.model);
    expect(final.usage.output_tokens).toBe(whole.usage.output_tokens);
    expect(final.usage.input_tokens).toBe(whole.usage.input_tokens);
  });

  it('does a tool-call round trip (tool_use, then tool_result), whole and streamed', async () => {
    const ask: Anthropic.MessageParam = { role: 'user', content: 'What is the weather in Oslo?' };
    const first = await client.messages.create({ model, max_tokens: 64, tools: [weather], messages: [ask] });
    expect(first.stop_reason).toBe('tool_use');
    const use = first.content.find((b) => b.type === 'tool_use');
    expect(use).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { city: 'Oslo' } });
    const streamed = await client.messages
      .stream({ model, max_tokens: 64, tools: [weather], messages: [ask] })
      .finalMessage();
    expect(streamed.stop_reason).toBe('tool_use');
    expect(streamed.content.find((b) => b.type === 'tool_use')).toMatchObject({
      name: 'get_weather',
      input: { city: 'Oslo' },
    });
    if (use?.type !== 'tool_use') throw new Error('no tool_use');
    const second = await client.messages.create({
      model,
      max_tokens: 64,
      tools: [weather],
      tool_choice: { type: 'auto' },
      messages: [
        ask,
        { role: 'assistant', content: first.content },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: use.id, content: '4°C, rain' },
            { type: 'text', text: 'Thanks, now summarize.' },
          ],
        },
      ],
    });
    expect(second.stop_reason).toBe('end_turn');
    expect(second.content[0]?.type).toBe('text');
  });

  it('counts tokens with the same bound admission holds, never below what the provider bills', async () => {
    const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'Count me, please, every word.' }];
    const { data: counted, request_id } = await client.messages
      .countTokens({ model, messages, system: 'Be brief.' })
      .withResponse();
    expect(request_id).toMatch(/^req_/);
    const { data, response } = await client.messages
      .create({ model, max_tokens: 16, messages, system: 'Be brief.' })
      .withResponse();
    const billed = await settled(response.headers.get('x-request-id')!);
    expect(counted.input_tokens).toBeGreaterThanOrEqual(billed.input_tokens);
    expect(data.usage.input_tokens).toBeGreaterThan(0);
    // The request messages.parse would send (output_config) is counted too, as Anthropic counts it.
    const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
    const structured = await client.messages.countTokens({
      model,
      messages,
      output_config: { format: { type: 'json_schema', schema } },
    });
    expect(structured.input_tokens).toBeGreaterThan(0);
  });
});

describe('the rest of the Messages format', () => {
  it("the SDK's tool runner runs its loop: the message thread it asks for is refused as Anthropic refuses one it cannot hold, and it goes on without", async () => {
    let ran = 0;
    const final = await client.beta.messages.toolRunner({
      model: 'anthropic/claude-haiku-4-5',
      max_tokens: 200,
      messages: [{ role: 'user', content: 'What is the weather in Oslo? Use the tool.' }],
      tools: [
        {
          ...weather,
          run: async () => {
            ran++;
            return 'sunny, 21 °C';
          },
        },
      ],
    });
    expect(ran).toBeGreaterThan(0);
    expect(final.stop_reason).toBe('end_turn');
    // The refusal itself, as the SDK reads it.
    const r = await post(
      '/v1/messages',
      {
        model: 'anthropic/claude-haiku-4-5',
        max_tokens: 8,
        messages: [{ role: 'user', content: 'hi' }],
        thread: { type: 'create' },
      },
      { 'x-api-key': stack.apiKey },
    );
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', details: { error_code: 'thread_unsupported_request' } },
    });
  });

  it('sends images (base64 and url), stop sequences, metadata and tool_choice any', async () => {
    const png =
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
    const msg = await client.messages.create({
      model: 'anthropic/claude-haiku-4-5',
      max_tokens: 32,
      stop_sequences: ['###'],
      metadata: { user_id: 'user-42' },
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/cat.png' } },
            { type: 'text', text: 'What is in these pictures?' },
          ],
        },
      ],
    });
    expect(msg.content[0]?.type).toBe('text');
    const forced = await client.messages.create({
      model: 'openai/gpt-4o-mini',
      max_tokens: 32,
      tools: [weather],
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
      messages: [{ role: 'user', content: 'Tell me a joke.' }],
    });
    expect(forced.stop_reason).toBe('tool_use');
  });

  it('reports cache reads as Anthropic does: input_tokens excludes them, billing counts them', async () => {
    const { data, response } = await client.messages
      .create({
        model: 'anthropic/claude-haiku-4-5',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'Cached prompt [[fake:{"cachedTokens":5}]] with more words.' }],
      })
      .withResponse();
    expect(data.usage.cache_read_input_tokens).toBe(5);
    const billed = await settled(response.headers.get('x-request-id')!);
    expect(data.usage.input_tokens + 5).toBe(billed.input_tokens);
  });

  it('prompt caching: cache_control reaches Anthropic; the write, then the reads, are reported and billed at their prices', async () => {
    const system: Anthropic.TextBlockParam[] = [
      {
        type: 'text',
        text: 'The handbook says many things. '.repeat(200),
        cache_control: { type: 'ephemeral' },
      },
    ];
    const ask = (question: string) =>
      client.messages
        .create({
          model: 'anthropic/claude-haiku-4-5',
          max_tokens: 8,
          system,
          messages: [{ role: 'user', content: question }],
        })
        .withResponse();
    const row = async (id: string) => {
      await settled(id);
      return (
        await stack.sql.query(
          'SELECT input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost_micros FROM usage_events WHERE request_id = $1 AND final',
          [id],
        )
      ).rows[0] as Record<string, number | string>;
    };
    const first = await ask('What does it say?');
    const written = first.data.usage.cache_creation_input_tokens ?? 0;
    expect(written).toBeGreaterThan(1024);
    const second = await ask('What else?');
    expect(second.data.usage.cache_read_input_tokens).toBe(written);
    expect(second.data.usage.cache_creation_input_tokens).toBe(0);
    // Billed at Haiku 4.5's prices: input $1, cache write $1.25, cache read $0.10, output $5 per 1M.
    for (const [r, u] of [
      [await row(first.response.headers.get('x-request-id')!), first.data.usage],
      [await row(second.response.headers.get('x-request-id')!), second.data.usage],
    ] as const) {
      const read = u.cache_read_input_tokens ?? 0;
      const write = u.cache_creation_input_tokens ?? 0;
      expect(r).toMatchObject({
        cached_input_tokens: read,
        cache_write_tokens: write,
        output_tokens: u.output_tokens,
      });
      expect(Number(r.input_tokens)).toBe(u.input_tokens + read + write);
      const micros = u.input_tokens * 1 + write * 1.25 + read * 0.1 + u.output_tokens * 5;
      expect(Number(r.cost_micros)).toBe(Math.ceil(micros - 1e-9));
    }

    // The chat door takes the same breakpoint on a content part (LiteLLM's spelling).
    const chat = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const viaChat = await chat.chat.completions.create({
      model: 'anthropic/claude-haiku-4-5',
      max_tokens: 8,
      messages: [
        {
          role: 'system',
          content: [{ type: 'text', text: system[0]!.text, cache_control: { type: 'ephemeral' } }] as never,
        },
        { role: 'user', content: 'And then?' },
      ],
    });
    expect(viaChat.usage?.prompt_tokens_details?.cached_tokens).toBe(written);
  });

  it("streams Anthropic's exact event sequence", async () => {
    const r = await post(
      '/v1/messages',
      {
        model: 'gemini/gemini-2.5-flash',
        max_tokens: 32,
        stream: true,
        messages: [{ role: 'user', content: 'What is the weather in Oslo?' }],
        tools: [weather],
      },
      { 'x-api-key': stack.apiKey },
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const evs = events(await r.text());
    for (const [name, data] of evs) expect(data.type).toBe(name);
    const names = evs.map(([n]) => n);
    expect(names.slice(0, 3)).toEqual(['message_start', 'content_block_start', 'ping']);
    expect(names.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    expect(names.filter((n) => n === 'content_block_delta').length).toBeGreaterThan(0);
    const start = evs[1]![1] as { content_block: { type: string; name: string } };
    expect(start.content_block).toMatchObject({ type: 'tool_use', name: 'get_weather' });
    const json = evs
      .filter(([n]) => n === 'content_block_delta')
      .map(([, d]) => (d.delta as { type: string; partial_json: string }).partial_json)
      .join('');
    expect(JSON.parse(json)).toEqual({ city: 'Oslo' });
    const delta = evs.at(-2)![1] as { delta: { stop_reason: string }; usage: { output_tokens: number } };
    expect(delta.delta.stop_reason).toBe('tool_use');
    expect(delta.usage.output_tokens).toBeGreaterThan(0);
  });

  it("message_start carries the prompt's counts when the provider told them first (Anthropic), as LangChain reads them", async () => {
    const usageAtStart = async (model: string) => {
      const r = await post(
        '/v1/messages',
        {
          model,
          max_tokens: 32,
          stream: true,
          messages: [{ role: 'user', content: 'Count my prompt, please.' }],
        },
        { 'x-api-key': stack.apiKey },
      );
      const evs = events(await r.text());
      const start = evs[0]![1] as { message: { usage: { input_tokens: number } } };
      const end = evs.at(-2)![1] as { usage: { input_tokens: number } };
      return { start: start.message.usage.input_tokens, end: end.usage.input_tokens };
    };
    const claude = await usageAtStart('anthropic/claude-haiku-4-5');
    expect(claude.start).toBeGreaterThan(0);
    expect(claude.start).toBe(claude.end);
    // Gemini counts at the end only: 0 at the start, the count in message_delta.
    const gemini = await usageAtStart('gemini/gemini-2.5-flash');
    expect(gemini.start).toBe(0);
    expect(gemini.end).toBeGreaterThan(0);
  });

  it('passes temperature and top_p (the SDK no longer types them)', async () => {
    const r = await post(
      '/v1/messages',
      {
        model: 'anthropic/claude-haiku-4-5',
        max_tokens: 8,
        temperature: 0.5,
        top_p: 0.9,
        messages: [{ role: 'user', content: 'hi' }],
      },
      { 'x-api-key': stack.apiKey },
    );
    expect(r.status).toBe(200);
    const bad = await post(
      '/v1/messages',
      {
        model: 'openai/gpt-4o-mini',
        max_tokens: 8,
        temperature: 1.5,
        messages: [{ role: 'user', content: 'hi' }],
      },
      { 'x-api-key': stack.apiKey },
    );
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });

  it('a parameter a target cannot honour is refused by the name the caller sent', async () => {
    const err = await client.messages
      .create({
        model: 'gemini/gemini-2.5-flash',
        max_tokens: 8,
        metadata: { user_id: 'user-42' },
        messages: [{ role: 'user', content: 'hi' }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as Error).message).toMatch(/'metadata\.user_id' is not supported by gemini/);
  });

  it('accepts the key as Authorization: Bearer too (newer SDKs)', async () => {
    const r = await post(
      '/v1/messages',
      { model: 'openai/gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] },
      { authorization: `Bearer ${stack.apiKey}`, 'anthropic-version': '2026-01-01' },
    );
    expect(r.status).toBe(200);
    expect(((await r.json()) as { type: string }).type).toBe('message');
  });

  it('an empty Authorization header does not hide x-api-key', async () => {
    const body = { model: 'openai/gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] };
    const r = await post('/v1/messages', body, { authorization: '', 'x-api-key': stack.apiKey });
    expect(r.status).toBe(200);
  });

  it("an unknown path under /v1/messages is a 404 in Anthropic's shape (the SDK's message batches)", async () => {
    for (const [method, path] of [
      ['POST', '/v1/messages/batches'],
      ['GET', '/v1/messages/batches/msgbatch_01'],
      ['GET', '/v1/messages'],
    ] as const) {
      const r = await fetch(`${stack.url}${path}`, {
        method,
        headers: {
          'x-api-key': stack.apiKey,
          'anthropic-version': '2023-06-01',
          'content-type': 'application/json',
        },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(await r.json()).toMatchObject({
        type: 'error',
        error: { type: 'not_found_error', message: `Unknown request URL: ${method} ${path}.` },
      });
    }
    // Elsewhere, OpenAI's shape as before.
    const other = await fetch(`${stack.url}/v1/nothing`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(other.status).toBe(404);
    expect(await other.json()).toMatchObject({ error: { code: 'not_found' } });
  });

  it('thinking goes to reasoning models and is refused, naming it, for the others', async () => {
    const ok = await client.messages.create({
      model: 'anthropic/claude-haiku-4-5',
      max_tokens: 4096,
      thinking: { type: 'enabled', budget_tokens: 2048 },
      messages: [{ role: 'user', content: 'Think first.' }],
    });
    expect(ok.stop_reason).toBe('end_turn');
    const err = await client.messages
      .create({
        model: 'openai/gpt-4o-mini',
        max_tokens: 4096,
        thinking: { type: 'enabled', budget_tokens: 2048 },
        messages: [{ role: 'user', content: 'Think first.' }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as Error).message).toMatch(/thinking is not supported by openai\/gpt-4o-mini/);
    // Extended thinking cannot be forced to use a tool (Anthropic takes auto or none): refused at
    // the ingress, naming tool_choice, before anything is queued or held.
    for (const tool_choice of [{ type: 'any' as const }, { type: 'tool' as const, name: 'get_weather' }]) {
      const forced = await client.messages
        .create({
          model: 'anthropic/claude-haiku-4-5',
          max_tokens: 4096,
          thinking: { type: 'enabled', budget_tokens: 2048 },
          tools: [weather],
          tool_choice,
          messages: [{ role: 'user', content: 'Weather in Oslo?' }],
        })
        .catch((e: unknown) => e);
      expect(forced, tool_choice.type).toBeInstanceOf(Anthropic.BadRequestError);
      expect((forced as InstanceType<typeof Anthropic.APIError>).error, tool_choice.type).toMatchObject({
        type: 'error',
        error: { type: 'invalid_request_error', message: expect.stringContaining('tool_choice') },
      });
      expect(
        (forced as InstanceType<typeof Anthropic.APIError>).headers?.get('x-faregate-attempts'),
      ).toBeFalsy();
    }
  });

  it('a prefill (a last assistant turn) goes only to Anthropic models: another would answer anew', async () => {
    const prefilled = (model: string) =>
      client.messages.create({
        model,
        max_tokens: 16,
        messages: [
          { role: 'user', content: 'Give me a JSON object.' },
          { role: 'assistant', content: '{"a":' },
        ],
      });
    const ok = await prefilled('anthropic/claude-haiku-4-5');
    expect(ok.type).toBe('message');
    for (const model of ['openai/gpt-4o-mini', 'gemini/gemini-2.5-flash']) {
      const err = await prefilled(model).catch((e: unknown) => e);
      expect(err, model).toBeInstanceOf(Anthropic.BadRequestError);
      expect((err as InstanceType<typeof Anthropic.APIError>).error, model).toMatchObject({
        type: 'error',
        error: { type: 'invalid_request_error', message: expect.stringMatching(/^messages\.1: .*prefill/) },
      });
    }
    // Counted as it would be served: refused alike.
    const counted = await post(
      '/v1/messages/count_tokens',
      {
        model: 'openai/gpt-4o-mini',
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'Sure,' },
        ],
      },
      { 'x-api-key': stack.apiKey },
    );
    expect(counted.status).toBe(400);
    // The same conversation through /v1/chat/completions is OpenAI's: the model answers after it.
    const chat = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'openai/gpt-4o-mini',
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'Sure,' },
        ],
      }),
    });
    expect(chat.status).toBe(200);
  });

  it('thinking with tools, multi-turn: the thinking blocks go back to Anthropic first, signed, unchanged', async () => {
    const model = 'anthropic/claude-haiku-4-5';
    const thinking = { type: 'enabled' as const, budget_tokens: 1024 };
    const ask: Anthropic.MessageParam = { role: 'user', content: 'What is the weather in Oslo?' };
    const base = { model, max_tokens: 4096, thinking, tools: [weather] };
    const whole = await client.messages.create({ ...base, messages: [ask] });
    const streamed = await client.messages.stream({ ...base, messages: [ask] }).finalMessage();
    for (const first of [whole, streamed]) {
      expect(first.stop_reason).toBe('tool_use');
      expect(first.content.map((b) => b.type)).toEqual(['thinking', 'tool_use']);
      const t = first.content[0];
      if (t?.type !== 'thinking') throw new Error('no thinking block');
      expect(t.signature.length).toBeGreaterThan(0);
      const use = first.content[1];
      if (use?.type !== 'tool_use') throw new Error('no tool_use');
      const result: Anthropic.MessageParam = {
        role: 'user',
        content: [{ type: 'tool_result', tool_use_id: use.id, content: '4°C, rain' }],
      };
      // The fake, like Anthropic, refuses a tool-use turn with thinking on unless that turn starts
      // with its thinking, and checks the signature: this answer means it saw them as they came.
      const second = await client.messages.create({
        ...base,
        messages: [ask, { role: 'assistant', content: first.content }, result],
      });
      expect(second.stop_reason).toBe('end_turn');
      expect(second.content.map((b) => b.type)).toEqual(['thinking', 'text']);
      const againStreamed = await client.messages
        .stream({ ...base, messages: [ask, { role: 'assistant', content: first.content }, result] })
        .finalMessage();
      expect(againStreamed.stop_reason).toBe('end_turn');
      // Redacted thinking travels too (in order, before the signed block here).
      const redacted = await client.messages.create({
        ...base,
        messages: [
          ask,
          { role: 'assistant', content: [{ type: 'redacted_thinking', data: 'opaque' }, ...first.content] },
          result,
        ],
      });
      expect(redacted.stop_reason).toBe('end_turn');
      // Without the thinking, or with it altered, Anthropic's 400 comes back in its shape.
      const dropped = await client.messages
        .create({ ...base, messages: [ask, { role: 'assistant', content: [use] }, result] })
        .catch((e: unknown) => e);
      expect(dropped).toBeInstanceOf(Anthropic.BadRequestError);
      expect((dropped as Error).message).toMatch(/must start with a thinking block/);
      const altered = await client.messages
        .create({
          ...base,
          messages: [
            ask,
            { role: 'assistant', content: [{ ...t, thinking: `${t.thinking}!` }, use] },
            result,
          ],
        })
        .catch((e: unknown) => e);
      expect(altered).toBeInstanceOf(Anthropic.BadRequestError);
      expect((altered as Error).message).toMatch(/Invalid `signature`/);
    }
    // Another provider cannot take Anthropic-signed thinking: it is left out, the call goes on.
    const use = whole.content[1];
    if (use?.type !== 'tool_use') throw new Error('no tool_use');
    const gemini = await client.messages.create({
      ...base,
      model: 'gemini/gemini-2.5-flash',
      messages: [
        ask,
        { role: 'assistant', content: whole.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '4°C, rain' }] },
      ],
    });
    expect(gemini.stop_reason).toBe('end_turn');
  });

  it('several thinking blocks and a redacted one: each signed, in order, back to Anthropic unchanged', async () => {
    const base = {
      model: 'anthropic/claude-haiku-4-5',
      max_tokens: 4096,
      thinking: { type: 'enabled' as const, budget_tokens: 1024 },
      tools: [weather],
    };
    // The fake answers as Anthropic does when its safety systems redact part of the thinking.
    const ask: Anthropic.MessageParam = {
      role: 'user',
      content:
        'Weather in Oslo? [[fake:{"tool":true,"thinkingBlocks":["thinking","redacted_thinking","thinking"]}]]',
    };
    const whole = await client.messages.create({ ...base, messages: [ask] });
    const live = client.messages.stream({ ...base, messages: [ask] });
    const starts: string[] = [];
    live.on('streamEvent', (e) => {
      if (e.type === 'content_block_start') starts.push(e.content_block.type);
    });
    const streamed = await live.finalMessage();
    expect(starts).toEqual(['thinking', 'redacted_thinking', 'thinking', 'tool_use']);
    for (const first of [whole, streamed]) {
      expect(first.content.map((b) => b.type)).toEqual([
        'thinking',
        'redacted_thinking',
        'thinking',
        'tool_use',
      ]);
      const [a, r, b, use] = first.content;
      if (a?.type !== 'thinking' || b?.type !== 'thinking' || r?.type !== 'redacted_thinking')
        throw new Error('blocks');
      expect(a.signature).not.toBe(b.signature);
      expect(r.data.length).toBeGreaterThan(0);
      if (use?.type !== 'tool_use') throw new Error('no tool_use');
      const result: Anthropic.MessageParam = {
        role: 'user',
        content: [{ type: 'tool_result', tool_use_id: use.id, content: '4°C, rain' }],
      };
      // The fake checks every block, its signature or data, and that all came back in order.
      for (const stream of [false, true]) {
        const next = {
          ...base,
          messages: [ask, { role: 'assistant' as const, content: first.content }, result],
        };
        const second = stream
          ? await client.messages.stream(next).finalMessage()
          : await client.messages.create(next);
        expect(second.stop_reason).toBe('tool_use');
      }
      // One block left out, or two swapped, is Anthropic's 400.
      for (const content of [
        [a, b, use],
        [r, a, b, use],
      ]) {
        const err = await client.messages
          .create({ ...base, messages: [ask, { role: 'assistant', content }, result] })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(Anthropic.BadRequestError);
        expect((err as Error).message).toMatch(/cannot be modified/);
      }
    }
  });

  it('several thinking blocks through /v1/chat/completions: thinking_blocks go back with the assistant message', async () => {
    const openai = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: 'function',
        function: { name: 'get_weather', parameters: weather.input_schema as Record<string, unknown> },
      },
    ];
    const ask: OpenAI.ChatCompletionMessageParam = {
      role: 'user',
      content:
        'Weather in Oslo? [[fake:{"tool":true,"thinkingBlocks":["thinking","redacted_thinking","thinking"]}]]',
    };
    const base = {
      model: 'claude-haiku-4-5',
      max_completion_tokens: 4096,
      reasoning_effort: 'low' as const,
      tools,
    };
    type Thinking = { thinking_blocks?: Array<{ type: string; signature?: string; data?: string }> };
    const whole = (await openai.chat.completions.create({ ...base, messages: [ask] })).choices[0]?.message;
    const streamed = (
      await openai.chat.completions.stream({ ...base, messages: [ask] }).finalChatCompletion()
    ).choices[0]?.message;
    for (const m of [whole, streamed]) {
      if (!m) throw new Error('no message');
      const blocks = (m as Thinking).thinking_blocks ?? [];
      expect(blocks.map((b) => b.type)).toEqual(['thinking', 'redacted_thinking', 'thinking']);
      expect(blocks[0]?.signature).not.toBe(blocks[2]?.signature);
      const call = m.tool_calls?.[0];
      if (call?.type !== 'function') throw new Error('no tool call');
      // The assistant message appended as the SDK gave it, thinking_blocks and all.
      const again = await openai.chat.completions.create({
        ...base,
        messages: [
          ask,
          m as OpenAI.ChatCompletionMessageParam,
          { role: 'tool', tool_call_id: call.id, content: '4°C' },
        ],
      });
      expect(again.choices[0]?.finish_reason).toBe('tool_calls');
    }
    // Same blocks whole and streamed (the fake answers a request alike but for its own id).
    expect((streamed as Thinking).thinking_blocks?.[1]?.type).toBe('redacted_thinking');
  });

  it('claude-* through /v1/chat/completions keeps working', async () => {
    const openai = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const r = await openai.chat.completions.create({
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 16,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.model.startsWith('anthropic/')).toBe(true);
  });
});

describe("errors in Anthropic's shape", () => {
  const expectError = async (r: Response, status: number, type: string, message?: RegExp) => {
    expect(r.status).toBe(status);
    const body = (await r.json()) as { type: string; error: { type: string; message: string } };
    expect(body.type).toBe('error');
    expect(body.error.type).toBe(type);
    if (message) expect(body.error.message).toMatch(message);
    return body;
  };
  const valid = { model: 'openai/gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] };

  it('no key, a wrong key and a revoked key are 401 authentication_error, on both routes', async () => {
    for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
      await expectError(await post(path, valid), 401, 'authentication_error');
      await expectError(
        await post(path, valid, { 'x-api-key': 'fg_wrong_000000000000' }),
        401,
        'authentication_error',
      );
    }
    const err = await new Anthropic({
      apiKey: 'fg_wrong_000000000000',
      baseURL: stack.url,
      maxRetries: 0,
    }).messages
      .create(valid as Anthropic.MessageCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    // Quotable, as Anthropic's own errors are: the SDK reads the request-id header.
    expect((err as InstanceType<typeof Anthropic.APIError>).requestID).toMatch(/^req_/);

    const admin = async (path: string, body?: unknown) => {
      const r = await fetch(`${stack.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body ?? {}),
      });
      return (await r.json()) as Record<string, string>;
    };
    const acc = await admin('/admin/v1/accounts', { name: 'door' });
    await admin('/admin/v1/credits', { account_id: acc.id, amount_usd: '1' });
    const k = await admin('/admin/v1/keys', { account_id: acc.id, name: 'door' });
    expect((await post('/v1/messages', valid, { 'x-api-key': k.key! })).status).toBe(200);
    await admin(`/admin/v1/keys/${k.id}/revoke`);
    await expectError(
      await post('/v1/messages', valid, { 'x-api-key': k.key! }),
      401,
      'authentication_error',
    );
  });

  it('malformed bodies are 400 invalid_request_error naming what is wrong', async () => {
    const key = { 'x-api-key': stack.apiKey };
    await expectError(await post('/v1/messages', '{"model": ', key), 400, 'invalid_request_error', /JSON/);
    await expectError(await post('/v1/messages', '[1,2]', key), 400, 'invalid_request_error', /JSON object/);
    await expectError(
      await post('/v1/messages', { model: 'openai/gpt-4o-mini', messages: valid.messages }, key),
      400,
      'invalid_request_error',
      /max_tokens/,
    );
    await expectError(
      await post('/v1/messages', { ...valid, max_tokens: 'many' }, key),
      400,
      'invalid_request_error',
      /max_tokens/,
    );
    await expectError(
      await post('/v1/messages', { ...valid, messages: [{ role: 'system', content: 'x' }] }, key),
      400,
      'invalid_request_error',
      /messages\.0\.role/,
    );
    // An empty turn or text block, as Anthropic refuses it; a final assistant turn may be empty.
    for (const [messages, where] of [
      [[{ role: 'user', content: '' }], /messages\.0\.content/],
      [[{ role: 'user', content: [] }], /messages\.0\.content/],
      [[{ role: 'user', content: [{ type: 'text', text: '' }] }], /messages\.0\.content\.0\.text/],
      [[{ role: 'user', content: [{ type: 'text', text: ' \n' }] }], /non-whitespace/],
    ] as const)
      await expectError(
        await post('/v1/messages', { ...valid, messages }, key),
        400,
        'invalid_request_error',
        where,
      );
    expect(
      (
        await post(
          '/v1/messages/count_tokens',
          {
            model: valid.model,
            messages: [
              { role: 'user', content: 'hi' },
              { role: 'assistant', content: '' },
            ],
          },
          key,
        )
      ).status,
    ).toBe(200);
    await expectError(
      await post('/v1/messages', { ...valid, top_k: 5 }, key),
      400,
      'invalid_request_error',
      /top_k/,
    );
    // In Anthropic's words, as its API says them.
    await expectError(
      await post('/v1/messages', { ...valid, unknown_field: 1 }, key),
      400,
      'invalid_request_error',
      /^unknown_field: Extra inputs are not permitted$/,
    );
    await expectError(
      await post('/v1/messages', { ...valid, max_tokens: 1.5 }, key),
      400,
      'invalid_request_error',
      /^max_tokens: /,
    );
    // Prototype-named fields are unknown fields like any other: refused, and nothing is polluted.
    for (const hostile of [
      '{"model":"openai/gpt-4o-mini","max_tokens":8,"messages":[{"role":"user","content":"hi"}],"__proto__":{"top_k":1}}',
      '{"model":"openai/gpt-4o-mini","max_tokens":8,"messages":[{"role":"user","content":"hi","constructor":{"x":1}}]}',
      '{"model":"openai/gpt-4o-mini","max_tokens":8,"messages":[{"role":"user","content":[{"type":"__proto__","text":"x"}]}]}',
    ])
      await expectError(await post('/v1/messages', hostile, key), 400, 'invalid_request_error');
    // Refused from its declared length, before it is read.
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(`${stack.url}/v1/messages`, {
        method: 'POST',
        headers: { ...key, 'content-type': 'application/json', 'content-length': 64 * 1024 * 1024 },
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
      req.write('{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"');
    });
    expect(status).toBe(413);
    expect(JSON.parse(text)).toMatchObject({ type: 'error', error: { type: 'request_too_large' } });
  });

  it("a provider error is relayed in Anthropic's shape; a stream cut after content ends with an error event", async () => {
    stack.fake.script('gemini', [{ fault: '400' }]);
    const err = await client.messages
      .create({
        model: 'gemini/gemini-2.5-flash',
        max_tokens: 8,
        messages: [{ role: 'user', content: 'bad upstream' }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as { error: unknown }).error).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error' },
    });

    stack.fake.script('openai', [{ fault: 'cut_after_burst' }]);
    let text = '';
    const cut = await (async () => {
      const stream = client.messages.stream({
        model: 'openai/gpt-4o-mini',
        max_tokens: 64,
        messages: [{ role: 'user', content: 'cut me' }],
      });
      stream.on('text', (t) => {
        text += t;
      });
      await stream.finalMessage();
    })().catch((e: unknown) => e);
    expect(text.length).toBeGreaterThan(0);
    expect(cut).toBeInstanceOf(Anthropic.APIError);
    expect((cut as { error: unknown }).error).toMatchObject({ type: 'error', error: { type: 'api_error' } });
  });

  it('unknown and prototype-named models are 404 not_found_error', async () => {
    for (const model of [
      'no-such-model',
      'openai/no-such',
      '__proto__',
      'constructor',
      'openai/__proto__',
      'toString',
    ]) {
      const err = await client.messages
        .create({ model, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
        .catch((e: unknown) => e);
      expect(err, model).toBeInstanceOf(Anthropic.NotFoundError);
      expect((err as { error: unknown }).error).toMatchObject({
        type: 'error',
        error: { type: 'not_found_error' },
      });
      const counted = await client.messages
        .countTokens({ model, messages: [{ role: 'user', content: 'hi' }] })
        .catch((e: unknown) => e);
      expect(counted, model).toBeInstanceOf(Anthropic.NotFoundError);
    }
  });
});

describe('what the SDKs send back, and the newer request fields', () => {
  /** A response block as the Python SDK's `model_dump()` writes it: every optional field, null when unset. */
  const dumped = (b: Anthropic.ContentBlock): Record<string, unknown> =>
    b.type === 'tool_use'
      ? { ...b, caller: b.caller ?? { type: 'direct' }, toolset_name: null }
      : b.type === 'text'
        ? { ...b, citations: b.citations ?? null }
        : { ...b };
  const strictWeather = {
    ...weather,
    strict: true,
    input_examples: [{ city: 'Oslo' }],
  } as Anthropic.Tool;

  it('eager_input_streaming on a tool (the AI SDK sends it on every streamed tool) is taken', async () => {
    const stream = client.messages.stream({
      model: 'anthropic/claude-haiku-4-5',
      max_tokens: 64,
      tools: [{ ...weather, eager_input_streaming: true } as Anthropic.Tool],
      messages: [{ role: 'user', content: 'What is the weather in Oslo?' }],
    });
    const final = await stream.finalMessage();
    expect(final.content.some((b) => b.type === 'tool_use')).toBe(true);
  });

  it.each(MODELS)(
    '%s: a tool loop sending the answer back as the SDK dumps it goes on',
    async (_p, model) => {
      const ask: Anthropic.MessageParam = { role: 'user', content: 'What is the weather in Oslo?' };
      const first = await client.messages.create({
        model,
        max_tokens: 64,
        tools: [strictWeather],
        messages: [ask],
      });
      const use = first.content.find((b) => b.type === 'tool_use');
      if (use?.type !== 'tool_use') throw new Error('no tool_use');
      const second = await client.messages.create({
        model,
        max_tokens: 64,
        tools: [strictWeather],
        messages: [
          ask,
          { role: 'assistant', content: first.content.map(dumped) as never },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '4°C, rain' }] },
        ],
      });
      expect(second.stop_reason).toBe('end_turn');
    },
  );

  it('with thinking on, the dumped thinking and tool_use blocks go back to Anthropic, signed', async () => {
    const base = {
      model: 'anthropic/claude-haiku-4-5',
      max_tokens: 4096,
      thinking: { type: 'enabled' as const, budget_tokens: 1024 },
      tools: [weather],
    };
    const ask: Anthropic.MessageParam = { role: 'user', content: 'What is the weather in Oslo?' };
    const first = await client.messages.create({ ...base, messages: [ask] });
    expect(first.content.map((b) => b.type)).toEqual(['thinking', 'tool_use']);
    const use = first.content[1];
    if (use?.type !== 'tool_use') throw new Error('no tool_use');
    // The fake, like Anthropic, refuses the turn unless its thinking comes back first, unchanged.
    const second = await client.messages.create({
      ...base,
      messages: [
        ask,
        { role: 'assistant', content: first.content.map(dumped) as never },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '4°C, rain' }] },
      ],
    });
    expect(second.stop_reason).toBe('end_turn');
  });

  it.each(MODELS)(
    '%s: documents (PDF, text, content) with title and context, output_config.effort high',
    async (_p, model) => {
      const msg = await client.messages.create({
        model,
        max_tokens: 64,
        output_config: { effort: 'high' },
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'document',
                source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' },
                title: 'Report',
                context: 'Quarterly figures',
                citations: { enabled: false },
              },
              {
                type: 'document',
                source: { type: 'text', media_type: 'text/plain', data: 'Grass is green.' },
                title: 'Facts',
              },
              {
                type: 'document',
                source: { type: 'content', content: [{ type: 'text', text: 'A chunk.' }] },
              },
              { type: 'text', text: 'Summarize them.' },
            ],
          },
        ],
      } as Anthropic.MessageCreateParamsNonStreaming);
      expect(msg.stop_reason).toBe('end_turn');
    },
  );

  it('refuses, with a 400 naming the exact field, what cannot be honoured', async () => {
    const refused = async (params: Record<string, unknown>): Promise<string> => {
      const e = await client.messages
        .create({
          model: 'anthropic/claude-haiku-4-5',
          max_tokens: 64,
          messages: [{ role: 'user', content: 'Hi' }],
          ...params,
        } as Anthropic.MessageCreateParamsNonStreaming)
        .catch((err: unknown) => err);
      expect(e).toBeInstanceOf(Anthropic.BadRequestError);
      expect((e as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({
        type: 'error',
        error: { type: 'invalid_request_error' },
      });
      return (e as Error).message;
    };
    const doc = (extra: Record<string, unknown>) => ({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Read it.' },
            { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'x' }, ...extra },
          ],
        },
      ],
    });
    expect(await refused(doc({ citations: { enabled: true } }))).toMatch(
      /messages\.0\.content\.1\.citations: /,
    );
    expect(await refused(doc({ source: { type: 'url', url: 'https://example.com/a.pdf' } }))).toMatch(
      /messages\.0\.content\.1\.source: A document by URL/,
    );
    expect(await refused(doc({ source: { type: 'pdf' } }))).toMatch(
      /messages\.0\.content\.1\.source\.type: /,
    );
    expect(await refused({ output_config: { effort: 'low' } })).toMatch(/output_config\.effort: /);
    expect(await refused({ context_management: { edits: [{ type: 'clear_tool_uses_20250919' }] } })).toMatch(
      /"context_management: not supported/,
    );
    const turn = (block: Record<string, unknown>) => ({
      messages: [
        { role: 'user', content: 'Weather?' },
        { role: 'assistant', content: [block] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'rain' }] },
      ],
    });
    const use = { type: 'tool_use', id: 't1', name: 'get_weather', input: {} };
    expect(
      await refused(turn({ ...use, caller: { type: 'code_execution_20250825', tool_id: 's1' } })),
    ).toMatch(/messages\.1\.content\.0\.caller: /);
    expect(await refused(turn({ ...use, toolset_name: 'browser' }))).toMatch(
      /messages\.1\.content\.0\.toolset_name: /,
    );
    expect(await refused(turn({ type: 'server_tool_use', id: 's1', name: 'web_search', input: {} }))).toMatch(
      /messages\.1\.content\.0\.type: .*server_tool_use.{0,4} is not supported/,
    );
  });
});
