import type { ChatRequest } from '@faregate/contracts/chat';
import { describe, expect, it } from 'vitest';
import type { ProviderConfig } from '../types.ts';
import { createAssembler } from '../assemble.ts';
import { anthropicAdapter, readAnthropicRateLimits } from './index.ts';

const config: ProviderConfig = {
  id: 'anthropic',
  kind: 'anthropic',
  baseUrl: 'https://api.anthropic.com/',
  apiKeys: ['k'],
};
const build = (req: Partial<ChatRequest>, model = 'claude-sonnet-4-5') => {
  const r = anthropicAdapter.buildRequest(
    { model, messages: [{ role: 'user', content: 'hi' }], ...req },
    { model, stream: false, config, apiKey: 'sk-ant-1' },
  );
  return { ...r, json: JSON.parse(r.body ?? '{}') };
};

describe('anthropic request translation', () => {
  it('targets /v1/messages with x-api-key and the pinned version', () => {
    const r = build({});
    expect(r.url).toBe('https://api.anthropic.com/v1/messages');
    expect(r.headers).toMatchObject({ 'x-api-key': 'sk-ant-1', 'anthropic-version': '2023-06-01' });
  });

  it('defaults max_tokens to min(catalog max output, 4096) and keeps an explicit one', () => {
    expect(build({}).json.max_tokens).toBe(4096);
    expect(build({}, 'claude-unknown-9').json.max_tokens).toBe(4096);
    expect(build({ max_tokens: 77 }).json.max_tokens).toBe(77);
  });

  it('refuses temperature above 1 with a 400 naming the parameter', () => {
    expect(() => build({ temperature: 1.5 })).toThrowError(
      expect.objectContaining({ code: 'invalid_request_error', param: 'temperature', status: 400 }),
    );
    expect(build({ temperature: 1 }).json.temperature).toBe(1);
  });

  it("sends an assistant turn's thinking_blocks first, unchanged and in order", () => {
    const { json } = build({
      reasoning_effort: 'low',
      messages: [
        { role: 'user', content: 'Weather?' },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'w', arguments: '{}' } }],
          thinking_blocks: [
            { type: 'redacted_thinking', data: 'opaque' },
            { type: 'thinking', thinking: 'Use the tool.', signature: 'sig==' },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_1', content: 'rain' },
      ],
    });
    expect(json.messages[1]).toEqual({
      role: 'assistant',
      content: [
        { type: 'redacted_thinking', data: 'opaque' },
        { type: 'thinking', thinking: 'Use the tool.', signature: 'sig==' },
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'toolu_1', name: 'w', input: {} },
      ],
    });
  });

  it('a chat tool loop that cannot send the thinking back goes on without thinking (Anthropic would refuse it); the first call and the Messages door think', () => {
    const loop = (extra: Record<string, unknown> = {}): ChatRequest['messages'] => [
      { role: 'user', content: 'Weather?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'w', arguments: '{}' } }],
        ...extra,
      },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'rain', name: 'w' },
    ];
    expect(build({ reasoning_effort: 'low', messages: loop() }).json.thinking).toBeUndefined();
    // Sent back (this gateway's thinking_blocks): thinking stays on.
    const signed = loop({
      thinking_blocks: [{ type: 'thinking', thinking: 'Use the tool.', signature: 'sig==' }],
    });
    expect(build({ reasoning_effort: 'low', messages: signed }).json.thinking).toMatchObject({
      type: 'enabled',
    });
    // The loop's first call thinks.
    expect(build({ reasoning_effort: 'low', messages: loop().slice(0, 1) }).json.thinking).toMatchObject({
      type: 'enabled',
    });
    // The Messages door's caller asked Anthropic's way: Anthropic's own answer, not a quiet change.
    expect(
      build({ reasoning_effort: 'low', thinking_budget: 1024, max_tokens: 4000, messages: loop() }).json
        .thinking,
    ).toMatchObject({ type: 'enabled', budget_tokens: 1024 });
  });

  it('merges consecutive same-role turns and puts tool results first in a user turn', () => {
    const { json } = build({
      messages: [
        { role: 'user', content: 'a' },
        { role: 'user', content: 'b' },
        {
          role: 'assistant',
          content: 'x',
          tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 't1', content: 'r1' },
        { role: 'user', content: 'c' },
      ],
    });
    expect(json.messages.map((m: { role: string }) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(json.messages[0].content).toEqual([
      { type: 'text', text: 'a' },
      { type: 'text', text: 'b' },
    ]);
    expect(json.messages[2].content).toEqual([
      { type: 'tool_result', tool_use_id: 't1', content: 'r1' },
      { type: 'text', text: 'c' },
    ]);
  });

  it('carries caching breakpoints (cache_control) to the blocks, system parts, tool results and tools they were on', () => {
    const ephemeral = { type: 'ephemeral' as const };
    const { json } = build({
      messages: [
        {
          role: 'system',
          content: [
            { type: 'text', text: 'long instructions', cache_control: ephemeral },
            { type: 'text', text: 'short tail' },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'a long document', cache_control: { type: 'ephemeral', ttl: '1h' } },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{}' } }],
        },
        {
          role: 'tool',
          tool_call_id: 't1',
          content: [{ type: 'text', text: 'r1', cache_control: ephemeral }],
        },
      ],
      tools: [
        {
          type: 'function',
          cache_control: ephemeral,
          function: { name: 'f', parameters: { type: 'object' } },
        },
      ],
    });
    expect(json.system).toEqual([
      { type: 'text', text: 'long instructions', cache_control: ephemeral },
      { type: 'text', text: 'short tail' },
    ]);
    expect(json.messages[0].content).toEqual([
      { type: 'text', text: 'a long document', cache_control: { type: 'ephemeral', ttl: '1h' } },
    ]);
    expect(json.messages[2].content).toEqual([
      {
        type: 'tool_result',
        tool_use_id: 't1',
        content: [{ type: 'text', text: 'r1' }],
        cache_control: ephemeral,
      },
    ]);
    expect(json.tools[0].cache_control).toEqual(ephemeral);
    // Without breakpoints, a system message is one block, as before.
    expect(
      build({
        messages: [
          { role: 'system', content: 's' },
          { role: 'user', content: 'u' },
        ],
      }).json.system,
    ).toEqual([{ type: 'text', text: 's' }]);
  });

  it('maps tool_choice and parallel_tool_calls; none keeps the tools, as Anthropic takes them', () => {
    const tools: ChatRequest['tools'] = [{ type: 'function', function: { name: 'f' } }];
    expect(build({ tools, tool_choice: 'required' }).json.tool_choice).toEqual({ type: 'any' });
    expect(
      build({ tools, tool_choice: { type: 'function', function: { name: 'f' } }, parallel_tool_calls: false })
        .json.tool_choice,
    ).toEqual({
      type: 'tool',
      name: 'f',
      disable_parallel_tool_use: true,
    });
    expect(build({ tools, tool_choice: 'none' }).json).toMatchObject({
      tools: [{ name: 'f', input_schema: { type: 'object', properties: {} } }],
      tool_choice: { type: 'none' },
    });
    expect(build({ tools }).json.tools[0].input_schema).toEqual({ type: 'object', properties: {} });
  });

  it('json_object, seed, metadata and store are refused naming the parameter; user → metadata.user_id', () => {
    expect(() => build({ response_format: { type: 'json_object' } })).toThrowError(
      expect.objectContaining({ param: 'response_format' }),
    );
    expect(() => build({ seed: 7 })).toThrowError(
      expect.objectContaining({ param: 'seed', message: expect.stringContaining('anthropic') }),
    );
    expect(() => build({ metadata: { k: 'v' } })).toThrowError(
      expect.objectContaining({ param: 'metadata' }),
    );
    expect(() => build({ store: true })).toThrowError(expect.objectContaining({ param: 'store' }));
    const { json } = build({ user: 'u-1', store: false, metadata: {} });
    expect(json.metadata).toEqual({ user_id: 'u-1' });
  });

  it('reasoning_effort enables thinking with a budget below max_tokens', () => {
    const { json } = build({ reasoning_effort: 'low' });
    expect(json.thinking).toEqual({ type: 'enabled', budget_tokens: 1024 });
    expect(json.max_tokens).toBeGreaterThan(1024);
    expect(() => build({ reasoning_effort: 'low', max_completion_tokens: 500 })).toThrowError(
      expect.objectContaining({ param: 'reasoning_effort' }),
    );
  });

  it("every effort OpenAI's SDK sends: none is no thinking; xhigh and max think longer, within the model's 64k output", () => {
    for (const effort of ['none', 'minimal'] as const) {
      const { json } = build({ reasoning_effort: effort, temperature: 0.2 });
      expect(json.thinking, effort).toBeUndefined();
      expect(json.temperature).toBe(0.2);
    }
    const xhigh = build({ reasoning_effort: 'xhigh' }).json;
    expect(xhigh.thinking).toEqual({ type: 'enabled', budget_tokens: 32768 });
    expect(xhigh.max_tokens).toBe(32768 + 4096);
    const max = build({ reasoning_effort: 'max' }).json;
    expect(max.thinking).toEqual({ type: 'enabled', budget_tokens: 57344 });
    expect(max.max_tokens).toBe(57344 + 4096);
    expect(max.max_tokens).toBeLessThanOrEqual(64_000);
    // A model the catalog does not know: within 32,000 (the least of Claude's), room left for the answer.
    const unknown = build({ reasoning_effort: 'max' }, 'claude-opus-4-1-20250805').json;
    expect(unknown.max_tokens).toBe(32_000);
    expect(unknown.thinking).toEqual({ type: 'enabled', budget_tokens: 32_000 - 4096 });
    // The Messages door's own budget goes as it was asked.
    expect(
      build({ reasoning_effort: 'medium', thinking_budget: 1025, max_tokens: 3000 }).json.thinking,
    ).toEqual({
      type: 'enabled',
      budget_tokens: 1025,
    });
    expect(
      build({ reasoning_effort: 'high', thinking_budget: 50_000, max_tokens: 64_000 }).json.thinking,
    ).toEqual({
      type: 'enabled',
      budget_tokens: 50_000,
    });
    // The caller's own limit bounds the budget.
    const capped = build({ reasoning_effort: 'max', max_completion_tokens: 8000 }).json;
    expect(capped.thinking).toEqual({ type: 'enabled', budget_tokens: 7999 });
    expect(capped.max_tokens).toBe(8000);
  });
});

describe('anthropic rate limits', () => {
  it('turns RFC 3339 resets into ms from now', () => {
    const reset = new Date(Date.now() + 30_000).toISOString();
    const info = readAnthropicRateLimits(
      new Headers({
        'anthropic-ratelimit-requests-limit': '1000',
        'anthropic-ratelimit-requests-remaining': '999',
        'anthropic-ratelimit-requests-reset': reset,
        'anthropic-ratelimit-input-tokens-remaining': '78000',
        'anthropic-ratelimit-output-tokens-reset': reset,
        'retry-after': '2',
      }),
    );
    expect(info).toMatchObject({
      limitRequests: 1000,
      remainingRequests: 999,
      remainingInputTokens: 78000,
      retryAfterMs: 2000,
    });
    expect(info.resetRequestsMs).toBeGreaterThan(28_000);
    expect(info.resetOutputTokensMs).toBeLessThanOrEqual(30_000);
  });
});

describe('anthropic stream text fast path', () => {
  it('decodes escapes exactly and falls back to a full parse for other shapes', () => {
    const p = anthropicAdapter.createStreamParser({ model: 'm' });
    const ev = (data: string) => `event: content_block_delta\ndata: ${data}\n\n`;
    const tricky = 'say "hi"\\\n\u00e9"}}';
    const events = [
      ...p.push(
        ev(
          JSON.stringify({
            type: 'content_block_delta',
            index: 0,
            delta: { type: 'text_delta', text: tricky },
          }),
        ),
      ),
      ...p.push(
        ev(
          JSON.stringify({
            type: 'content_block_delta',
            index: 0,
            delta: { type: 'text_delta', text: '!', extra: 1 },
          }),
        ),
      ),
      ...p.push(
        ev('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","b":"c"}}'),
      ),
    ];
    expect(events).toEqual([
      { type: 'text', text: tricky },
      { type: 'text', text: '!' },
      { type: 'text', text: 'a' },
    ]);
  });
});

describe('anthropic streamed tool calls', () => {
  it('a call with no arguments (an empty partial_json, or none) has {} for them, as whole; one with arguments is unchanged', () => {
    const sse = (name: string, data: Record<string, unknown>) =>
      `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
    const start = (index: number, name: string) =>
      sse('content_block_start', {
        index,
        content_block: { type: 'tool_use', id: `toolu_${index}`, name, input: {} },
      });
    const args = (index: number, partial_json: string) =>
      sse('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json } });
    const body = [
      sse('message_start', {
        message: { id: 'msg_1', model: 'claude-haiku-4-5', usage: { input_tokens: 5 } },
      }),
      start(0, 'now'),
      args(0, ''),
      sse('content_block_stop', { index: 0 }),
      start(1, 'ping'),
      sse('content_block_stop', { index: 1 }),
      start(2, 'weather'),
      args(2, '{"city":'),
      args(2, '"Oslo"}'),
      sse('content_block_stop', { index: 2 }),
      sse('message_delta', { delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 12 } }),
      sse('message_stop', {}),
    ].join('');
    const p = anthropicAdapter.createStreamParser({ model: 'm' });
    const events = [...p.push(body), ...p.finish()];
    // What a caller joining the streamed pieces gets, per call.
    const joined = ['', '', ''];
    for (const e of events)
      if (e.type === 'tool_call') joined[e.delta.index] += e.delta.function?.arguments ?? '';
    expect(joined).toEqual(['{}', '{}', '{"city":"Oslo"}']);
    const asm = createAssembler('m');
    for (const e of events) asm.add(e);
    expect(asm.completion().toolCalls.map((c) => c.function.arguments)).toEqual([
      '{}',
      '{}',
      '{"city":"Oslo"}',
    ]);
  });
});

describe('anthropic thinking blocks (several, redacted among them)', () => {
  // As Anthropic answers with extended thinking: blocks in order, each thinking block signed
  // apart, a redacted one whole (its data opaque), before the text and tool_use blocks.
  const blocks = [
    { type: 'thinking', thinking: 'First, the city.', signature: 'sig-one' },
    { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP' },
    { type: 'thinking', thinking: ' Then the tool.', signature: 'sig-two' },
  ] as const;
  const expected = blocks.map((b) => ({ ...b }));

  it('a whole answer keeps every block, its own signature and its place', () => {
    const c = anthropicAdapter.parseResponse({
      id: 'msg_1',
      model: 'claude-sonnet-4-5',
      content: [
        ...blocks,
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Oslo' } },
      ],
      stop_reason: 'tool_use',
      usage: { input_tokens: 10, output_tokens: 20 },
    });
    expect(c.thinkingBlocks).toEqual(expected);
    expect(c.reasoning).toBe('First, the city. Then the tool.');
    // No one signature stands for several blocks.
    expect(c.reasoningSignature).toBeUndefined();
    expect(c.content).toBe('Checking.');
    expect(c.toolCalls).toHaveLength(1);
  });

  it('one signed block keeps reasoningSignature too', () => {
    const c = anthropicAdapter.parseResponse({
      content: [blocks[0], { type: 'text', text: 'x' }],
      stop_reason: 'end_turn',
    });
    expect(c.thinkingBlocks).toEqual([expected[0]]);
    expect(c.reasoningSignature).toBe('sig-one');
  });

  it('a stream is assembled block by block: a signature_delta belongs to its block', () => {
    const sse = (name: string, data: Record<string, unknown>) =>
      `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
    const delta = (index: number, d: Record<string, unknown>) =>
      sse('content_block_delta', { index, delta: d });
    const body = [
      sse('message_start', {
        message: { id: 'msg_1', model: 'claude-sonnet-4-5', usage: { input_tokens: 5 } },
      }),
      sse('content_block_start', {
        index: 0,
        content_block: { type: 'thinking', thinking: '', signature: '' },
      }),
      delta(0, { type: 'thinking_delta', thinking: 'First, ' }),
      delta(0, { type: 'thinking_delta', thinking: 'the city.' }),
      delta(0, { type: 'signature_delta', signature: 'sig-one' }),
      sse('content_block_stop', { index: 0 }),
      sse('content_block_start', { index: 1, content_block: blocks[1] }),
      sse('content_block_stop', { index: 1 }),
      sse('content_block_start', {
        index: 2,
        content_block: { type: 'thinking', thinking: '', signature: '' },
      }),
      delta(2, { type: 'thinking_delta', thinking: ' Then the tool.' }),
      delta(2, { type: 'signature_delta', signature: 'sig-two' }),
      sse('content_block_stop', { index: 2 }),
      sse('content_block_start', {
        index: 3,
        content_block: { type: 'tool_use', id: 'toolu_1', name: 'weather', input: {} },
      }),
      delta(3, { type: 'input_json_delta', partial_json: '{"city":"Oslo"}' }),
      sse('content_block_stop', { index: 3 }),
      sse('message_delta', { delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 30 } }),
      sse('message_stop', {}),
    ].join('');
    const p = anthropicAdapter.createStreamParser({ model: 'm' });
    // Fed in small pieces, as a network delivers it.
    const events = [];
    for (let i = 0; i < body.length; i += 17) events.push(...p.push(body.slice(i, i + 17)));
    events.push(...p.finish());
    expect(events.filter((e) => e.type === 'redacted_thinking')).toEqual([
      { type: 'redacted_thinking', data: blocks[1].data },
    ]);
    const asm = createAssembler('m');
    for (const e of events) asm.add(e);
    const c = asm.completion();
    expect(c.thinkingBlocks).toEqual(expected);
    expect(c.reasoning).toBe('First, the city. Then the tool.');
    expect(c.reasoningSignature).toBeUndefined();
    expect(c.finishReason).toBe('tool_calls');
    expect(c.toolCalls[0]?.function).toEqual({ name: 'weather', arguments: '{"city":"Oslo"}' });
  });

  it('thinking cut before its signature stays in the text, out of the blocks', () => {
    const asm = createAssembler('m');
    asm.add({ type: 'reasoning', text: 'signed' });
    asm.add({ type: 'signature', signature: 's1' });
    asm.add({ type: 'reasoning', text: ' cut' });
    asm.add({ type: 'finish', reason: 'length' });
    const c = asm.completion();
    expect(c.reasoning).toBe('signed cut');
    expect(c.thinkingBlocks).toEqual([{ type: 'thinking', thinking: 'signed', signature: 's1' }]);
    expect(c.reasoningSignature).toBe('s1');
  });
});
