import { describe, expect, it } from 'vitest';
import { toChatCompletion, zeroUsage } from '@faregate/contracts/chat';
import type { Frame } from '@faregate/contracts/frames';
import { ResponsesRequest } from '@faregate/contracts/responses';
import { GatewayError } from '@faregate/contracts/errors';
import { fromZod } from '../plugins/errors.ts';
import { RESPONSES_PARAMS, toChatRequest } from './responses.ts';
import { type DoorNames, inDoorTerms } from './shared.ts';
import { toResponse } from './responses-output.ts';
import { ResponsesStreamWriter } from './responses-stream.ts';

const parse = (b: unknown) => ResponsesRequest.parse(b);

describe('Responses request → chat request', () => {
  it('maps a string input and instructions', () => {
    expect(toChatRequest(parse({ model: 'm', input: 'hi', instructions: 'Be brief.' }))).toEqual({
      model: 'm',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
      ],
    });
  });

  it('puts sealed thinking of reasoning items on the assistant turn that follows, in order', () => {
    const a = { type: 'thinking' as const, thinking: 'Hmm.', signature: 'sig-a' };
    const b = { type: 'redacted_thinking' as const, data: 'opaque' };
    const sealed = (blocks: unknown[]) =>
      `fg-thinking-1.${Buffer.from(JSON.stringify(blocks)).toString('base64url')}`;
    const chat = toChatRequest(
      parse({
        model: 'm',
        input: [
          { role: 'user', content: 'Q1' },
          { type: 'reasoning', summary: [], encrypted_content: sealed([b]) },
          { type: 'reasoning', summary: [], encrypted_content: sealed([a]) },
          { role: 'assistant', content: 'A1' },
          { type: 'function_call', call_id: 'c1', name: 'w', arguments: '{}' },
          { type: 'function_call_output', call_id: 'c1', output: 'rain' },
          // Read-only reasoning (no sealed thinking) and thinking nothing followed: no turn.
          { type: 'reasoning', summary: [{ type: 'summary_text', text: 'why' }] },
          { role: 'user', content: 'Q2' },
          { type: 'reasoning', summary: [], encrypted_content: sealed([a]) },
        ],
      }),
    );
    expect(chat.messages).toEqual([
      { role: 'user', content: 'Q1' },
      {
        role: 'assistant',
        content: 'A1',
        thinking_blocks: [b, a],
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'w', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'rain' },
      { role: 'user', content: 'Q2' },
    ]);
    const bad = {
      model: 'm',
      input: [{ type: 'reasoning', summary: [], encrypted_content: 'fg-thinking-1.e30' }],
    };
    expect(() => toChatRequest(parse(bad))).toThrow(/input\.0\.encrypted_content is damaged/);
  });

  it('maps items: messages with text and images, function calls and their outputs', () => {
    const chat = toChatRequest(
      parse({
        model: 'm',
        stream: true,
        input: [
          {
            role: 'user',
            content: [
              { type: 'input_text', text: 'Weather?' },
              { type: 'input_image', image_url: 'https://x.test/a.png', detail: 'low' },
            ],
          },
          { type: 'function_call', call_id: 'c1', name: 'w', arguments: '{}' },
          { type: 'function_call', call_id: 'c2', name: 'w', arguments: '{"a":1}' },
          { type: 'function_call_output', call_id: 'c1', output: 'rain' },
          { type: 'function_call_output', call_id: 'c2', output: 'sun' },
          { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'It rains.' }] },
        ],
        tools: [{ type: 'function', name: 'w', parameters: { type: 'object' }, strict: true }],
        tool_choice: { type: 'function', name: 'w' },
        text: { format: { type: 'json_schema', name: 'out', schema: { type: 'object' }, strict: true } },
        reasoning: { effort: 'low' },
        max_output_tokens: 50,
        temperature: 0.2,
        top_p: 0.5,
        metadata: { k: 'v' },
        store: false,
      }),
    );
    expect(chat).toEqual({
      model: 'm',
      stream: true,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather?' },
            { type: 'image_url', image_url: { url: 'https://x.test/a.png', detail: 'low' } },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'w', arguments: '{}' } },
            { id: 'c2', type: 'function', function: { name: 'w', arguments: '{"a":1}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'rain' },
        { role: 'tool', tool_call_id: 'c2', content: 'sun' },
        { role: 'assistant', content: 'It rains.' },
      ],
      tools: [{ type: 'function', function: { name: 'w', parameters: { type: 'object' }, strict: true } }],
      tool_choice: { type: 'function', function: { name: 'w' } },
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'out', schema: { type: 'object' }, strict: true },
      },
      reasoning_effort: 'low',
      max_completion_tokens: 50,
      temperature: 0.2,
      top_p: 0.5,
    });
    expect(
      toChatRequest(parse({ model: 'm', input: 'x', text: { format: { type: 'json_object' } } }))
        .response_format,
    ).toEqual({
      type: 'json_object',
    });
  });

  it('refuses the stateful parameters by name', () => {
    expect(() => toChatRequest(parse({ model: 'm', input: 'x', previous_response_id: 'resp_1' }))).toThrow(
      expect.objectContaining({ param: 'previous_response_id', code: 'invalid_request_error' }),
    );
    expect(() => toChatRequest(parse({ model: 'm', input: 'x', store: true }))).toThrow(
      expect.objectContaining({ param: 'store' }),
    );
    expect(() =>
      toChatRequest(
        parse({ model: 'm', input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'f' }] }] }),
      ),
    ).toThrow(expect.objectContaining({ param: 'input.0.content.0.file_id' }));
    expect(() =>
      toChatRequest(parse({ model: 'm', input: [{ role: 'user', content: [{ type: 'input_image' }] }] })),
    ).toThrow(expect.objectContaining({ param: 'input.0.content.0.image_url' }));
    expect(() => toChatRequest(parse({ model: 'm', input: 'x', conversation: 'c' }))).toThrow(
      expect.objectContaining({ param: 'conversation' }),
    );
    expect(
      ResponsesRequest.safeParse({ model: 'm', input: [{ type: 'item_reference', id: 'x' }] }).success,
    ).toBe(false);
  });
});

describe('malformed or unsupported input, refused at its path', () => {
  /** The 400 a body gets from the route's schema (its param and message), as the error handler says it. */
  const refusal = (input: unknown) => {
    const r = ResponsesRequest.safeParse({ model: 'gpt-4o-mini', input });
    if (r.success) throw new Error('parsed');
    const e = fromZod(r.error);
    return { param: e.param, message: e.message };
  };
  const user = (...content: unknown[]) => [{ role: 'user', content }];
  const text = { type: 'input_text', text: 'a' };

  it('an unknown content part type is named at its path, with the types taken', () => {
    const r = refusal(user(text, { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }));
    expect(r.param).toBe('input.0.content.1.type');
    expect(r.message).toMatch(
      /^Invalid value for 'input\.0\.content\.1\.type': A content part of type "input_audio" is not supported here; the types taken are 'input_text', 'input_image', 'input_file', 'output_text', 'refusal'\.$/,
    );
  });

  it('a part or item missing a field names the field', () => {
    expect(refusal(user(text, { type: 'input_text' })).param).toBe('input.0.content.1.text');
    const r = refusal([
      { role: 'user', content: 'x' },
      { type: 'function_call', call_id: 'c1', name: 'f' },
    ]);
    expect(r.param).toBe('input.1.arguments');
    expect(r.message).toContain('expected string, received undefined');
    // An unknown item type, and a function output's unknown part.
    expect(refusal([{ type: 'item_reference', id: 'x' }]).message).toContain(
      'An input item of type "item_reference" is not supported here',
    );
    expect(
      refusal([
        { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' },
        { type: 'function_call_output', call_id: 'c1', output: [{ type: 'zz' }] },
      ]).param,
    ).toBe('input.1.output.0.type');
    expect(refusal(42).message).toBe(
      "Invalid value for 'input': expected a string or an array of input items",
    );
  });

  it("input_file with file_data (a data: URL) or file_id becomes the chat request's file part", () => {
    const pdf = 'data:application/pdf;base64,JVBERi0xLjQKJSVFT0YK';
    const chat = toChatRequest(
      parse({
        model: 'gpt-4o-mini',
        input: user(
          text,
          { type: 'input_file', filename: 'a.pdf', file_data: pdf },
          { type: 'input_file', file_id: 'file_1' },
        ),
      }),
    );
    expect(chat.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'a' },
          { type: 'file', file: { file_data: pdf, filename: 'a.pdf' } },
          { type: 'file', file: { file_id: 'file_1' } },
        ],
      },
    ]);
    expect(() =>
      toChatRequest(parse({ model: 'm', input: user({ type: 'input_file', file_url: 'https://x/a.pdf' }) })),
    ).toThrow(expect.objectContaining({ param: 'input.0.content.0.file_url' }));
    expect(() =>
      toChatRequest(parse({ model: 'm', input: user({ type: 'input_file', filename: 'a.pdf' }) })),
    ).toThrow(expect.objectContaining({ param: 'input.0.content.0.file_data' }));
  });
});

const completion = (over: Partial<Parameters<typeof toChatCompletion>[3]> = {}) =>
  toChatCompletion(
    'req_1',
    { provider: 'gemini', model: 'gemini-2.5-flash' },
    1700000000,
    {
      model: 'gemini-2.5-flash',
      content: 'Hello.',
      toolCalls: [],
      finishReason: 'stop',
      usage: { ...zeroUsage(), inputTokens: 10, cachedInputTokens: 4, outputTokens: 5, reasoningTokens: 2 },
      ...over,
    },
    0n,
  );

describe('chat result → response', () => {
  it('answers a response object with output items and Responses usage', () => {
    const r = toResponse(parse({ model: 'gemini-2.5-flash', input: 'x' }), completion());
    expect(r).toMatchObject({
      id: 'req_1',
      object: 'response',
      created_at: 1700000000,
      status: 'completed',
      model: 'gemini/gemini-2.5-flash',
      output: [
        {
          id: 'msg_req_1',
          type: 'message',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'Hello.', annotations: [] }],
        },
      ],
      usage: {
        input_tokens: 10,
        input_tokens_details: { cached_tokens: 4, cache_write_tokens: 0 },
        output_tokens: 5,
        output_tokens_details: { reasoning_tokens: 2 },
        total_tokens: 15,
      },
    });
    const cut = toResponse(parse({ model: 'm', input: 'x' }), completion({ finishReason: 'length' }));
    expect(cut).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
  });

  it('turns tool calls into function_call items', () => {
    const r = toResponse(
      parse({ model: 'm', input: 'x' }),
      completion({
        content: null,
        finishReason: 'tool_calls',
        toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'w', arguments: '{"a":1}' } }],
      }),
    );
    expect(r.output).toEqual([
      {
        id: 'fc_req_1_0',
        type: 'function_call',
        status: 'completed',
        call_id: 'call_1',
        name: 'w',
        arguments: '{"a":1}',
      },
    ]);
  });
});

describe('frames → Responses events', () => {
  let seq = 0;
  const f = (x: Record<string, unknown>) => ({ v: 1, job: 'req_1', seq: ++seq, ...x }) as Frame;
  const events = (s: string) =>
    s
      .split('\n\n')
      .filter(Boolean)
      .map((b) => JSON.parse(/^data: (.*)$/m.exec(b)![1]!) as { type: string; sequence_number: number });

  it('completed_at is when the answer was complete (the done frame), so a replay tells the same time', () => {
    const req = parse({ model: 'm', input: 'x' });
    const at = 1700000123_456;
    expect(toResponse(req, completion(), at).completed_at).toBe(1700000123);
    const streamed = (w: ResponsesStreamWriter) =>
      events(w.frame(f({ type: 'done', result: completion(), at })))
        .map((e) => (e as { response?: { completed_at?: number } }).response?.completed_at)
        .filter((x) => x != null);
    expect(streamed(new ResponsesStreamWriter(req, 'req_1', 1700000000_000))).toEqual([1700000123]);
  });

  it('emits the Responses event types in order, numbered from 0, completed with usage', () => {
    const w = new ResponsesStreamWriter(parse({ model: 'm', input: 'x' }), 'req_1', 1700000000_000);
    let out = w.frame(f({ type: 'status', state: 'running', provider: 'gemini', model: 'gemini-2.5-flash' }));
    out += w.frame(f({ type: 'delta', text: 'Hel' }));
    out += w.frame(f({ type: 'delta', text: 'lo.' }));
    out += w.frame(
      f({
        type: 'delta',
        tool_calls: [{ index: 0, id: 'call_1', function: { name: 'w', arguments: '{"a"' } }],
      }),
    );
    out += w.frame(f({ type: 'delta', tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }));
    out += w.frame(
      f({
        type: 'done',
        result: completion({
          finishReason: 'tool_calls',
          toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'w', arguments: '{"a":1}' } }],
        }),
      }),
    );
    const evs = events(out);
    expect(evs.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(evs.map((e) => e.sequence_number)).toEqual(evs.map((_, i) => i));
    const done = evs.at(-1) as unknown as {
      response: { usage: { total_tokens: number }; output: unknown[]; model: string };
    };
    expect(done.response.usage.total_tokens).toBe(15);
    expect(done.response.output).toHaveLength(2);
    expect(done.response.model).toBe('gemini/gemini-2.5-flash');
  });

  it('an answer cut short: the message item is incomplete where it closes, as in the response', () => {
    const w = new ResponsesStreamWriter(parse({ model: 'm', input: 'x' }), 'req_1', 0);
    let out = w.frame(f({ type: 'delta', text: 'Hel' }));
    out += w.frame(f({ type: 'done', result: completion({ finishReason: 'length' }) }));
    const evs = events(out) as unknown as {
      type: string;
      item?: { status: string };
      response?: { output: unknown[] };
    }[];
    const closed = evs.find((e) => e.type === 'response.output_item.done');
    const last = evs.at(-1);
    expect(last?.type).toBe('response.incomplete');
    expect(closed?.item?.status).toBe('incomplete');
    expect(last?.response?.output[0]).toMatchObject({ type: 'message', status: 'incomplete' });
  });

  it('ends a failed stream with an error event the SDK raises', () => {
    const w = new ResponsesStreamWriter(parse({ model: 'm', input: 'x' }), 'req_1', 0);
    const out = w.frame(
      f({
        type: 'error',
        status: 502,
        error: { code: 'upstream_error', message: 'boom', retryable: false, param: null },
      }),
    );
    expect(out.startsWith('event: error\n')).toBe(true);
    expect(events(out)[0]).toMatchObject({
      type: 'error',
      code: 'upstream_error',
      message: 'boom',
      sequence_number: 0,
    });
  });
});

describe("the pipeline's refusals in the Responses API's terms", () => {
  /** The chat request and the names the door records for it. */
  const named = (body: unknown) => {
    const names: DoorNames = { ...RESPONSES_PARAMS };
    const chat = toChatRequest(parse(body), names);
    return { chat, names };
  };
  const refused = (param: string | null, message: string) =>
    new GatewayError({ code: 'invalid_request_error', message, param });
  const call = (call_id: string) => ({ type: 'function_call', call_id, name: 'f', arguments: '{}' });

  it('an unanswered function_call is named as its input item, in the words of the Responses API', () => {
    const { chat, names } = named({
      model: 'm',
      instructions: 'Be brief.',
      input: [
        { role: 'user', content: 'x' },
        call('c0'),
        call('c1'),
        { type: 'function_call_output', call_id: 'c0', output: 'ok' },
        { role: 'user', content: 'y' },
      ],
    });
    // The router's refusal of chat's assistant turn (messages.2: after the system prompt and the user).
    expect(chat.messages[2]).toMatchObject({ role: 'assistant', tool_calls: [{ id: 'c0' }, { id: 'c1' }] });
    const e = inDoorTerms(
      refused(
        'messages.2.tool_calls',
        "An assistant message with 'tool_calls' must be followed by tool messages …: c1",
      ),
      names,
    ) as GatewayError;
    expect(e.param).toBe('input.2');
    expect(e.message).toBe(
      "No tool output found for function call c1: a 'function_call' item must be followed by a 'function_call_output' item with its call_id.",
    );
    expect(e.message).not.toContain('tool_calls');
  });

  it('a function_call_output answering no function_call is named as its item, role or call_id alike', () => {
    const { names } = named({
      model: 'm',
      input: [
        { role: 'user', content: 'x' },
        { type: 'function_call_output', call_id: 'c9', output: 'ok' },
      ],
    });
    for (const param of ['messages.1.role', 'messages.1.tool_call_id']) {
      const e = inDoorTerms(
        refused(param, "messages with role 'tool' must be a response …"),
        names,
      ) as GatewayError;
      expect(e.param).toBe('input.1');
      expect(e.message).toContain("'function_call_output' item with call_id 'c9'");
      expect(e.message).toContain("'function_call' item");
    }
  });

  it('a second function_call_output for one call_id is named as its item, in its own words', () => {
    const { names } = named({
      model: 'm',
      input: [
        { role: 'user', content: 'x' },
        call('c1'),
        { type: 'function_call_output', call_id: 'c1', output: 'ok' },
        { type: 'function_call_output', call_id: 'c1', output: 'again' },
      ],
    });
    const e = inDoorTerms(
      refused('messages.3.tool_call_id', "'c1' is answered twice"),
      names,
    ) as GatewayError;
    expect(e.param).toBe('input.3');
    expect(e.message).toBe(
      "More than one 'function_call_output' item answers the call_id 'c1': a function call takes a single output.",
    );
  });

  it("a content part refused by a target is named at the caller's path (input.N.content.M, input.N.output.M)", () => {
    const image = { type: 'input_image', image_url: 'https://x/y.png' };
    const { names } = named({
      model: 'm',
      instructions: 'sys',
      input: [
        { role: 'user', content: [{ type: 'input_text', text: 'see' }, image] },
        call('c1'),
        { type: 'function_call_output', call_id: 'c1', output: [{ type: 'input_text', text: 'a' }, image] },
      ],
    });
    const e = inDoorTerms(
      refused('messages.1.content.1', "'messages.1.content.1' is not supported by x: it cannot."),
      names,
    ) as GatewayError;
    expect(e).toMatchObject({
      param: 'input.0.content.1',
      message: "'input.0.content.1' is not supported by x: it cannot.",
    });
    expect((inDoorTerms(refused('messages.3.content.1', ''), names) as GatewayError).param).toBe(
      'input.2.output.1',
    );
  });

  it("a function_call's arguments a target refuses are named at the item (input.N.arguments)", () => {
    const { names } = named({
      model: 'm',
      input: [
        { role: 'user', content: 'x' },
        call('c0'),
        call('c1'),
        { type: 'function_call_output', call_id: 'c0', output: 'ok' },
        { type: 'function_call_output', call_id: 'c1', output: 'ok' },
      ],
    });
    const at = 'messages.1.tool_calls.1.function.arguments';
    const e = inDoorTerms(
      refused(at, `'${at}' is not supported by x: it takes a JSON object.`),
      names,
    ) as GatewayError;
    expect(e).toMatchObject({
      param: 'input.2.arguments',
      message: "'input.2.arguments' is not supported by x: it takes a JSON object.",
    });
  });

  it("the 402's advice names max_output_tokens, not chat's max_tokens", () => {
    const quota = new GatewayError({
      code: 'insufficient_quota',
      message:
        "Your balance does not cover the maximum cost of this request: without 'max_tokens' it is the model's whole output limit. Add credit or set 'max_tokens'.",
    });
    const e = inDoorTerms(quota, RESPONSES_PARAMS) as GatewayError;
    expect(e.status).toBe(402);
    expect(e.param).toBeNull();
    expect(e.message).toContain("set 'max_output_tokens'");
    expect(e.message).not.toContain('max_tokens');
    const lower = new GatewayError({
      code: 'insufficient_quota',
      message: "Add credit or lower 'max_completion_tokens'.",
    });
    expect((inDoorTerms(lower, RESPONSES_PARAMS) as GatewayError).message).toBe(
      "Add credit or lower 'max_output_tokens'.",
    );
  });
});

describe('what the openai Python SDK sends', () => {
  it('output items as it dumps them (null for what it leaves unset, phase, caller, async) translate as the bare items do', () => {
    const bare = [
      { role: 'user', content: 'Weather in Paris?' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Let me look.' }] },
      { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'Rain.' },
    ];
    const dumped = [
      bare[0],
      {
        ...bare[1],
        id: 'msg_1',
        status: 'completed',
        phase: 'final_answer',
        content: [{ type: 'output_text', text: 'Let me look.', annotations: [], logprobs: null }],
      },
      { ...bare[2], id: 'fc_1', status: 'completed', async: null, caller: null, namespace: null },
      { ...bare[3], id: null, status: null, caller: null, name: null, namespace: null },
    ];
    const chat = toChatRequest(parse({ model: 'm', input: dumped }));
    expect(chat).toEqual(toChatRequest(parse({ model: 'm', input: bare })));
    expect(chat.messages).toEqual([
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: 'Let me look.',
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'Rain.' },
    ]);
  });

  it('null for optional fields (user, safety_identifier, tool_choice, text, tools) is the field absent, asked and answered', () => {
    const nulls = { user: null, safety_identifier: null, tool_choice: null, text: null, tools: null };
    const req = parse({ model: 'm', input: 'x', ...nulls });
    const bare = parse({ model: 'm', input: 'x' });
    expect(toChatRequest(req)).toEqual(toChatRequest(bare));
    const r = toResponse(req, completion());
    expect(r).toMatchObject({ tool_choice: 'auto', tools: [], text: { format: { type: 'text' } } });
    expect(r).toEqual(toResponse(bare, completion()));
  });

  it("a function tool's name or a JSON schema's name outside OpenAI's rule is a 400 naming it, as the chat door's", () => {
    const refusal = (body: object) => {
      const r = ResponsesRequest.safeParse({ model: 'claude-haiku-4-5', input: 'x', ...body });
      if (r.success) throw new Error('parsed');
      const e = fromZod(r.error);
      return { param: e.param, message: e.message };
    };
    const rule = "must match '^[a-zA-Z0-9_-]+$' (letters, digits, '_' and '-')";
    expect(
      refusal({ tools: [{ type: 'function', name: 'bad name!', parameters: { type: 'object' } }] }),
    ).toEqual({
      param: 'tools.0.name',
      message: `Invalid value for 'tools.0.name': ${rule}`,
    });
    expect(
      refusal({ text: { format: { type: 'json_schema', name: 'my schema', schema: { type: 'object' } } } }),
    ).toEqual({ param: 'text.format.name', message: `Invalid value for 'text.format.name': ${rule}` });
  });
});
