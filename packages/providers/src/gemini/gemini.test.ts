import type { ChatRequest } from '@faregate/contracts/chat';
import { describe, expect, it } from 'vitest';
import { fixture } from '../conformance/cases.ts';
import type { ProviderConfig } from '../types.ts';
import { geminiAdapter } from './index.ts';

const config: ProviderConfig = {
  id: 'gemini',
  kind: 'gemini',
  baseUrl: 'https://generativelanguage.googleapis.com',
  apiKeys: ['k'],
};
const build = (req: Partial<ChatRequest>, stream = false) => {
  const r = geminiAdapter.buildRequest(
    { model: 'gemini-2.5-flash', messages: [{ role: 'user', content: 'hi' }], ...req },
    { model: 'gemini-2.5-flash', stream, config, apiKey: 'AIza-secret' },
  );
  return { ...r, json: JSON.parse(r.body ?? '{}') };
};

describe('gemini request translation', () => {
  it('uses generateContent / streamGenerateContent?alt=sse with the key in x-goog-api-key', () => {
    expect(build({}).url).toBe(
      'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent',
    );
    const s = build({}, true);
    expect(s.url).toBe(
      'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
    );
    expect(s.url).not.toContain('key=');
    expect(s.headers['x-goog-api-key']).toBe('AIza-secret');
  });

  it('roles are user/model, seed goes to generationConfig, json_object sets the MIME type', () => {
    const { json } = build({
      messages: [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
        { role: 'user', content: 'c' },
      ],
      seed: 42,
      response_format: { type: 'json_object' },
    });
    expect(json.contents.map((c: { role: string }) => c.role)).toEqual(['user', 'model', 'user']);
    expect(json.generationConfig).toEqual({ seed: 42, responseMimeType: 'application/json' });
  });

  it('a tool result with an unknown tool_call_id is a 400 naming it (Gemini needs the function name)', () => {
    expect(() => build({ messages: [{ role: 'tool', tool_call_id: 'nope', content: 'x' }] })).toThrowError(
      expect.objectContaining({ code: 'invalid_request_error', param: 'messages[0].tool_call_id' }),
    );
  });

  it('maps tool_choice to functionCallingConfig', () => {
    const tools: ChatRequest['tools'] = [{ type: 'function', function: { name: 'f' } }];
    expect(
      build({ tools, tool_choice: { type: 'function', function: { name: 'f' } } }).json.toolConfig,
    ).toEqual({
      functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['f'] },
    });
    expect(build({ tools, tool_choice: 'none' }).json.toolConfig).toEqual({
      functionCallingConfig: { mode: 'NONE' },
    });
    // The tools stay declared with NONE (a conversation's earlier calls refer to them).
    expect(build({ tools, tool_choice: 'none' }).json.tools).toEqual([
      { functionDeclarations: [{ name: 'f' }] },
    ]);
  });
});

describe('gemini thinking budgets from reasoning_effort', () => {
  it.each([
    ['none', 0],
    ['minimal', 0],
    ['low', 1024],
    ['medium', 8192],
    ['high', 24576],
    // 2.5 Flash's largest budget: the higher efforts stay there rather than be refused.
    ['xhigh', 24576],
    ['max', 24576],
  ] as const)('%s → %i', (effort, budget) => {
    // Its thoughts asked for whenever it thinks: Gemini returns them only then.
    expect(build({ reasoning_effort: effort }).json.generationConfig.thinkingConfig).toEqual(
      budget > 0 ? { thinkingBudget: budget, includeThoughts: true } : { thinkingBudget: budget },
    );
  });
});

describe("gemini thinking budgets within the model's range", () => {
  it('2.5 Pro thinks always (128 to 32,768): none and minimal are its least, max its most', () => {
    const pro = (reasoning_effort: ChatRequest['reasoning_effort']) =>
      JSON.parse(
        geminiAdapter.buildRequest(
          { model: 'gemini-2.5-pro', messages: [{ role: 'user', content: 'hi' }], reasoning_effort },
          { model: 'gemini-2.5-pro', stream: false, config, apiKey: 'k' },
        ).body ?? '{}',
      ).generationConfig.thinkingConfig;
    expect(pro('none')).toEqual({ thinkingBudget: 128, includeThoughts: true });
    expect(pro('minimal')).toEqual({ thinkingBudget: 128, includeThoughts: true });
    expect(pro('max')).toEqual({ thinkingBudget: 32768, includeThoughts: true });
  });
});

describe('gemini thinking budget from the Messages door', () => {
  it("is the caller's own budget, within 2.5 Flash's largest", () => {
    const config = (thinking_budget: number) =>
      build({ reasoning_effort: 'medium', thinking_budget }).json.generationConfig.thinkingConfig;
    expect(config(1025)).toEqual({ thinkingBudget: 1025, includeThoughts: true });
    expect(config(50_000)).toEqual({ thinkingBudget: 24576, includeThoughts: true });
  });
});

describe('gemini responses', () => {
  it('a blocked prompt (200, no candidates) is content_filter', () => {
    const r = geminiAdapter.parseResponse(JSON.parse(fixture('gemini', 'response-blocked.json')));
    expect(r).toMatchObject({
      finishReason: 'content_filter',
      toolCalls: [],
      usage: { inputTokens: 12, outputTokens: 0 },
    });
  });

  it('safety finish reasons map to content_filter, MAX_TOKENS to length', () => {
    const body = (finishReason: string) => ({
      candidates: [{ content: { parts: [{ text: 'x' }] }, finishReason }],
    });
    expect(geminiAdapter.parseResponse(body('SAFETY')).finishReason).toBe('content_filter');
    expect(geminiAdapter.parseResponse(body('PROHIBITED_CONTENT')).finishReason).toBe('content_filter');
    expect(geminiAdapter.parseResponse(body('MAX_TOKENS')).finishReason).toBe('length');
  });

  it('a blocked prompt in a stream finishes with content_filter and ends successfully', () => {
    const p = geminiAdapter.createStreamParser({ model: 'gemini-2.5-flash' });
    const events = [
      ...p.push(`data: ${fixture('gemini', 'response-blocked.json').replace(/\n/g, ' ')}\n\n`),
      ...p.finish(),
    ];
    expect(events.filter((e) => e.type === 'finish')).toEqual([{ type: 'finish', reason: 'content_filter' }]);
    expect(events.at(-1)).toEqual({ type: 'end' });
  });

  it('readRateLimits takes RetryInfo from a 429 body', () => {
    expect(geminiAdapter.readRateLimits(new Headers(), fixture('gemini', 'error-429.json'))).toEqual({
      retryAfterMs: 27_000,
    });
  });
});
