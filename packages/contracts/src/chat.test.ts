import { describe, expect, it } from 'vitest';
import { ChatJobRequest, ChatRequest } from './chat.ts';

const base = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] };

describe('logit_bias (OpenAI: token ids, as decimal integer strings, to a bias from -100 to 100)', () => {
  const issues = (logit_bias: unknown) =>
    ChatRequest.safeParse({ ...base, logit_bias }).error?.issues.map((i) => [i.path.join('.'), i.message]);

  it('takes token ids with a bias from -100 to 100 (or null), as OpenAI does', () => {
    const logit_bias = { '50256': -100, '0': 100, '7': 2 };
    expect(ChatRequest.parse({ ...base, logit_bias }).logit_bias).toEqual(logit_bias);
    expect(ChatRequest.parse({ ...base, logit_bias: null }).logit_bias).toBeNull();
    // The carried form holds it to the same rule.
    expect(ChatJobRequest.safeParse({ ...base, logit_bias: { x: 1 } }).success).toBe(false);
  });

  it('refuses a key that is not a token id, prototype-named ones included, naming the key', () => {
    const key = 'expected a token id (a decimal integer below 10,000,000) as the key';
    for (const k of [
      'constructor',
      'toString',
      'hasOwnProperty',
      'valueOf',
      '-1',
      '1.5',
      ' 1',
      'a1',
      '',
      '99999999999999999999',
    ])
      expect(issues({ [k]: 1 }), k).toEqual([[`logit_bias.${k}`, key]]);
  });

  it('refuses a bias outside -100..100 or not a number, naming the key', () => {
    const range = 'expected a bias from -100 to 100';
    expect(issues({ '1': 200 })).toEqual([['logit_bias.1', range]]);
    expect(issues({ '1': -100.5 })).toEqual([['logit_bias.1', range]]);
    // A bias is an integer, as OpenAI's reference types it.
    expect(issues({ '5': 1.5 })).toEqual([['logit_bias.5', range]]);
    expect(issues({ '1': '5' })?.[0]?.[0]).toBe('logit_bias.1');
    // The probe's body: both wrongs reported.
    expect(
      issues({ constructor: 2, '1': 200 })
        ?.map((i) => i[0])
        .sort(),
    ).toEqual(['logit_bias.1', 'logit_bias.constructor']);
    expect(issues([1, 2])?.[0]?.[0]).toBe('logit_bias');
  });
});

describe('null for an optional field', () => {
  const nulls = {
    tools: null,
    tool_choice: null,
    parallel_tool_calls: null,
    response_format: null,
    user: null,
    safety_identifier: null,
    audio: null,
    web_search_options: null,
  };

  it('is taken as not given, on the door and in the carried form (nothing downstream sees a null)', () => {
    for (const schema of [ChatRequest, ChatJobRequest]) {
      const r = schema.parse({ ...base, ...nulls }) as Record<string, unknown>;
      for (const k of Object.keys(nulls)) expect(r[k], k).toBeUndefined();
      // JSON (a job, a provider request) carries none of them.
      expect(Object.keys(JSON.parse(JSON.stringify(r))).sort()).toEqual(['messages', 'model']);
    }
    const legacy = ChatRequest.parse({ ...base, ...nulls, functions: null, function_call: null });
    expect(legacy.tools).toBeUndefined();
    expect(legacy.tool_choice).toBeUndefined();
    expect(legacy.legacy_functions).toBeUndefined();
    // No key is left behind: the carried form re-reads the parsed request strictly (an idempotent
    // retry's), and knows no `functions` key.
    expect(Object.keys(legacy).sort()).toEqual(['messages', 'model']);
    expect(ChatJobRequest.safeParse(legacy).success).toBe(true);
  });

  it('inside messages, parts, tools and formats too (what a Python SDK model dump sends)', () => {
    const r = ChatRequest.parse({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: null, include_obfuscation: null },
      messages: [
        { role: 'system', content: 'be brief', name: null },
        {
          role: 'user',
          name: null,
          content: [
            { type: 'text', text: 'look', cache_control: null },
            { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: null } },
            {
              type: 'file',
              file: { file_data: 'data:application/pdf;base64,JVBERi0=', file_id: null, filename: null },
            },
          ],
        },
      ],
      tools: [
        {
          type: 'function',
          function: { name: 'f', description: null, parameters: null },
        },
      ],
      response_format: { type: 'json_schema', json_schema: { name: 's', description: null, schema: null } },
    });
    // Nothing null reaches an adapter: a provider request is the JSON of the parsed request.
    expect(JSON.stringify(r)).not.toContain('null');
    expect(ChatJobRequest.safeParse(JSON.parse(JSON.stringify(r))).success).toBe(true);
  });

  it('keeps a value given, and refuses a wrong one naming the field', () => {
    const r = ChatRequest.parse({ ...base, tool_choice: 'none', user: 'u1', parallel_tool_calls: false });
    expect([r.tool_choice, r.user, r.parallel_tool_calls]).toEqual(['none', 'u1', false]);
    const bad = ChatRequest.safeParse({ ...base, user: 5, tools: 'x' });
    expect(bad.error?.issues.map((i) => i.path.join('.')).sort()).toEqual(['tools', 'user']);
  });
});

describe('a tool message', () => {
  it("takes the tool's name, as LangChain sends it on every tool result (null is not given)", () => {
    const messages = (name: unknown) => [
      { role: 'user', content: 'x' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'w', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'ok', name },
    ];
    expect(ChatRequest.parse({ ...base, messages: messages('w') }).messages[2]).toMatchObject({ name: 'w' });
    const none = ChatRequest.parse({ ...base, messages: messages(null) }).messages[2];
    expect(JSON.parse(JSON.stringify(none))).not.toHaveProperty('name');
  });
});

describe("OpenAI's audio output and web search", () => {
  it('are refused by name when given (null is not given)', () => {
    for (const [k, v] of [
      ['audio', { voice: 'alloy', format: 'mp3' }],
      ['web_search_options', {}],
    ] as const) {
      const r = ChatRequest.safeParse({ ...base, [k]: v });
      expect(r.success, k).toBe(false);
      expect(r.error?.issues[0]?.path, k).toEqual([k]);
      expect(r.error?.issues[0]?.message, k).toMatch(/not served through this gateway/);
    }
  });
});

describe('reasoning_effort', () => {
  it("takes every value OpenAI's SDK sends, on the door and in the carried form", () => {
    for (const effort of ['none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max'])
      for (const schema of [ChatRequest, ChatJobRequest])
        expect(schema.parse({ ...base, reasoning_effort: effort }).reasoning_effort).toBe(effort);
  });

  it('refuses another value, naming the field', () => {
    const r = ChatRequest.safeParse({ ...base, reasoning_effort: 'extreme' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['reasoning_effort']);
  });
});
