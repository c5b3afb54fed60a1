import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type FakeProvider, startFakeProvider } from './server.ts';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
const weatherTool: Anthropic.Tool = {
  name: 'weather',
  description: 'Current weather',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

let fake: FakeProvider;
let client: Anthropic;
beforeAll(async () => {
  fake = await startFakeProvider();
  client = new Anthropic({ apiKey: 'sk-ant-test', baseURL: `${fake.url}/anthropic`, maxRetries: 0 });
});
afterAll(() => fake.close());
beforeEach(() => fake.reset());

/** Raw SSE event names of a streamed request, to check framing the SDK would hide. */
async function rawEvents(body: unknown): Promise<string[]> {
  const res = await fetch(`${fake.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': 'k', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const names = [...text.matchAll(/^event: (.+)$/gm)].map((m) => m[1]!);
  expect(names.length).toBe([...text.matchAll(/^data: /gm)].length);
  return names;
}

describe('anthropic protocol', () => {
  it('creates messages with the dated model id and usage, accepting the alias', async () => {
    const m = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      system: 'Be terse.',
      messages: [{ role: 'user', content: 'Hello there' }],
    });
    expect(m.model).toBe('claude-haiku-4-5-20251001');
    expect(m.stop_reason).toBe('end_turn');
    expect(m.content[0]?.type).toBe('text');
    // ceil(9/4)+3 + ceil(11/4)+3
    expect(m.usage).toMatchObject({ input_tokens: 12, output_tokens: 12, cache_read_input_tokens: 0 });
    const dated = await client.messages.create({
      model: 'claude-haiku-4-5-20251001',
      max_tokens: 100,
      system: 'Be terse.',
      messages: [{ role: 'user', content: 'Hello there' }],
    });
    expect(dated.content).toEqual(m.content);
  });

  it('streams the same text, with cumulative usage and cache reads when asked', async () => {
    const params = {
      model: 'claude-opus-4-5',
      max_tokens: 100,
      messages: [{ role: 'user' as const, content: 'Stream please [[fake:{"cachedTokens":5}]]' }],
    };
    const whole = await client.messages.create(params);
    const deltas: string[] = [];
    const stream = client.messages.stream(params).on('text', (t) => deltas.push(t));
    const final = await stream.finalMessage();
    expect(deltas.length).toBe(12);
    expect(deltas.join('')).toBe((whole.content[0] as Anthropic.TextBlock).text);
    expect(final.usage).toMatchObject({ output_tokens: 12, cache_read_input_tokens: 5 });
    expect(final.usage.input_tokens).toBe(whole.usage.input_tokens);
    const call = fake.calls().at(-1)!;
    expect(call.promptTokens).toBe(final.usage.input_tokens + 5);
    expect(call).toMatchObject({ cachedTokens: 5, completionTokens: 12, stream: true });

    const names = await rawEvents({ ...params, stream: true });
    expect(names[0]).toBe('message_start');
    expect(names).toContain('ping');
    expect(names.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
  });

  it('stops at max_tokens', async () => {
    const m = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 4,
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(m.stop_reason).toBe('max_tokens');
    expect(m.usage.output_tokens).toBe(4);
  });

  it('streams tool_use blocks with input_json_delta', async () => {
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 200,
      tools: [weatherTool],
      messages: [{ role: 'user' as const, content: 'What is the weather in Oslo?' }],
    };
    const partials: string[] = [];
    const final = await client.messages
      .stream(params)
      .on('inputJson', (partial) => partials.push(partial))
      .finalMessage();
    expect(final.stop_reason).toBe('tool_use');
    const block = final.content[0] as Anthropic.ToolUseBlock;
    expect(block).toMatchObject({ type: 'tool_use', name: 'weather', input: { city: 'Oslo' } });
    expect(block.id).toMatch(/^toolu_/);
    expect(partials.length).toBeGreaterThan(1);
    expect(final.usage.output_tokens).toBe(partials.length);

    const next = await client.messages.create({
      ...params,
      messages: [
        ...params.messages,
        { role: 'assistant', content: final.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: block.id, content: '4°C, rain' }] },
      ],
    });
    expect(next.stop_reason).toBe('end_turn');
  });

  it('pages models with limit and after_id, and retrieves by alias', async () => {
    const first = await client.models.list({ limit: 2 });
    expect(first.data.map((m) => m.id)).toEqual(['claude-sonnet-4-5-20250929', 'claude-haiku-4-5-20251001']);
    expect(first.has_more).toBe(true);
    const all: string[] = [];
    for await (const m of client.models.list({ limit: 3 })) all.push(m.id);
    expect(all).toHaveLength(4);
    expect(fake.calls().filter((c) => c.path === '/anthropic/v1/models')).toHaveLength(3);
    const one = await client.models.retrieve('claude-opus-4-5');
    expect(one).toMatchObject({
      id: 'claude-opus-4-5-20251101',
      display_name: 'Claude Opus 4.5',
      type: 'model',
    });
    expect(one.created_at).toBe('2025-11-01T00:00:00Z');
  });

  it('raises SDK error classes with the error type and request id', async () => {
    const bad = new Anthropic({ apiKey: 'bad-key', baseURL: `${fake.url}/anthropic`, maxRetries: 0 });
    const auth = await bad.models.list().catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((auth as InstanceType<typeof Anthropic.APIError>).type).toBe('authentication_error');

    const nf = await client.messages
      .create({ model: 'claude-9', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(nf).toBeInstanceOf(Anthropic.NotFoundError);
    expect((nf as InstanceType<typeof Anthropic.APIError>).requestID).toMatch(/^req_011C/);
    expect((nf as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: 'error',
      error: { type: 'not_found_error' },
    });

    fake.script('anthropic', [{ fault: '529' }]);
    const over = await client.messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(over).toBeInstanceOf(Anthropic.InternalServerError);
    expect(over).toMatchObject({ status: 529, type: 'overloaded_error' });

    const noVersion = await fetch(`${fake.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'k', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(noVersion.status).toBe(400);
    expect(await noVersion.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
  });

  it('throws the in-band overloaded error, and ignores unknown events', async () => {
    const ask = (content: string) =>
      client.messages
        .stream({ model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content }] })
        .finalMessage();
    const err = await ask('x [[fake:{"fault":"inband_error","afterChunks":3}]]').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect(err).toMatchObject({ status: undefined, type: 'overloaded_error' });

    const prompt = 'y [[fake:{"fault":"unknown_event","afterChunks":4}]]';
    const withUnknown = await ask(prompt);
    const plain = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: prompt }],
    });
    expect(withUnknown.content).toEqual(plain.content);
    expect(withUnknown.usage.output_tokens).toBe(12);
    const names = await rawEvents({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      stream: true,
      messages: [{ role: 'user', content: 'y [[fake:{"fault":"unknown_event","afterChunks":4}]]' }],
    });
    expect(names).toContain('fake_unknown_event');
  });

  it('sends anthropic-ratelimit headers with RFC 3339 resets', async () => {
    fake.configure({ provider: 'anthropic', rpm: 50 });
    const { response } = await client.messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .withResponse();
    const h = response.headers;
    expect(h.get('anthropic-ratelimit-requests-limit')).toBe('50');
    expect(h.get('anthropic-ratelimit-requests-remaining')).toBe('49');
    for (const k of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
      expect(h.get(`anthropic-ratelimit-${k}-reset`)).toMatch(RFC3339);
    }
    expect(h.get('request-id')).toMatch(/^req_011C/);
  });
});

describe('anthropic: thinking and stop sequences', () => {
  const messages = [{ role: 'user' as const, content: 'Think about the sea' }];

  it('answers a thinking block with its signature first when thinking is on, whole and streamed alike', async () => {
    const thinking = { type: 'enabled' as const, budget_tokens: 1024 };
    const m = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 2048,
      thinking,
      messages,
    });
    expect(m.content.map((b) => b.type)).toEqual(['thinking', 'text']);
    const block = m.content[0];
    if (block?.type !== 'thinking') throw new Error('no thinking block');
    expect(block.thinking.length).toBeGreaterThan(0);
    expect(block.signature.length).toBeGreaterThan(0);
    const plain = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 2048, messages });
    // Thinking tokens are in output_tokens (8 by default).
    expect(m.usage.output_tokens).toBe(plain.usage.output_tokens + 8);
    const streamed = await client.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 2048, thinking, messages })
      .finalMessage();
    expect(streamed.content).toEqual(m.content);
    expect(streamed.usage.output_tokens).toBe(m.usage.output_tokens);
    // Streamed chunk by chunk, the call log counts the thinking once, as the usage does (each
    // thinking_delta was counted again on top of the reasoning logged up front).
    fake.configure({ provider: 'anthropic', chunkMs: 1 });
    try {
      const paced = await client.messages
        .stream({ model: 'claude-haiku-4-5', max_tokens: 2048, thinking, messages })
        .finalMessage();
      expect(paced.usage.output_tokens).toBe(m.usage.output_tokens);
      expect(fake.calls().at(-1)?.completionTokens).toBe(m.usage.output_tokens);
    } finally {
      fake.configure({ provider: 'anthropic', chunkMs: 0 });
    }
  });

  it('stops before a stop sequence and names it, whole and streamed', async () => {
    const full = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages });
    const text = full.content[0]?.type === 'text' ? full.content[0].text : '';
    const seq = ` ${text.split(' ')[4]}`;
    const body = { model: 'claude-haiku-4-5', max_tokens: 100, messages, stop_sequences: ['@@', seq] };
    const m = await client.messages.create(body);
    expect(m.stop_reason).toBe('stop_sequence');
    expect(m.stop_sequence).toBe(seq);
    expect(m.content[0]?.type === 'text' && m.content[0].text).toBe(text.slice(0, text.indexOf(seq)));
    const s = await client.messages.stream(body).finalMessage();
    expect(s.stop_reason).toBe('stop_sequence');
    expect(s.stop_sequence).toBe(seq);
    const none = await client.messages.create({ ...body, stop_sequences: ['@@'] });
    expect(none).toMatchObject({ stop_reason: 'end_turn', stop_sequence: null });
  });
});

describe('anthropic prompt caching', () => {
  const long = 'The contract says many things. '.repeat(200); // ~6,200 characters: over 1,024 tokens
  const ask = (system: Anthropic.TextBlockParam[], question: string) =>
    client.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 8,
      system,
      messages: [{ role: 'user', content: question }],
    });

  it('writes a prefix up to the breakpoint, then reads it; the rest of the prompt is plain input', async () => {
    const system: Anthropic.TextBlockParam[] = [
      { type: 'text', text: long, cache_control: { type: 'ephemeral' } },
    ];
    const first = await ask(system, 'What does it say?');
    expect(first.usage.cache_creation_input_tokens).toBeGreaterThan(1024);
    expect(first.usage.cache_read_input_tokens).toBe(0);
    const second = await ask(system, 'Anything else?');
    expect(second.usage.cache_read_input_tokens).toBe(first.usage.cache_creation_input_tokens);
    expect(second.usage.cache_creation_input_tokens).toBe(0);
    // The whole prompt is the same size either way.
    const total = (u: Anthropic.Usage) =>
      u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);
    expect(total(second.usage)).toBe(total(first.usage) - 1);
  });

  it('caches nothing without a breakpoint, below the minimum length, or for another prefix', async () => {
    const plain = await ask([{ type: 'text', text: long }], 'q');
    expect(plain.usage.cache_creation_input_tokens).toBe(0);
    const short = await ask([{ type: 'text', text: 'Be terse.', cache_control: { type: 'ephemeral' } }], 'q');
    expect(short.usage.cache_creation_input_tokens).toBe(0);
    await ask([{ type: 'text', text: long, cache_control: { type: 'ephemeral' } }], 'q');
    const other = await ask([{ type: 'text', text: `${long}!`, cache_control: { type: 'ephemeral' } }], 'q');
    expect(other.usage.cache_read_input_tokens).toBe(0);
    expect(other.usage.cache_creation_input_tokens).toBeGreaterThan(1024);
  });
});
