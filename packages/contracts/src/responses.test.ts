import { describe, expect, it } from 'vitest';
import { ChatRequest } from './chat.ts';
import { ResponsesRequest } from './responses.ts';

const issues = (body: unknown) =>
  ResponsesRequest.safeParse(body).error?.issues.map((i) => [i.path.join('.'), i.code, i.message]);

/**
 * An earlier answer's output items as the `openai` Python SDK dumps them
 * (`item.model_dump(by_alias=True)`, its unset optional fields as null), with the output of the call.
 */
const dumped = [
  { role: 'user', content: 'Weather in Paris?' },
  {
    id: 'rs_1',
    type: 'reasoning',
    summary: [],
    content: null,
    encrypted_content: null,
    status: null,
  },
  {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    status: 'completed',
    phase: null,
    content: [{ type: 'output_text', text: 'Let me look.', annotations: [], logprobs: null }],
  },
  {
    id: 'fc_1',
    type: 'function_call',
    call_id: 'call_1',
    name: 'get_weather',
    arguments: '{"city":"Paris"}',
    status: 'completed',
    async: null,
    caller: null,
    namespace: null,
  },
  {
    id: null,
    type: 'function_call_output',
    call_id: 'call_1',
    output: 'Rain.',
    status: null,
    caller: null,
    name: null,
    namespace: null,
  },
];

describe("output items sent back as input, with the fields OpenAI's API takes on them", () => {
  it('takes the items as the Python SDK dumps them (null for what it leaves unset)', () => {
    expect(issues({ model: 'm', input: dumped })).toBeUndefined();
  });

  it("takes the values of phase, caller and async the SDK's param types give", () => {
    const input = [
      { role: 'user', content: 'x' },
      { type: 'message', role: 'assistant', content: 'Thinking aloud.', phase: 'commentary' },
      { type: 'message', role: 'assistant', content: 'Done.', phase: 'final_answer' },
      { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}', caller: { type: 'direct' } },
      { type: 'function_call', call_id: 'c2', name: 'f', arguments: '{}', async: true },
      {
        type: 'function_call_output',
        call_id: 'c1',
        output: 'ok',
        caller: { type: 'program', caller_id: 'prog_1' },
        name: 'f',
        namespace: 'tools',
      },
      { type: 'function_call_output', call_id: 'c2', output: 'ok', id: 'fco_1', status: 'completed' },
    ];
    expect(issues({ model: 'm', input })).toBeUndefined();
  });

  it('still refuses unknown fields and values outside the types, at their path', () => {
    const at = (item: unknown) => issues({ model: 'm', input: [{ role: 'user', content: 'x' }, item] })?.[0];
    const call = { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' };
    expect(at({ role: 'assistant', content: 'a', phase: 'draft' })?.[0]).toBe('input.1.phase');
    expect(at({ role: 'assistant', content: 'a', stage: 'final_answer' })).toEqual([
      'input.1',
      'unrecognized_keys',
      expect.stringContaining('"stage"'),
    ]);
    expect(at({ ...call, caller: { type: 'robot' } })?.[0]).toBe('input.1.caller.type');
    expect(at({ ...call, caller: { type: 'program' } })?.[0]).toBe('input.1.caller.caller_id');
    expect(at({ ...call, async: 'yes' })?.[0]).toBe('input.1.async');
    // Fields of the SDK's item models that no input type has (`created_by`), and the Python name `async_`.
    expect(at({ ...call, created_by: 'user_1' })?.[1]).toBe('unrecognized_keys');
    expect(at({ ...call, async_: null })?.[1]).toBe('unrecognized_keys');
    expect(at({ type: 'function_call_output', call_id: 'c1', output: 'x', phase: null })?.[1]).toBe(
      'unrecognized_keys',
    );
  });
});

describe("names a model sees: one rule (OpenAI's, ^[a-zA-Z0-9_-]+$, at most 64) on both doors", () => {
  const rule = "must match '^[a-zA-Z0-9_-]+$' (letters, digits, '_' and '-')";

  it("a function tool's name, at tools.N.name", () => {
    const tool = (name: string) => ({ type: 'function', name, parameters: { type: 'object' } });
    const body = (...names: string[]) => ({ model: 'claude-haiku-4-5', input: 'x', tools: names.map(tool) });
    expect(issues(body('get_weather', 'a-1'))).toBeUndefined();
    expect(issues(body('ok', 'bad name!'))).toEqual([['tools.1.name', 'invalid_format', rule]]);
    expect(issues(body('x'.repeat(65)))?.[0]?.[0]).toBe('tools.0.name');
    expect(issues(body(''))?.[0]?.[0]).toBe('tools.0.name');
  });

  it("a JSON schema's name, at text.format.name (Responses) and response_format.json_schema.name (chat)", () => {
    const schema = { type: 'object' };
    const responses = (name: string) => ({
      model: 'm',
      input: 'x',
      text: { format: { type: 'json_schema', name, schema } },
    });
    expect(issues(responses('weather_report'))).toBeUndefined();
    expect(issues(responses('weather report'))).toEqual([['text.format.name', 'invalid_format', rule]]);
    expect(issues(responses('x'.repeat(65)))?.[0]?.[0]).toBe('text.format.name');

    const chat = (name: string) =>
      ChatRequest.safeParse({
        model: 'm',
        messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'json_schema', json_schema: { name, schema } },
      }).error?.issues.map((i) => [i.path.join('.'), i.message]);
    expect(chat('weather_report')).toBeUndefined();
    expect(chat('weather report')).toEqual([['response_format.json_schema.name', rule]]);
    expect(chat('x'.repeat(65))?.[0]?.[0]).toBe('response_format.json_schema.name');
    expect(chat('')?.[0]?.[0]).toBe('response_format.json_schema.name');
  });
});

describe('null for an optional top-level field is the field absent', () => {
  it('takes null for every field but model and input', () => {
    const optional = Object.keys(ResponsesRequest.shape).filter((k) => k !== 'model' && k !== 'input');
    expect(optional).toEqual(
      expect.arrayContaining(['user', 'safety_identifier', 'tool_choice', 'text', 'tools']),
    );
    for (const k of optional)
      expect([k, issues({ model: 'm', input: 'x', [k]: null })]).toEqual([k, undefined]);
  });

  it("takes null inside text and reasoning too (text.format: null is OpenAI's plain text)", () => {
    for (const [k, v] of [
      ['text', { format: null, verbosity: null }],
      ['reasoning', { effort: null, summary: null }],
    ] as const)
      expect([k, issues({ model: 'm', input: 'x', [k]: v })]).toEqual([k, undefined]);
  });
});
