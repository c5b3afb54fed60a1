import { readFileSync } from 'node:fs';
import type { ChatRequest, Usage } from '@faregate/contracts/chat';
import type { ErrorCode } from '@faregate/contracts/errors';
import { anthropicAdapter } from '../anthropic/index.ts';
import { geminiAdapter } from '../gemini/index.ts';
import { openaiAdapter } from '../openai/index.ts';
import { openAICompatible } from '../openai-compatible/index.ts';
import type { ProviderAdapter, ProviderConfig } from '../types.ts';

/** What a provider request body says, normalized so one assertion fits every adapter. */
export interface RequestFacts {
  system: string;
  /** The function each tool result answers (Gemini needs it by name; others link by id). */
  toolResultFor: string;
  toolCallArgs: unknown;
  toolNames: string[];
  /** `base64:<mime>` or `url:<url>`. */
  images: string[];
  jsonSchema: unknown;
  temperature: unknown;
  topP: unknown;
  maxTokens: unknown;
  stop: unknown;
  lastUserText: string;
}

export interface ErrorFixture {
  status: number;
  headers?: Record<string, string>;
  file: string;
}

export interface ConformanceCase {
  name: string;
  adapter: ProviderAdapter;
  /** Fixture folder (`src/<provider>/fixtures/`). */
  dir: string;
  config: ProviderConfig;
  model: string;
  inspect(body: Record<string, unknown>): RequestFacts;
  usage: { text: Usage; tools: Usage };
  errors: {
    rateLimited: ErrorFixture & { retryAfterMs: number };
    overloaded: ErrorFixture;
    server: ErrorFixture;
    contextLength: ErrorFixture;
    auth: ErrorFixture;
    /** A 429 retrying cannot fix (or, for Anthropic, one without a hint: still retryable). */
    quota: ErrorFixture & { retryable: boolean };
  };
  /** The in-band error fixture and the code it must classify as. */
  streamError: { file: string; code: ErrorCode };
  /** A well-formed event of a kind this adapter does not know. */
  unknownEvent: string;
  /** The stream with its terminal marker removed. */
  cut(full: string): string;
  models: { ids: string[]; nextPageToken?: string; contextWindow?: number };
}

export const fixture = (dir: string, file: string): string =>
  readFileSync(new URL(`../${dir}/fixtures/${file}`, import.meta.url), 'utf8');

/** The request every adapter must translate: system, multi-part images, tool round trip, JSON schema. */
export const CANONICAL: ChatRequest = {
  model: 'canonical',
  messages: [
    { role: 'system', content: 'Be brief.' },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'What is in these?' },
        { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
        { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
      ],
    },
    {
      role: 'assistant',
      content: null,
      tool_calls: [
        { id: 'call_k1', type: 'function', function: { name: 'lookup', arguments: '{"q":"planets"}' } },
      ],
    },
    { role: 'tool', tool_call_id: 'call_k1', content: 'Jupiter, Saturn' },
    { role: 'user', content: 'Thanks. Which is largest?' },
  ],
  tools: [
    {
      type: 'function',
      function: {
        name: 'lookup',
        description: 'Search facts',
        parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
      },
    },
  ],
  tool_choice: 'auto',
  response_format: {
    type: 'json_schema',
    json_schema: {
      name: 'answer',
      schema: { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] },
    },
  },
  temperature: 0.3,
  top_p: 0.9,
  max_completion_tokens: 50,
  stop: ['###'],
};

// biome-ignore lint/suspicious/noExplicitAny: test inspectors walk untyped provider JSON
type AnyJson = any;

function openAIFacts(b: AnyJson): RequestFacts {
  const msgs: AnyJson[] = b.messages;
  const calls = msgs.flatMap((m) => m.tool_calls ?? []);
  const toolMsg = msgs.find((m) => m.role === 'tool');
  const parts: AnyJson[] = msgs.flatMap((m) => (Array.isArray(m.content) ? m.content : []));
  const last = msgs.at(-1);
  return {
    system: msgs
      .filter((m) => m.role === 'system' || m.role === 'developer')
      .map((m) => m.content)
      .join('\n'),
    toolResultFor: calls.find((c) => c.id === toolMsg?.tool_call_id)?.function.name,
    toolCallArgs: JSON.parse(calls[0].function.arguments),
    toolNames: b.tools.map((t: AnyJson) => t.function.name),
    images: parts
      .filter((p) => p.type === 'image_url')
      .map((p) =>
        p.image_url.url.startsWith('data:')
          ? `base64:${p.image_url.url.slice(5, p.image_url.url.indexOf(';'))}`
          : `url:${p.image_url.url}`,
      ),
    jsonSchema: b.response_format.json_schema.schema,
    temperature: b.temperature,
    topP: b.top_p,
    maxTokens: b.max_completion_tokens ?? b.max_tokens,
    stop: b.stop,
    lastUserText: typeof last.content === 'string' ? last.content : '',
  };
}

function anthropicFacts(b: AnyJson): RequestFacts {
  const blocks: AnyJson[] = b.messages.flatMap((m: AnyJson) => m.content);
  const uses = blocks.filter((x) => x.type === 'tool_use');
  const result = blocks.find((x) => x.type === 'tool_result');
  const lastTurn = b.messages.at(-1);
  return {
    system: b.system.map((s: AnyJson) => s.text).join('\n'),
    toolResultFor: uses.find((u) => u.id === result?.tool_use_id)?.name,
    toolCallArgs: uses[0].input,
    toolNames: b.tools.map((t: AnyJson) => t.name),
    images: blocks
      .filter((x) => x.type === 'image')
      .map((x) => (x.source.type === 'base64' ? `base64:${x.source.media_type}` : `url:${x.source.url}`)),
    jsonSchema: b.output_config.format.schema,
    temperature: b.temperature,
    topP: b.top_p,
    maxTokens: b.max_tokens,
    stop: b.stop_sequences,
    lastUserText: lastTurn.role === 'user' ? lastTurn.content.at(-1).text : '',
  };
}

function geminiFacts(b: AnyJson): RequestFacts {
  const parts: AnyJson[] = b.contents.flatMap((c: AnyJson) => c.parts);
  const gc = b.generationConfig;
  const lastTurn = b.contents.at(-1);
  return {
    system: b.systemInstruction.parts.map((p: AnyJson) => p.text).join('\n'),
    toolResultFor: parts.find((p) => p.functionResponse)?.functionResponse.name,
    toolCallArgs: parts.find((p) => p.functionCall)?.functionCall.args,
    toolNames: b.tools[0].functionDeclarations.map((d: AnyJson) => d.name),
    images: parts
      .filter((p) => p.inlineData || p.fileData)
      .map((p) => (p.inlineData ? `base64:${p.inlineData.mimeType}` : `url:${p.fileData.fileUri}`)),
    jsonSchema: gc.responseMimeType === 'application/json' ? gc.responseJsonSchema : undefined,
    temperature: gc.temperature,
    topP: gc.topP,
    maxTokens: gc.maxOutputTokens,
    stop: gc.stopSequences,
    lastUserText: lastTurn.role === 'user' ? lastTurn.parts.at(-1).text : '',
  };
}

const cfg = (id: string, kind: ProviderConfig['kind'], baseUrl: string): ProviderConfig => ({
  id,
  kind,
  baseUrl,
  apiKeys: ['sk-conformance-key-0001'],
});

const openAIBased = (name: string, adapter: ProviderAdapter, config: ProviderConfig): ConformanceCase => ({
  name,
  adapter,
  dir: 'openai',
  config,
  model: 'gpt-4o-mini',
  inspect: openAIFacts,
  usage: {
    text: { inputTokens: 31, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 2, reasoningTokens: 0 },
    tools: {
      inputTokens: 120,
      cachedInputTokens: 64,
      cacheWriteTokens: 0,
      outputTokens: 18,
      reasoningTokens: 8,
    },
  },
  errors: {
    rateLimited: {
      status: 429,
      headers: { 'retry-after-ms': '800' },
      file: 'error-429.json',
      retryAfterMs: 800,
    },
    overloaded: { status: 503, file: 'error-503.json' },
    server: { status: 500, file: 'error-500.json' },
    contextLength: { status: 400, file: 'error-context.json' },
    auth: { status: 401, file: 'error-401.json' },
    quota: { status: 429, file: 'error-quota.json', retryable: false },
  },
  streamError: { file: 'stream-error.sse', code: 'upstream_error' },
  unknownEvent: 'event: thread.run.created\ndata: {"object":"thread.run","id":"run_1"}\n\n: keep-alive\n\n',
  cut: (full) => full.replace('data: [DONE]\n\n', ''),
  models: { ids: ['gpt-4o-mini', 'gpt-4.1'] },
});

export const CASES: ConformanceCase[] = [
  openAIBased('openai', openaiAdapter, cfg('openai', 'openai', 'https://api.openai.com/v1')),
  openAIBased(
    'openai-compatible',
    openAICompatible(),
    cfg('llama', 'openai-compatible', 'http://localhost:8000/v1'),
  ),
  {
    name: 'anthropic',
    adapter: anthropicAdapter,
    dir: 'anthropic',
    config: cfg('anthropic', 'anthropic', 'https://api.anthropic.com'),
    model: 'claude-sonnet-4-5',
    inspect: anthropicFacts,
    usage: {
      text: {
        inputTokens: 1248,
        cachedInputTokens: 1200,
        cacheWriteTokens: 0,
        outputTokens: 9,
        reasoningTokens: 0,
      },
      tools: {
        inputTokens: 120,
        cachedInputTokens: 0,
        cacheWriteTokens: 100,
        outputTokens: 30,
        reasoningTokens: 0,
      },
    },
    errors: {
      rateLimited: {
        status: 429,
        headers: { 'retry-after': '12' },
        file: 'error-429.json',
        retryAfterMs: 12_000,
      },
      overloaded: { status: 529, file: 'error-529.json' },
      server: { status: 500, file: 'error-500.json' },
      contextLength: { status: 400, file: 'error-context.json' },
      auth: { status: 401, file: 'error-401.json' },
      quota: { status: 429, file: 'error-429.json', retryable: true },
    },
    streamError: { file: 'stream-error.sse', code: 'overloaded' },
    unknownEvent:
      'event: future_event\ndata: {"type":"future_event","detail":{"x":1}}\n\nevent: ping\ndata: {"type":"ping"}\n\n',
    cut: (full) => full.replace('event: message_stop\ndata: {"type":"message_stop"}\n\n', ''),
    models: {
      ids: ['claude-sonnet-4-5-20250929', 'claude-haiku-4-5-20251001'],
      nextPageToken: 'claude-haiku-4-5-20251001',
      contextWindow: 200_000,
    },
  },
  {
    name: 'gemini',
    adapter: geminiAdapter,
    dir: 'gemini',
    config: cfg('gemini', 'gemini', 'https://generativelanguage.googleapis.com'),
    model: 'gemini-2.5-flash',
    inspect: geminiFacts,
    usage: {
      text: {
        inputTokens: 83,
        cachedInputTokens: 32,
        cacheWriteTokens: 0,
        outputTokens: 118,
        reasoningTokens: 104,
      },
      tools: {
        inputTokens: 57,
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        outputTokens: 6,
        reasoningTokens: 0,
      },
    },
    errors: {
      rateLimited: { status: 429, file: 'error-429.json', retryAfterMs: 27_000 },
      overloaded: { status: 503, file: 'error-503.json' },
      server: { status: 500, file: 'error-500.json' },
      contextLength: { status: 400, file: 'error-context.json' },
      auth: { status: 400, file: 'error-401.json' },
      quota: { status: 429, file: 'error-429-daily.json', retryable: false },
    },
    streamError: { file: 'stream-error.txt', code: 'overloaded' },
    unknownEvent:
      'data: {"candidates": [{"content": {"parts": [],"role": "model"},"index": 0}],"futureField": {"x": 1}}\n\n',
    // Gemini's success marker is the chunk with finishReason: drop the last event.
    cut: (full) => full.slice(0, full.trimEnd().lastIndexOf('\n\n') + 2),
    models: {
      ids: ['gemini-2.5-flash', 'text-embedding-004'],
      nextPageToken: 'Cg9tb2RlbHMvZ2VtaW5p',
      contextWindow: 1_048_576,
    },
  },
];
