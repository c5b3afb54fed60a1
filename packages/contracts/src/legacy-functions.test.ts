import { describe, expect, it } from 'vitest';
import {
  ChatCompletion,
  ChatJobRequest,
  ChatRequest,
  type Completion,
  toChatCompletion,
  zeroUsage,
} from './chat.ts';
import { JobData } from './jobs.ts';
import { inLegacyTerms } from './legacy-functions.ts';

const weather = {
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};
const user = (content: string) => ({ role: 'user' as const, content });

/** The first issue of a refused request: its path and message. */
function refusal(body: unknown) {
  const r = ChatRequest.safeParse(body);
  expect(r.success).toBe(false);
  const issue = r.error?.issues[0];
  return { path: issue?.path.join('.'), message: issue?.message ?? '' };
}

describe('legacy functions in a request', () => {
  it('become tools, the tool choice, one call at most, and the legacy mark', () => {
    const r = ChatRequest.parse({
      model: 'gpt-4o-mini',
      messages: [user('weather in Oslo?')],
      functions: [weather],
      function_call: { name: 'get_weather' },
    });
    expect(r).toEqual({
      model: 'gpt-4o-mini',
      messages: [user('weather in Oslo?')],
      tools: [{ type: 'function', function: weather }],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      legacy_functions: true,
    });
    for (const choice of ['none', 'auto'] as const) {
      const c = ChatRequest.parse({
        model: 'm',
        messages: [user('x')],
        functions: [weather],
        function_call: choice,
      });
      expect(c.tool_choice).toBe(choice);
    }
    const none = ChatRequest.parse({ model: 'm', messages: [user('x')], functions: [weather] });
    expect(none.tool_choice).toBeUndefined();
    expect(none.legacy_functions).toBe(true);
  });

  it('a request without legacy parts is the parsed request itself, unmarked', () => {
    const body = { model: 'm', messages: [user('x')], tools: [{ type: 'function', function: weather }] };
    const r = ChatRequest.parse(body);
    expect(r).toEqual(body);
    expect('legacy_functions' in r).toBe(false);
  });

  it('a history of function calls becomes tool calls answered by tool messages, with stable ids', () => {
    const body = {
      model: 'm',
      functions: [weather, { name: 'get_time' }],
      messages: [
        user('weather and time in Oslo?'),
        {
          role: 'assistant',
          content: null,
          function_call: { name: 'get_weather', arguments: '{"city":"Oslo"}' },
        },
        { role: 'function', name: 'get_weather', content: '4°C, rain' },
        { role: 'assistant', content: 'Now the time.', function_call: { name: 'get_time', arguments: '{}' } },
        { role: 'function', name: 'get_time', content: null },
        user('thanks'),
      ],
    };
    const r = ChatRequest.parse(body);
    expect(r.messages).toEqual([
      user('weather and time in Oslo?'),
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_function_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Oslo"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_function_1', content: '4°C, rain' },
      {
        role: 'assistant',
        content: 'Now the time.',
        tool_calls: [
          { id: 'call_function_3', type: 'function', function: { name: 'get_time', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_function_3', content: '' },
      user('thanks'),
    ]);
    // The same history, the same ids (a provider's prompt cache sees the same prompt).
    expect(ChatRequest.parse(body)).toEqual(r);
    // What the gateway carries reads back as itself (a job's request is parsed again on some paths).
    expect(ChatJobRequest.parse(r)).toEqual(r);
  });

  it('a function message answers the latest unanswered call of its name', () => {
    const r = ChatRequest.parse({
      model: 'm',
      tools: [{ type: 'function', function: weather }],
      messages: [
        user('x'),
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
          ],
          function_call: { name: 'get_weather', arguments: '{"city":"Rome"}' },
        },
        { role: 'tool', tool_call_id: 'call_a', content: 'sunny' },
        { role: 'function', name: 'get_weather', content: 'cloudy' },
      ],
    });
    // History alone (the request uses tools): translated, the answer not in the legacy shape.
    expect(r.legacy_functions).toBeUndefined();
    expect(r.messages[1]).toMatchObject({
      tool_calls: [{ id: 'call_a' }, { id: 'call_function_1', function: { arguments: '{"city":"Rome"}' } }],
    });
    expect(r.messages[3]).toEqual({ role: 'tool', tool_call_id: 'call_function_1', content: 'cloudy' });
  });

  it('a function message with no call to answer is refused, naming it', () => {
    expect(
      refusal({
        model: 'm',
        functions: [weather],
        messages: [user('x'), { role: 'function', name: 'get_weather', content: 'rain' }],
      }),
    ).toMatchObject({ path: 'messages.1', message: expect.stringContaining("'get_weather'") });
    // A call of another name does not count.
    expect(
      refusal({
        model: 'm',
        functions: [weather],
        messages: [
          user('x'),
          { role: 'assistant', function_call: { name: 'get_time', arguments: '{}' } },
          { role: 'function', name: 'get_weather', content: 'rain' },
        ],
      }).path,
    ).toBe('messages.2');
    // Each call is answered once.
    expect(
      refusal({
        model: 'm',
        messages: [
          user('x'),
          { role: 'assistant', function_call: { name: 'get_weather', arguments: '{}' } },
          { role: 'function', name: 'get_weather', content: 'rain' },
          { role: 'function', name: 'get_weather', content: 'rain again' },
        ],
      }).path,
    ).toBe('messages.3');
  });

  it('a function call not answered before the conversation goes on is refused, naming it', () => {
    const r = refusal({
      model: 'm',
      messages: [
        user('x'),
        { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '{}' } },
        user('y'),
        { role: 'function', name: 'get_weather', content: 'late' },
      ],
    });
    expect(r).toMatchObject({
      path: 'messages.1.function_call',
      message: expect.stringContaining('followed by'),
    });
  });

  it('refuses what OpenAI refuses alongside functions', () => {
    const base = { model: 'm', messages: [user('x')], functions: [weather] };
    const tools = [{ type: 'function', function: weather }];
    expect(refusal({ ...base, tools })).toEqual({
      path: 'functions',
      message: expect.stringContaining("'functions' and 'tools' cannot both be provided"),
    });
    expect(refusal({ model: 'm', messages: [user('x')], tools, function_call: 'auto' }).path).toBe(
      'function_call',
    );
    expect(refusal({ ...base, function_call: { name: 'nope' } }).path).toBe('function_call');
    expect(refusal({ ...base, tool_choice: 'auto' }).path).toBe('tool_choice');
    expect(refusal({ ...base, parallel_tool_calls: true }).path).toBe('parallel_tool_calls');
    expect(refusal({ ...base, functions: [] }).path).toBe('functions');
    expect(refusal({ ...base, functions: [{ name: 'bad name' }] }).path).toBe('functions.0.name');
    expect(refusal({ ...base, functions: [{ ...weather, strict: true }] }).path).toBe('functions.0');
    expect(
      refusal({
        ...base,
        messages: [
          user('x'),
          {
            role: 'assistant',
            tool_calls: [{ id: 'c', type: 'function', function: { name: 'get_weather', arguments: '{}' } }],
          },
          { role: 'tool', tool_call_id: 'c', content: 'rain' },
        ],
      }),
    ).toEqual({
      path: 'messages.1.tool_calls',
      message: expect.stringContaining("'tool_calls' cannot be used"),
    });
  });

  it('legacy_functions is the gateway’s mark, never a caller’s', () => {
    expect(refusal({ model: 'm', messages: [user('x')], legacy_functions: true }).path).toBe('');
  });

  it('a job carrying a legacy request reads back', () => {
    const request = ChatRequest.parse({ model: 'm', messages: [user('x')], functions: [weather] });
    const job = {
      v: 1,
      id: 'req_1',
      account: 'a',
      key: 'k',
      requestedModel: 'm',
      plan: [{ provider: 'openai', model: 'm' }],
      hop: 0,
      deltas: false,
      created: 0,
      deadline: 1,
      attempts: [],
      request,
    };
    expect(JobData.parse(job)).toEqual(job);
  });
});

describe('the answer to a legacy request', () => {
  const completion = (toolCalls: Completion['toolCalls'], more?: Completion['moreChoices']): Completion => ({
    content: null,
    toolCalls,
    finishReason: toolCalls.length > 0 ? 'tool_calls' : 'stop',
    model: 'gpt-4o-mini',
    usage: zeroUsage(),
    ...(more ? { moreChoices: more } : {}),
  });
  const call = (id: string, args: string) => ({
    id,
    type: 'function' as const,
    function: { name: 'get_weather', arguments: args },
  });

  it('carries the first call as function_call, no tool_calls, finish_reason function_call', () => {
    const c = completion(
      [call('c1', '{"city":"Oslo"}'), call('c2', '{"city":"Rome"}')],
      [{ content: 'No call.', toolCalls: [], finishReason: 'stop' }],
    );
    const r = toChatCompletion('req_1', { provider: 'openai', model: 'gpt-4o-mini' }, 1, c, 0n, true);
    expect(ChatCompletion.parse(r)).toEqual(r);
    const [first, second] = r.choices;
    expect(first?.message).not.toHaveProperty('tool_calls');
    expect(first?.message.function_call).toEqual({ name: 'get_weather', arguments: '{"city":"Oslo"}' });
    expect(first?.finish_reason).toBe('function_call');
    expect(second?.message).toMatchObject({ content: 'No call.' });
    expect(second?.message).not.toHaveProperty('function_call');
    expect(second?.finish_reason).toBe('stop');
    // Without the mark: tool calls, as ever.
    const plain = toChatCompletion('req_1', { provider: 'openai', model: 'gpt-4o-mini' }, 1, c, 0n);
    expect(plain.choices[0]?.message.tool_calls).toHaveLength(2);
    expect(plain.choices[0]?.message).not.toHaveProperty('function_call');
    expect(plain.choices[0]?.finish_reason).toBe('tool_calls');
  });
});

describe('a refusal of a legacy request', () => {
  const forced = {
    param: 'tool_choice',
    message:
      "'tool_choice' is not supported by llama: it cannot force a tool call (send 'auto' or 'none', or choose another model).",
  };
  it('names function_call, what the caller sent, where the translated request was refused for its tool_choice', () => {
    expect(inLegacyTerms(true, forced)).toEqual({
      param: 'function_call',
      message:
        "'function_call' is not supported by llama: it cannot force a function call (send 'auto' or 'none', or choose another model).",
    });
  });
  it('leaves other refusals, and every refusal of a request that did not use functions, as they are', () => {
    expect(inLegacyTerms(false, forced)).toBe(forced);
    const seed = { param: 'seed', message: "'seed' is not supported by groq." };
    expect(inLegacyTerms(true, seed)).toBe(seed);
    expect(inLegacyTerms(true, undefined)).toBeUndefined();
  });
});
