import { describe, expect, it } from 'vitest';
import { AnthropicRequest } from '@faregate/contracts/anthropic';
import { toChatCompletion, toOpenAIUsage, zeroUsage } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import type { Frame } from '@faregate/contracts/frames';
import {
  AnthropicStreamWriter,
  anthropicError,
  effortOfBudget,
  MESSAGES_PARAMS,
  promptOf,
  toAnthropicMessage,
  toChatRequest,
} from './messages.ts';
import { inDoorTerms } from './shared.ts';
import { fromZod } from '../plugins/errors.ts';

const parse = (b: unknown) => AnthropicRequest.parse(b);
const base = { model: 'openai/gpt-4o-mini', max_tokens: 100 };

describe('Anthropic request → chat request', () => {
  it('keeps caching breakpoints where they were: system blocks, content blocks, tool results, tools', () => {
    const ephemeral = { type: 'ephemeral' as const };
    const chat = toChatRequest(
      parse({
        ...base,
        system: [{ type: 'text', text: 'instructions', cache_control: ephemeral }],
        tools: [{ name: 'f', input_schema: { type: 'object' }, cache_control: ephemeral }],
        messages: [
          {
            role: 'user',
            content: [{ type: 'text', text: 'doc', cache_control: { type: 'ephemeral', ttl: '1h' } }],
          },
          { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'f', input: {} }] },
          {
            role: 'user',
            content: [{ type: 'tool_result', tool_use_id: 't1', content: 'r1', cache_control: ephemeral }],
          },
        ],
      }),
    );
    expect(chat.messages[0]).toEqual({
      role: 'system',
      content: [{ type: 'text', text: 'instructions', cache_control: ephemeral }],
    });
    expect(chat.messages[1]).toEqual({
      role: 'user',
      content: [{ type: 'text', text: 'doc', cache_control: { type: 'ephemeral', ttl: '1h' } }],
    });
    expect(chat.messages[3]).toEqual({
      role: 'tool',
      tool_call_id: 't1',
      content: [{ type: 'text', text: 'r1', cache_control: ephemeral }],
    });
    expect(chat.tools?.[0]?.cache_control).toEqual(ephemeral);
    // A ttl Anthropic does not have is refused.
    expect(
      AnthropicRequest.safeParse({
        ...base,
        messages: [
          {
            role: 'user',
            content: [{ type: 'text', text: 'x', cache_control: { type: 'ephemeral', ttl: '1d' } }],
          },
        ],
      }).success,
    ).toBe(false);
  });

  it('maps system, turns, images, tool use and results, and the sampling fields', () => {
    const chat = toChatRequest(
      parse({
        ...base,
        system: [{ type: 'text', text: 'Be terse.', cache_control: { type: 'ephemeral' } }],
        stop_sequences: ['###'],
        temperature: 0.3,
        top_p: 0.8,
        metadata: { user_id: 'u1' },
        stream: true,
        tools: [{ name: 'weather', description: 'w', input_schema: { type: 'object' } }],
        tool_choice: { type: 'tool', name: 'weather', disable_parallel_tool_use: true },
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
              { type: 'image', source: { type: 'url', url: 'https://x.test/a.png' } },
              { type: 'text', text: 'Weather?' },
            ],
          },
          {
            role: 'assistant',
            content: [
              { type: 'thinking', thinking: 'hmm', signature: 's' },
              { type: 'text', text: 'Checking.' },
              { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Oslo' } },
            ],
          },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'after' },
              { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '4C' }] },
            ],
          },
        ],
      }),
    );
    expect(chat).toEqual({
      model: 'openai/gpt-4o-mini',
      max_tokens: 100,
      stream: true,
      stop: ['###'],
      temperature: 0.3,
      top_p: 0.8,
      user: 'u1',
      tools: [
        { type: 'function', function: { name: 'weather', description: 'w', parameters: { type: 'object' } } },
      ],
      tool_choice: { type: 'function', function: { name: 'weather' } },
      parallel_tool_calls: false,
      messages: [
        {
          role: 'system',
          content: [{ type: 'text', text: 'Be terse.', cache_control: { type: 'ephemeral' } }],
        },
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
            { type: 'image_url', image_url: { url: 'https://x.test/a.png' } },
            { type: 'text', text: 'Weather?' },
          ],
        },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [
            { id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } },
          ],
          // Earlier thinking travels unchanged (the Anthropic adapter sends it back first).
          thinking_blocks: [{ type: 'thinking', thinking: 'hmm', signature: 's' }],
        },
        // Tool results come first (right after the assistant's calls), the user's text after.
        { role: 'tool', tool_call_id: 'toolu_1', content: [{ type: 'text', text: '4C' }] },
        { role: 'user', content: [{ type: 'text', text: 'after' }] },
      ],
    });
  });

  it('maps tool_choice auto/any/none and thinking budgets', () => {
    const choice = (tool_choice: unknown) =>
      promptOf(
        parse({
          ...base,
          tools: [{ name: 'f', input_schema: { type: 'object' } }],
          messages: [{ role: 'user', content: 'x' }],
          tool_choice,
        }),
      ).tool_choice;
    expect(choice({ type: 'auto' })).toBe('auto');
    expect(choice({ type: 'any' })).toBe('required');
    expect(choice({ type: 'none' })).toBe('none');
    expect(effortOfBudget(1024)).toBe('low');
    expect(effortOfBudget(4096)).toBe('medium');
    expect(effortOfBudget(4097)).toBe('high');
    const t = toChatRequest(
      parse({
        ...base,
        max_tokens: 8000,
        thinking: { type: 'enabled', budget_tokens: 2000 },
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    expect(t.reasoning_effort).toBe('medium');
    // The budget itself is carried: Anthropic and Gemini think with it exactly.
    expect(t.thinking_budget).toBe(2000);
  });

  it('passes top_k on (the pipeline refuses it where the target has none); refuses a thinking budget not below max_tokens', () => {
    const msgs = [{ role: 'user', content: 'x' }];
    expect(toChatRequest(parse({ ...base, top_k: 3, messages: msgs })).top_k).toBe(3);
    expect(() =>
      toChatRequest(parse({ ...base, thinking: { type: 'enabled', budget_tokens: 2000 }, messages: msgs })),
    ).toThrow(expect.objectContaining({ param: 'thinking.budget_tokens' }));
  });

  it('refuses a conversation whose turns are all empty, naming the empty turn, as Anthropic does', () => {
    const r = AnthropicRequest.safeParse({ ...base, system: 'x', messages: [{ role: 'user', content: [] }] });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['messages', 0, 'content']);
  });

  it('refuses what Anthropic refuses: unknown fields, a system role turn, temperature above 1', () => {
    const msgs = [{ role: 'user', content: 'x' }];
    expect(AnthropicRequest.safeParse({ ...base, messages: msgs, n: 2 }).success).toBe(false);
    expect(
      AnthropicRequest.safeParse({ ...base, messages: [{ role: 'system', content: 'x' }] }).success,
    ).toBe(false);
    expect(AnthropicRequest.safeParse({ ...base, messages: msgs, temperature: 1.5 }).success).toBe(false);
    expect(AnthropicRequest.safeParse({ model: 'm', messages: msgs }).success).toBe(false);
  });
});

const completion = (over: Partial<Parameters<typeof toChatCompletion>[3]> = {}) =>
  toChatCompletion(
    'req_1',
    { provider: 'openai', model: 'gpt-4o-mini' },
    1,
    {
      model: 'gpt-4o-mini',
      content: 'Hello there.',
      toolCalls: [],
      finishReason: 'stop',
      usage: {
        ...zeroUsage(),
        inputTokens: 100,
        cachedInputTokens: 30,
        cacheWriteTokens: 20,
        outputTokens: 7,
      },
      ...over,
    },
    0n,
  );

describe("the pipeline's refusals in the door's terms", () => {
  it('renames a chat parameter to the field the caller sent, and leaves other errors alone', () => {
    const e = new GatewayError({
      code: 'invalid_request_error',
      message: "'user' is not supported by gemini: it has no end-user field.",
      param: 'user',
    });
    expect(inDoorTerms(e, MESSAGES_PARAMS)).toMatchObject({
      param: 'metadata.user_id',
      message: "'metadata.user_id' is not supported by gemini: it has no end-user field.",
      code: 'invalid_request_error',
    });
    const other = new GatewayError({ code: 'model_not_found', message: 'x', param: 'model' });
    expect(inDoorTerms(other, MESSAGES_PARAMS)).toBe(other);
    expect(inDoorTerms('not an error', MESSAGES_PARAMS)).toBe('not an error');
  });
});

describe('chat result → Anthropic message', () => {
  it('keeps the gateway model name, maps stop reasons, and counts input as Anthropic does', () => {
    const m = toAnthropicMessage(completion());
    expect(m).toEqual({
      id: 'req_1',
      type: 'message',
      role: 'assistant',
      model: 'openai/gpt-4o-mini',
      content: [{ type: 'text', text: 'Hello there.' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: {
        input_tokens: 50,
        output_tokens: 7,
        cache_read_input_tokens: 30,
        cache_creation_input_tokens: 20,
        cache_creation: { ephemeral_5m_input_tokens: 20, ephemeral_1h_input_tokens: 0 },
      },
    });
    expect(toAnthropicMessage(completion({ finishReason: 'length' })).stop_reason).toBe('max_tokens');
  });

  it('turns tool calls into tool_use blocks with parsed input', () => {
    const m = toAnthropicMessage(
      completion({
        content: null,
        finishReason: 'tool_calls',
        toolCalls: [
          { id: 'call_1', type: 'function', function: { name: 'w', arguments: '{"city":"Oslo"}' } },
        ],
      }),
    );
    expect(m.content).toEqual([{ type: 'tool_use', id: 'call_1', name: 'w', input: { city: 'Oslo' } }]);
    expect(m.stop_reason).toBe('tool_use');
  });

  it('maps every gateway error to Anthropic status and type', () => {
    expect(anthropicError('invalid_api_key', 'x').status).toBe(401);
    expect(anthropicError('invalid_api_key', 'x').body).toEqual({
      type: 'error',
      error: { type: 'authentication_error', message: 'x' },
    });
    expect(anthropicError('model_not_found', 'x').body.error.type).toBe('not_found_error');
    expect(anthropicError('rate_limit_exceeded', 'x').status).toBe(429);
    expect(anthropicError('overloaded', 'x')).toMatchObject({
      status: 529,
      body: { error: { type: 'overloaded_error' } },
    });
    expect(anthropicError('internal_error', 'x')).toMatchObject({
      status: 500,
      body: { error: { type: 'api_error' } },
    });
  });
});

describe('frames → Anthropic events', () => {
  const job = { v: 1 as const, job: 'req_1' };
  let seq = 0;
  const f = (x: Record<string, unknown>) => ({ ...job, seq: ++seq, ...x }) as Frame;
  const names = (s: string) => [...s.matchAll(/^event: (.*)$/gm)].map((m) => m[1]);

  it("opens with the prompt's counts when the first delta carries them", () => {
    const w = new AnthropicStreamWriter('req_p');
    const prompt = toOpenAIUsage({
      ...zeroUsage(),
      inputTokens: 30,
      cachedInputTokens: 10,
      cacheWriteTokens: 5,
    });
    const out = w.frame(f({ type: 'delta', text: 'Hi', prompt }));
    const start = JSON.parse(/^data: (.*)$/m.exec(out)?.[1] ?? '{}') as { message: { usage: unknown } };
    expect(start.message.usage).toMatchObject({
      input_tokens: 15,
      cache_read_input_tokens: 10,
      cache_creation_input_tokens: 5,
    });
  });

  it('streams thinking, text and a tool call as Anthropic blocks, usage at the end', () => {
    const w = new AnthropicStreamWriter('req_1');
    let out = w.frame(
      f({ type: 'status', state: 'running', provider: 'anthropic', model: 'claude-haiku-4-5' }),
    );
    expect(out).toBe('');
    expect(w.started).toBe(false);
    out += w.frame(f({ type: 'delta', reasoning: 'hmm' }));
    out += w.frame(f({ type: 'delta', text: 'Hi' }));
    out += w.frame(
      f({
        type: 'delta',
        tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'w', arguments: '{"a"' } }],
      }),
    );
    out += w.frame(f({ type: 'delta', tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }));
    const result = completion({
      content: 'Hi',
      finishReason: 'tool_calls',
      toolCalls: [{ id: 'c1', type: 'function', function: { name: 'w', arguments: '{"a":1}' } }],
    });
    out += w.frame(f({ type: 'done', result }));
    expect(names(out)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(out).toContain('"model":"anthropic/claude-haiku-4-5"');
    expect(out).toContain('{"type":"thinking_delta","thinking":"hmm"}');
    expect(out).toContain('{"type":"input_json_delta","partial_json":":1}"}');
    expect(out).toContain(
      '"delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":50,"output_tokens":7,"cache_read_input_tokens":30,"cache_creation_input_tokens":20,"cache_creation":{"ephemeral_5m_input_tokens":20,"ephemeral_1h_input_tokens":0}}',
    );
    expect(w.route).toEqual([{ provider: 'anthropic', model: 'claude-haiku-4-5', status: 200, code: 'ok' }]);
  });

  it('tops up from the result what the deltas did not carry, and ends with an error event on failure', () => {
    const w = new AnthropicStreamWriter('req_2');
    const out = w.frame(f({ type: 'done', result: completion() }));
    expect(out).toContain('{"type":"text_delta","text":"Hello there."}');
    expect(names(out).at(-1)).toBe('message_stop');
    const e = new AnthropicStreamWriter('req_3').frame(
      f({
        type: 'error',
        status: 429,
        error: { code: 'rate_limit_exceeded', message: 'slow', retryable: true, param: null },
      }),
    );
    expect(e).toBe(
      'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"slow"},"request_id":"req_3"}\n\n',
    );
  });
});

describe('what SDKs send back, and the newer request fields', () => {
  /** The 400 the route answers for a body (its param and message), or the chat request it becomes. */
  const refusal = (body: unknown): { param: string | null; message: string } => {
    const r = AnthropicRequest.safeParse(body);
    try {
      if (!r.success) throw fromZod(r.error);
      toChatRequest(r.data);
    } catch (e) {
      if (!(e instanceof GatewayError)) throw e;
      return { param: e.param, message: e.message };
    }
    throw new Error('accepted');
  };
  const user = { role: 'user', content: 'What is the weather?' } as const;
  const weather = { name: 'get_weather', input_schema: { type: 'object' } };

  it("takes an answer's content as the Python SDK dumps it (caller, toolset_name, citations), leaving them out", () => {
    const chat = toChatRequest(
      parse({
        ...base,
        tools: [weather],
        messages: [
          user,
          {
            role: 'assistant',
            content: [
              { type: 'thinking', thinking: 'hmm', signature: 'sig' },
              { type: 'text', text: 'Let me look.', citations: null },
              {
                type: 'tool_use',
                id: 't1',
                name: 'get_weather',
                input: { city: 'Oslo' },
                caller: { type: 'direct' },
                toolset_name: null,
              },
              { type: 'tool_use', id: 't2', name: 'get_weather', input: {}, caller: null },
            ],
          },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 't1', content: 'rain' },
              { type: 'tool_result', tool_use_id: 't2', content: 'sun' },
            ],
          },
        ],
      }),
    );
    expect(chat.messages[1]).toEqual({
      role: 'assistant',
      content: 'Let me look.',
      tool_calls: [
        { id: 't1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
        { id: 't2', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
      ],
      thinking_blocks: [{ type: 'thinking', thinking: 'hmm', signature: 'sig' }],
    });
  });

  it('refuses, by their exact path, what cannot be tied to anything here: server callers, toolsets, server tool blocks', () => {
    const turn = (block: Record<string, unknown>) => ({
      ...base,
      messages: [user, { role: 'assistant', content: [block] }],
    });
    const use = { type: 'tool_use', id: 't1', name: 'f', input: {} };
    expect(refusal(turn({ ...use, caller: { type: 'code_execution_20250825', tool_id: 'srv_1' } }))).toEqual({
      param: 'messages.1.content.0.caller',
      message: expect.stringMatching(/code_execution_20250825.*not supported/),
    });
    expect(refusal(turn({ ...use, toolset_name: 'browser' })).param).toBe(
      'messages.1.content.0.toolset_name',
    );
    expect(refusal(turn({ type: 'server_tool_use', id: 's', name: 'web_search', input: {} }))).toEqual({
      param: 'messages.1.content.0.type',
      message: expect.stringMatching(/"server_tool_use" is not supported here; the types taken are 'text'/),
    });
    // Still named exactly: an unknown key on an answer's block.
    expect(refusal(turn({ ...use, extra: 1 }))).toEqual({
      param: 'messages.1.content.0.extra',
      message: 'Unrecognized request argument supplied: messages.1.content.0.extra',
    });
  });

  it('carries tools[].strict, and input_examples in the description every target reads', () => {
    const chat = toChatRequest(
      parse({
        ...base,
        messages: [user],
        tools: [
          {
            ...weather,
            description: 'Weather.',
            strict: true,
            input_examples: [{ city: 'Oslo' }, { city: 'Rome' }],
          },
          { name: 'g', input_schema: { type: 'object' }, strict: false, input_examples: [{}] },
        ],
      }),
    );
    expect(chat.tools?.map((t) => t.function)).toEqual([
      {
        name: 'get_weather',
        description: 'Weather.\n\nExamples of valid input:\n{"city":"Oslo"}\n{"city":"Rome"}',
        parameters: { type: 'object' },
        strict: true,
      },
      {
        name: 'g',
        description: 'Examples of valid input:\n{}',
        parameters: { type: 'object' },
        strict: false,
      },
    ]);
  });

  it('carries documents: a PDF with its title as the file name, text and content documents as text, context first', () => {
    const chat = toChatRequest(
      parse({
        ...base,
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'document',
                source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' },
                title: 'Q3 report',
                context: 'Internal, draft',
                citations: { enabled: false },
              },
              {
                type: 'document',
                source: { type: 'text', media_type: 'text/plain', data: 'The grass is green.' },
                title: 'Facts',
                cache_control: { type: 'ephemeral' },
              },
              {
                type: 'document',
                source: {
                  type: 'content',
                  content: [
                    { type: 'text', text: 'First chunk.' },
                    { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } },
                  ],
                },
                citations: null,
              },
              { type: 'document', source: { type: 'content', content: 'Plain content.' } },
              { type: 'text', text: 'Summarize.' },
            ],
          },
        ],
      }),
    );
    expect(chat.messages[0]?.content).toEqual([
      { type: 'text', text: 'Document context: Internal, draft' },
      { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'Q3 report' } },
      { type: 'text', text: 'Document title: Facts' },
      { type: 'text', text: 'The grass is green.', cache_control: { type: 'ephemeral' } },
      { type: 'text', text: 'First chunk.' },
      { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
      { type: 'text', text: 'Plain content.' },
      { type: 'text', text: 'Summarize.' },
    ]);
  });

  it('refuses what no target can honour, naming the field: citations on, a PDF by URL or file id', () => {
    const doc = (extra: Record<string, unknown>) => ({
      ...base,
      messages: [
        user,
        { role: 'assistant', content: 'Sure.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Read this.' },
            {
              type: 'document',
              source: { type: 'text', media_type: 'text/plain', data: 'x' },
              ...extra,
            },
          ],
        },
      ],
    });
    expect(refusal(doc({ citations: { enabled: true } }))).toEqual({
      param: 'messages.2.content.1.citations',
      message: expect.stringMatching(/^messages.2.content.1.citations: Citations are not supported/),
    });
    expect(refusal(doc({ source: { type: 'url', url: 'https://example.com/a.pdf' } }))).toEqual({
      param: 'messages.2.content.1.source',
      message: expect.stringMatching(/by URL is not supported.*'base64'/),
    });
    expect(refusal(doc({ source: { type: 'file', file_id: 'file_1' } })).param).toBe(
      'messages.2.content.1.source',
    );
    // A wrong block is named where it is, never the vague "Invalid input" at the content.
    expect(refusal(doc({ source: { type: 'pdf', data: 'x' } }))).toEqual({
      param: 'messages.2.content.1.source.type',
      message: expect.stringMatching(/A document source of type "pdf" is not supported here/),
    });
    expect(refusal(doc({ source: { type: 'text', media_type: 'text/plain', data: 5 } }))).toEqual({
      param: 'messages.2.content.1.source.data',
      message: expect.stringMatching(
        /^Invalid value for 'messages.2.content.1.source.data': .*expected string/,
      ),
    });
    expect(
      refusal({
        ...base,
        messages: [
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'text' }] }] },
        ],
      }).param,
    ).toBe('messages.0.content.0.content.0.text');
    expect(refusal({ ...base, messages: [{ role: 'user', content: 5 }] })).toEqual({
      param: 'messages.0.content',
      message: "Invalid value for 'messages.0.content': expected a string or an array of content blocks",
    });
  });

  it("takes thinking.display 'summarized' (what the door answers) and refuses 'omitted' by name", () => {
    const thinking = (display: unknown) => ({
      ...base,
      max_tokens: 4000,
      messages: [user],
      thinking: { type: 'enabled', budget_tokens: 1024, display },
    });
    expect(toChatRequest(parse(thinking('summarized'))).thinking_budget).toBe(1024);
    expect(toChatRequest(parse(thinking(null))).thinking_budget).toBe(1024);
    expect(refusal(thinking('omitted'))).toEqual({
      param: 'thinking.display',
      message: expect.stringContaining("'omitted' is not supported"),
    });
  });

  it('refuses a tool whose input_schema is not an object schema, as Anthropic does', () => {
    const tool = (input_schema: unknown) => ({
      ...base,
      messages: [user],
      tools: [{ name: 'f', input_schema }],
    });
    expect(refusal(tool({ properties: {} })).param).toBe('tools.0.input_schema.type');
    expect(refusal(tool({ type: 'string' })).param).toBe('tools.0.input_schema.type');
    expect(
      toChatRequest(parse(tool({ type: 'object', properties: {} }))).tools?.[0]?.function.parameters,
    ).toEqual({
      type: 'object',
      properties: {},
    });
  });

  it("takes output_config.effort 'high' (Anthropic's default); refuses other levels and context_management by name", () => {
    const chat = toChatRequest(parse({ ...base, messages: [user], output_config: { effort: 'high' } }));
    expect(chat.reasoning_effort).toBeUndefined();
    expect(refusal({ ...base, messages: [user], output_config: { effort: 'low' } })).toEqual({
      param: 'output_config.effort',
      message: expect.stringMatching(/^output_config.effort: the effort 'low' is not supported.*thinking/),
    });
    expect(
      refusal({
        ...base,
        messages: [user],
        context_management: { edits: [{ type: 'clear_tool_uses_20250919' }] },
      }).param,
    ).toBe('context_management');
    expect(refusal({ ...base, messages: [user], output_config: { effort: 'extreme' } }).param).toBe(
      'output_config.effort',
    );
  });
});
