import type { ChatRequest } from '@faregate/contracts/chat';
import { describe, expect, it } from 'vitest';
import { fixture } from '../conformance/cases.ts';
import { openaiAdapter } from '../openai/index.ts';
import { adapterFor } from '../registry.ts';
import type { ProviderConfig } from '../types.ts';
import { readOpenAIRateLimits } from './errors.ts';
import { openAICompatible } from './index.ts';

const config: ProviderConfig = {
  id: 'llama',
  kind: 'openai-compatible',
  baseUrl: 'http://localhost:11434/v1/',
  apiKeys: [],
};
const base: ChatRequest = {
  model: 'llama3.2',
  messages: [
    { role: 'developer', content: 'Be brief.' },
    { role: 'user', content: 'hi' },
  ],
};
const tools: ChatRequest['tools'] = [{ type: 'function', function: { name: 'f' } }];
const ollama = adapterFor('openai-compatible', 'ollama');
const build = (adapter = ollama, req: Partial<ChatRequest> = {}, stream = false, apiKey?: string) => {
  const r = adapter.buildRequest({ ...base, ...req }, { model: 'llama3.2', stream, config, apiKey });
  return { ...r, json: JSON.parse(r.body ?? '{}') };
};

describe('openai-compatible quirks (ollama preset)', () => {
  it('joins the base URL, sends a placeholder key, and maps developer → system', () => {
    const r = build();
    expect(r.url).toBe('http://localhost:11434/v1/chat/completions');
    expect(r.headers.authorization).toBe('Bearer ollama');
    expect(r.json.messages[0].role).toBe('system');
    expect(r.json.max_tokens).toBeUndefined();
  });

  it('tool_choice: auto omitted, none drops tools (same meaning), required refused', () => {
    expect(build(ollama, { tools, tool_choice: 'auto' }).json).toMatchObject({ tools });
    expect(build(ollama, { tools, tool_choice: 'auto' }).json.tool_choice).toBeUndefined();
    expect(build(ollama, { tools, tool_choice: 'none' }).json.tools).toBeUndefined();
    // A host that takes tool_choice gets the tools with 'none', as OpenAI takes them.
    expect(build(openaiAdapter, { tools, tool_choice: 'none' }).json).toMatchObject({
      tools,
      tool_choice: 'none',
    });
    expect(() => build(ollama, { tools, tool_choice: 'required' })).toThrowError(
      expect.objectContaining({ code: 'invalid_request_error', param: 'tool_choice' }),
    );
  });

  it('refuses remote image URLs and unsupported fields with a 400 naming them', () => {
    const img: ChatRequest['messages'] = [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] },
    ];
    expect(() => build(ollama, { messages: img })).toThrowError(
      expect.objectContaining({ param: 'messages' }),
    );
    expect(() => build(ollama, { logit_bias: { '1': 2 } })).toThrowError(
      expect.objectContaining({ param: 'logit_bias' }),
    );
  });

  it('always asks for stream usage; OpenAI account fields are refused off OpenAI, safety_identifier is user', () => {
    const r = build(openAICompatible(), { store: false, max_tokens: 9, safety_identifier: 'u-2' }, true, 'k');
    expect(r.json).toMatchObject({ stream: true, stream_options: { include_usage: true }, max_tokens: 9 });
    expect(r.json.store).toBeUndefined();
    expect(r.json.user).toBe('u-2');
    expect(() => build(openAICompatible(), { store: true })).toThrowError(
      expect.objectContaining({ param: 'store' }),
    );
    expect(() => build(openAICompatible(), { metadata: { a: 'b' } })).toThrowError(
      expect.objectContaining({ param: 'metadata' }),
    );
  });
});

describe('openai adapter specifics', () => {
  it('uses max_completion_tokens and keeps account fields; refuses priced service tiers', () => {
    const r = build(openaiAdapter, { max_tokens: 9, store: true });
    expect(r.json).toMatchObject({ max_completion_tokens: 9, store: true });
    expect(r.json.max_tokens).toBeUndefined();
    expect(() => build(openaiAdapter, { service_tier: 'priority' })).toThrowError(
      expect.objectContaining({ param: 'service_tier' }),
    );
    expect(() => build(openaiAdapter, { service_tier: 'flex' })).toThrowError(
      expect.objectContaining({ param: 'service_tier' }),
    );
    expect(build(openaiAdapter, { service_tier: 'default' }).json.service_tier).toBe('default');
    // An empty stop list asks for nothing and is not sent (the o-series refuse `stop` in any form).
    expect(build(openaiAdapter, { stop: [] }).json).not.toHaveProperty('stop');
    expect(build(openaiAdapter, { stop: ['x'] }).json.stop).toEqual(['x']);
    // GPT-5's verbosity goes to OpenAI; other hosts have none.
    expect(build(openaiAdapter, { verbosity: 'low' }).json.verbosity).toBe('low');
    expect(() => build(openAICompatible(), { verbosity: 'low' })).toThrowError(
      expect.objectContaining({ param: 'verbosity' }),
    );
  });

  it("leaves Anthropic's caching breakpoints (cache_control) out of parts and tools: OpenAI caches on its own", () => {
    const ephemeral = { type: 'ephemeral' as const };
    const { json } = build(openaiAdapter, {
      messages: [
        { role: 'system', content: [{ type: 'text', text: 's', cache_control: ephemeral }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'u', cache_control: ephemeral },
            { type: 'text', text: 'v' },
          ],
        },
      ],
      tools: [{ type: 'function', cache_control: ephemeral, function: { name: 'f' } }],
    });
    expect(json.messages).toEqual([
      { role: 'system', content: [{ type: 'text', text: 's' }] },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'u' },
          { type: 'text', text: 'v' },
        ],
      },
    ]);
    expect(json.tools).toEqual([{ type: 'function', function: { name: 'f' } }]);
  });

  it('passes prompt_cache_key to OpenAI; other hosts drop it (a cache-routing hint)', () => {
    expect(build(openaiAdapter, { prompt_cache_key: 'tenant-1' }).json.prompt_cache_key).toBe('tenant-1');
    expect(build(openAICompatible(), { prompt_cache_key: 'tenant-1' }).json.prompt_cache_key).toBeUndefined();
    // How long OpenAI keeps the cache, likewise.
    expect(build(openaiAdapter, { prompt_cache_retention: '24h' }).json.prompt_cache_retention).toBe('24h');
    expect(
      build(openAICompatible(), { prompt_cache_retention: '24h' }).json.prompt_cache_retention,
    ).toBeUndefined();
  });

  it('reads Go-duration resets', () => {
    const info = readOpenAIRateLimits(
      new Headers({
        'x-ratelimit-reset-requests': '12ms',
        'x-ratelimit-reset-tokens': '1h2m3.5s',
        'x-ratelimit-limit-tokens': '160000',
      }),
    );
    expect(info).toEqual({ resetRequestsMs: 12, resetTokensMs: 3_723_500, limitTokens: 160000 });
  });
});

describe('openai-compatible responses and errors', () => {
  const adapter = openAICompatible();

  it('Ollama: tool calls with finish "stop" become tool_calls; reasoning is kept', () => {
    const r = adapter.parseResponse(JSON.parse(fixture('openai-compatible', 'ollama-response.json')));
    expect(r).toMatchObject({ finishReason: 'tool_calls', reasoning: 'The user wants weather.' });
    expect(r.toolCalls[0]?.function).toEqual({ name: 'lookup', arguments: '{"q":"planets"}' });
  });

  it('a 200 with no choices (empty or absent) is no answer: a retryable upstream_error, not an empty success', () => {
    for (const body of [
      { id: 'x', object: 'chat.completion', choices: [], usage: { prompt_tokens: 3, completion_tokens: 12 } },
      { id: 'x' },
    ]) {
      expect(() => openaiAdapter.parseResponse(body)).toThrow(
        expect.objectContaining({ code: 'upstream_error', retryable: true }),
      );
    }
  });

  it('vLLM integer error codes, flat bodies and bare-string bodies all classify', () => {
    const h = new Headers();
    expect(adapter.classifyError(404, h, fixture('openai-compatible', 'vllm-error-404.json'))).toMatchObject({
      code: 'model_not_found',
    });
    expect(
      adapter.classifyError(400, h, fixture('openai-compatible', 'vllm-error-context.json')),
    ).toMatchObject({
      code: 'context_length_exceeded',
    });
    const flat = adapter.classifyError(400, h, fixture('openai-compatible', 'flat-error.json'));
    expect(flat).toMatchObject({ code: 'invalid_request_error' });
    expect(flat.message).toContain('temperature');
    expect(
      adapter.classifyError(401, h, fixture('openai-compatible', 'vllm-unauthorized.json')),
    ).toMatchObject({
      code: 'upstream_auth_error',
    });
  });

  it('vLLM model listing: max_model_len is the context window', () => {
    const r = adapter.parseModels(JSON.parse(fixture('openai-compatible', 'vllm-models.json')));
    expect(r.models).toEqual([
      { id: 'meta-llama/Llama-3.1-8B-Instruct', created: 1767225600, contextWindow: 32768, ownedBy: 'vllm' },
    ]);
  });
});
