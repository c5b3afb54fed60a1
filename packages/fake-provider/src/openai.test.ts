import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type FakeProvider, startFakeProvider } from './server.ts';

const GO_DURATION =
  /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$/;
const weatherTool = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Current weather',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
    },
  },
};

let fake: FakeProvider;
let client: OpenAI;
beforeAll(async () => {
  fake = await startFakeProvider();
  client = new OpenAI({ apiKey: 'sk-test', baseURL: `${fake.url}/openai/v1`, maxRetries: 0 });
});
afterAll(() => fake.close());
beforeEach(() => fake.reset());

describe('openai protocol', () => {
  it('answers chat completions deterministically with self-consistent usage', async () => {
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'What is the largest planet?' },
    ];
    const a = await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
    const b = await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(a.object).toBe('chat.completion');
    expect(a.choices[0]?.finish_reason).toBe('stop');
    const text = a.choices[0]?.message.content ?? '';
    expect(text).toBe(b.choices[0]?.message.content);
    expect(text.split(' ')).toHaveLength(12);
    // ceil(9/4)+3 + ceil(27/4)+3
    expect(a.usage).toMatchObject({ prompt_tokens: 16, completion_tokens: 12, total_tokens: 28 });
    const other = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Something else entirely' }],
    });
    expect(other.choices[0]?.message.content).not.toBe(text);
  });

  it('streams the same text as the non-streamed reply, with include_usage exactly like OpenAI', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story' }];
    const whole = await client.chat.completions.create({ model: 'gpt-4o', messages });
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'gpt-4o', messages, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    let text = '';
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) {
      chunks.push(c);
      text += c.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(whole.choices[0]?.message.content);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: whole.usage?.prompt_tokens, completion_tokens: 12 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('stop');
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);

    const plain = await client.chat.completions.create({ model: 'gpt-4o', messages, stream: true });
    const plainChunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of plain) plainChunks.push(c);
    expect(plainChunks.every((c) => !('usage' in c) && c.choices.length === 1)).toBe(true);
  });

  it('caps the reply at max_completion_tokens with finish_reason length', async () => {
    const r = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'long please' }],
      max_completion_tokens: 3,
    });
    expect(r.choices[0]?.finish_reason).toBe('length');
    expect(r.usage?.completion_tokens).toBe(3);
    expect(r.choices[0]?.message.content?.split(' ')).toHaveLength(3);
  });

  it('calls tools in a stream with argument fragments, and answers the tool result with text', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'user', content: "What's the weather in Oslo?" },
    ];
    const stream = await client.chat.completions.create({
      model: 'gpt-4.1',
      messages,
      tools: [weatherTool],
      stream: true,
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    const first = chunks[0]?.choices[0]?.delta.tool_calls?.[0];
    expect(first).toMatchObject({
      index: 0,
      type: 'function',
      function: { name: 'get_weather', arguments: '' },
    });
    const fragments = chunks.flatMap(
      (c) => c.choices[0]?.delta.tool_calls?.map((t) => t.function?.arguments) ?? [],
    );
    expect(fragments.length).toBeGreaterThan(2);
    expect(JSON.parse(fragments.join(''))).toEqual({ city: 'Oslo', unit: 'celsius' });
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls');

    const helper = await client.chat.completions
      .stream({ model: 'gpt-4.1', messages, tools: [weatherTool] })
      .finalChatCompletion();
    const call = helper.choices[0]?.message.tool_calls?.[0];
    expect(call?.type === 'function' && JSON.parse(call.function.arguments)).toEqual({
      city: 'Oslo',
      unit: 'celsius',
    });

    const followUp = await client.chat.completions.create({
      model: 'gpt-4.1',
      tools: [weatherTool],
      messages: [
        ...messages,
        helper.choices[0]!.message as OpenAI.ChatCompletionMessageParam,
        { role: 'tool', tool_call_id: call!.id, content: '4°C, rain' },
      ],
    });
    expect(followUp.choices[0]?.finish_reason).toBe('stop');
    expect(followUp.choices[0]?.message.content).toBeTruthy();
  });

  it('reports cached and reasoning tokens when a directive asks', async () => {
    const r = await client.chat.completions.create({
      model: 'o4-mini',
      messages: [
        { role: 'user', content: 'Think [[fake:{"cachedTokens":4,"reasoningTokens":7,"tokens":5}]]' },
      ],
    });
    expect(r.usage?.prompt_tokens_details?.cached_tokens).toBe(4);
    expect(r.usage?.completion_tokens_details?.reasoning_tokens).toBe(7);
    expect(r.usage?.completion_tokens).toBe(12);
    expect(fake.calls().at(-1)).toMatchObject({ cachedTokens: 4, reasoningTokens: 7, completionTokens: 12 });
  });

  it('refuses sampling parameters on reasoning models, as OpenAI does, and takes their defaults', async () => {
    const ask = (model: string, extra: Record<string, unknown>) =>
      client.chat.completions
        .create({ model, messages: [{ role: 'user', content: 'hi' }], ...extra } as never)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
    for (const [model, extra, param] of [
      ['o3', { temperature: 0.2 }, 'temperature'],
      ['gpt-5-nano', { top_p: 0.5 }, 'top_p'],
      ['gpt-5-mini', { logprobs: true }, 'logprobs'],
      ['o4-mini', { max_tokens: 10 }, 'max_tokens'],
      ['o3', { stop: ['x'] }, 'stop'],
      ['gpt-5', { presence_penalty: 0.5 }, 'presence_penalty'],
    ] as const) {
      const err = await ask(model, extra);
      expect(err, `${model} ${param}`).toBeInstanceOf(OpenAI.BadRequestError);
      expect(err).toMatchObject({ param });
    }
    expect(await ask('o3', { temperature: 1, top_p: 1, max_completion_tokens: 50 })).toBeUndefined();
    expect(await ask('gpt-5', { stop: ['x'] })).toBeUndefined();
    expect(await ask('gpt-4o-mini', { temperature: 0.2, logprobs: true, max_tokens: 5 })).toBeUndefined();
  });

  it('lists and retrieves models', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toContain('gpt-4o-mini');
    expect(ids).toHaveLength(12);
    const m = await client.models.retrieve('o3');
    expect(m).toMatchObject({ id: 'o3', object: 'model', owned_by: 'system' });
    fake.configure({ provider: 'openai', models: ['my-model'] });
    const after: string[] = [];
    for await (const x of client.models.list()) after.push(x.id);
    expect(after).toEqual(['my-model']);
  });

  it('raises the SDK error classes with code and request id', async () => {
    const bad = new OpenAI({ apiKey: 'bad-key', baseURL: `${fake.url}/openai/v1`, maxRetries: 0 });
    const auth = await bad.models.list().catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(auth).toMatchObject({ status: 401, code: 'invalid_api_key' });

    const missing = await client.chat.completions
      .create({ model: 'gpt-9', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing).toMatchObject({ code: 'model_not_found' });
    expect((missing as InstanceType<typeof OpenAI.APIError>).requestID).toMatch(/^req_/);

    const ctx = await client.chat.completions
      .create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'x [[fake:{"fault":"context_length"}]]' }],
      })
      .catch((e: unknown) => e);
    expect(ctx).toBeInstanceOf(OpenAI.BadRequestError);
    expect(ctx).toMatchObject({ code: 'context_length_exceeded', param: 'messages' });

    fake.script('openai', [{ fault: '500' }]);
    const server = await client.chat.completions
      .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(server).toBeInstanceOf(OpenAI.InternalServerError);
    expect(server).toMatchObject({ status: 500, type: 'server_error' });
  });

  it('sends x-ratelimit headers with Go-duration resets on success', async () => {
    fake.configure({ provider: 'openai', rpm: 60 });
    const { response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    const h = response.headers;
    expect(h.get('x-ratelimit-limit-requests')).toBe('60');
    expect(h.get('x-ratelimit-remaining-requests')).toBe('59');
    expect(h.get('x-ratelimit-reset-requests')).toMatch(GO_DURATION);
    expect(h.get('x-ratelimit-reset-requests')).not.toBe('0ms');
    expect(h.get('x-ratelimit-reset-tokens')).toMatch(GO_DURATION);
    expect(Number(h.get('x-ratelimit-remaining-tokens'))).toBeLessThan(
      Number(h.get('x-ratelimit-limit-tokens')),
    );
    expect(h.get('x-request-id')).toMatch(/^req_/);
  });
});

describe('llama (Ollama flavour)', () => {
  const llama = () => new OpenAI({ apiKey: 'ollama', baseURL: `${fake.url}/llama/v1`, maxRetries: 0 });

  it('serves OpenAI shapes with fp_ollama, no auth and no rate-limit headers', async () => {
    const noKey = await fetch(`${fake.url}/llama/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(noKey.status).toBe(200);
    expect([...noKey.headers.keys()].some((k) => k.includes('ratelimit'))).toBe(false);
    const body = (await noKey.json()) as OpenAI.ChatCompletion;
    expect(body.system_fingerprint).toBe('fp_ollama');

    const models: OpenAI.Model[] = [];
    for await (const m of llama().models.list()) models.push(m);
    expect(models.map((m) => m.id)).toEqual(['llama3.2:latest', 'llama3.1:8b', 'nomic-embed-text:latest']);
    expect(models.every((m) => m.owned_by === 'library')).toBe(true);

    const stream = await llama().chat.completions.create({
      model: 'llama3.2:latest',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    expect(text).toBe(body.choices[0]?.message.content);
  });

  it('answers unknown models with Ollama not_found_error', async () => {
    const e = await llama()
      .chat.completions.create({ model: 'mistral', messages: [{ role: 'user', content: 'x' }] })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect(e).toMatchObject({
      type: 'not_found_error',
      message: expect.stringContaining('try pulling it first'),
    });
  });
});

describe('openai: n choices and log probabilities, as OpenAI answers them', () => {
  const messages = [{ role: 'user' as const, content: 'Name three colours' }];

  it('answers n choices, each with its index, and usage covering them all', async () => {
    const one = await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
    const r = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, n: 3 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    // Choice 0 is the answer n = 1 gives; the others differ.
    expect(r.choices[0]?.message.content).toBe(one.choices[0]?.message.content);
    const texts = r.choices.map((c) => c.message.content ?? '');
    expect(new Set(texts).size).toBe(3);
    const tokens = texts.reduce((n, t) => n + t.split(' ').length, 0);
    expect(r.usage).toMatchObject({ prompt_tokens: one.usage?.prompt_tokens, completion_tokens: tokens });
  });

  it('streams n choices interleaved, each with its index, assembled by the SDK like the whole answer', async () => {
    const whole = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, n: 2 });
    const stream = client.chat.completions.stream({
      model: 'gpt-4o-mini',
      messages,
      n: 2,
      stream_options: { include_usage: true },
    });
    const indexes: number[] = [];
    stream.on('chunk', (c) => {
      for (const ch of c.choices) indexes.push(ch.index);
    });
    const done = await stream.finalChatCompletion();
    expect(done.choices.map((c) => c.message.content)).toEqual(whole.choices.map((c) => c.message.content));
    expect(done.choices.map((c) => c.finish_reason)).toEqual(['stop', 'stop']);
    expect(done.usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
    // Interleaved: choice 1 starts before choice 0 ends.
    expect(indexes.indexOf(1)).toBeLessThan(indexes.lastIndexOf(0));
  });

  it('returns logprobs in OpenAI shape (tokens spell the content; top_logprobs chosen first), whole and streamed', async () => {
    const whole = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      logprobs: true,
      top_logprobs: 2,
    });
    const c = whole.choices[0]!;
    const lp = c.logprobs?.content ?? [];
    expect(c.logprobs?.refusal).toBeNull();
    expect(lp.map((t) => t.token).join('')).toBe(c.message.content);
    for (const t of lp) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(Buffer.from(t.bytes ?? []).toString('utf8')).toBe(t.token);
      expect(t.top_logprobs).toHaveLength(2);
      expect(t.top_logprobs[0]).toEqual({ token: t.token, logprob: t.logprob, bytes: t.bytes });
    }
    const streamed = await client.chat.completions
      .stream({ model: 'gpt-4o-mini', messages, logprobs: true, top_logprobs: 2 })
      .finalChatCompletion();
    expect(streamed.choices[0]?.logprobs?.content).toEqual(lp);
    const plain = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, logprobs: true });
    expect(plain.choices[0]?.logprobs?.content?.[0]?.top_logprobs).toEqual([]);
    const none = await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(none.choices[0]?.logprobs).toBeNull();
  });

  it('refuses top_logprobs without logprobs, and n out of range, as OpenAI does', async () => {
    await expect(
      client.chat.completions.create({ model: 'gpt-4o-mini', messages, top_logprobs: 2 }),
    ).rejects.toMatchObject({ status: 400, param: 'top_logprobs' });
    await expect(
      client.chat.completions.create({ model: 'gpt-4o-mini', messages, n: 0 }),
    ).rejects.toMatchObject({ status: 400, param: 'n' });
  });

  it('stops before a stop sequence the answer would contain', async () => {
    const full = (await client.chat.completions.create({ model: 'gpt-4o-mini', messages })).choices[0]
      ?.message.content;
    const word = full?.split(' ')[3] ?? '';
    const cut = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stop: [` ${word}`] });
    expect(cut.choices[0]?.finish_reason).toBe('stop');
    expect(cut.choices[0]?.message.content).toBe(full?.slice(0, full.indexOf(` ${word}`)));
  });
});
