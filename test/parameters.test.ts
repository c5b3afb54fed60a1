import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Parameters are never silently dropped (#16 item 4): what a target cannot do is a 400 naming the
 * parameter and the provider before anything is queued; what it can do, or what is translated,
 * arrives.
 */
let stack: Stack;
let client: OpenAI;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai', 'anthropic', 'gemini'] });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const ask = (content: string): ChatCompletionMessageParam[] => [{ role: 'user', content }];
const tools: ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
];
/** Generation calls the fake received (model listings left out). */
const generations = () => stack.fake.calls().filter((c) => !c.path.endsWith('/models'));

async function refusal(p: Promise<unknown>) {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(OpenAI.APIError);
  return e as InstanceType<typeof OpenAI.APIError>;
}

describe('refused before queueing: a 400 naming the parameter and the provider', () => {
  it.each([
    ['anthropic/claude-haiku-4-5', { seed: 7 }, 'seed', 'anthropic'],
    ['anthropic/claude-haiku-4-5', { metadata: { order: '42' } }, 'metadata', 'anthropic'],
    ['anthropic/claude-haiku-4-5', { store: true }, 'store', 'anthropic'],
    ['anthropic/claude-haiku-4-5', { presence_penalty: 0.5 }, 'presence_penalty', 'anthropic'],
    ['gemini/gemini-2.5-flash', { user: 'end-user-1' }, 'user', 'gemini'],
    ['gemini/gemini-2.5-flash', { metadata: { a: 'b' } }, 'metadata', 'gemini'],
    ['openai/gpt-4o-mini', { service_tier: 'priority' }, 'service_tier', 'openai'],
    ['openai/gpt-4o-mini', { top_k: 5 }, 'top_k', 'openai'],
    ['anthropic/claude-haiku-4-5', { n: 2 }, 'n', 'anthropic'],
    ['gemini/gemini-2.5-flash', { logprobs: true }, 'logprobs', 'gemini'],
    // More than the model can write (the catalog's limits: 16,384 and 64,000), as its provider refuses it.
    ['openai/gpt-4o-mini', { max_tokens: 100_000 }, 'max_tokens', 'openai'],
    ['anthropic/claude-haiku-4-5', { max_completion_tokens: 100_000 }, 'max_completion_tokens', 'anthropic'],
    // An empty turn: Anthropic refuses it (it used to be dropped, and the provider said no message was sent).
    ['anthropic/claude-haiku-4-5', { messages: [{ role: 'user', content: '' }] }, 'messages', 'anthropic'],
    [
      'anthropic/claude-haiku-4-5',
      { messages: [{ role: 'user', content: [{ type: 'text', text: ' ' }] }] },
      'messages',
      'anthropic',
    ],
    [
      'anthropic/claude-haiku-4-5',
      { response_format: { type: 'json_object' } },
      'response_format',
      'anthropic',
    ],
    // OpenAI's own output modalities: text only through this gateway.
    ['openai/gpt-4o-mini', { modalities: ['text', 'audio'] }, 'modalities.1', 'text'],
  ] as const)('%s with %j', async (model, extra, param, provider) => {
    stack.fake.clearCalls();
    const body = { model, messages: ask('hi'), ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming;
    const e = await refusal(client.chat.completions.create(body));
    expect(e.status).toBe(400);
    expect(e.param).toBe(param);
    expect(e.message).toContain(provider);
    expect(generations()).toEqual([]);
  });

  it.each([
    ['anthropic/claude-haiku-4-5', { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }],
    ['anthropic/claude-haiku-4-5', { type: 'file', file: { file_id: 'file-abc' } }],
    ['gemini/gemini-2.5-flash', { type: 'file', file: { file_id: 'file-abc' } }],
  ] as const)(
    '%s: a content part it cannot take (%j) is refused at the ingress, naming the part',
    async (model, part) => {
      stack.fake.clearCalls();
      const messages = [
        { role: 'user', content: [{ type: 'text', text: 'hi' }, part] },
      ] as ChatCompletionMessageParam[];
      const e = await refusal(client.chat.completions.create({ model, messages, max_tokens: 2 }));
      expect(e.status).toBe(400);
      expect(e.param).toBe('messages.0.content.1');
      expect(e.message).toContain(`is not supported by ${model.split('/')[0]}`);
      // Not queued: no provider was tried (no attempts header), and the fake got no call.
      expect(e.headers?.get('x-faregate-attempts')).toBeNull();
      expect(generations()).toEqual([]);
    },
  );
});

describe('JSON nested beyond what any request needs', () => {
  it('is a 400 in the door’s shape on chat, Responses and Messages (count_tokens too), nothing queued', async () => {
    stack.fake.clearCalls();
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    const tool = `[{"type":"function","function":{"name":"f","parameters":${deep}}}]`;
    const post = (path: string, body: string, headers: Record<string, string> = {}) =>
      fetch(`${stack.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json', ...headers },
        body,
      });
    const openai = [
      await post(
        '/v1/chat/completions',
        `{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"x"}],"tools":${tool}}`,
      ),
      await post(
        '/v1/responses',
        `{"model":"openai/gpt-4o-mini","input":"x","text":{"format":{"type":"json_schema","name":"x","schema":${deep}}}}`,
      ),
    ];
    for (const r of openai) {
      expect(r.status).toBe(400);
      const { error } = (await r.json()) as { error: { type: string; message: string } };
      expect(error.type).toBe('invalid_request_error');
      expect(error.message).toMatch(/levels deep/);
    }
    const anthropicBody = `{"model":"anthropic/claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":${deep}}]}`;
    for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
      const r = await post(path, anthropicBody, { 'anthropic-version': '2023-06-01' });
      expect(r.status).toBe(400);
      const body = (await r.json()) as { type: string; error: { type: string; message: string } };
      expect(body.type).toBe('error');
      expect(body.error.type).toBe('invalid_request_error');
      expect(body.error.message).toMatch(/levels deep/);
    }
    expect(generations()).toEqual([]);
  });
});

describe('what OpenAI refuses, refused alike before queueing', () => {
  it('stream_options without stream, a tool name outside the pattern, reasoning_effort on a model that does not reason', async () => {
    stack.fake.clearCalls();
    const cases = [
      [
        { model: 'openai/gpt-4o-mini', stream_options: { include_usage: true } },
        'stream_options',
        /only allowed when 'stream' is enabled/,
      ],
      [
        { model: 'openai/gpt-4o-mini', tools: [{ type: 'function', function: { name: 'bad name!' } }] },
        'tools.0.function.name',
        /\^\[a-zA-Z0-9_-\]\+\$/,
      ],
      [{ model: 'openai/gpt-4o-mini', reasoning_effort: 'low' }, 'reasoning_effort', /not a reasoning model/],
      [
        { model: 'anthropic/claude-3-5-haiku', reasoning_effort: 'low' },
        'reasoning_effort',
        /not a reasoning model/,
      ],
    ] as const;
    for (const [extra, param, message] of cases) {
      const e = await refusal(client.chat.completions.create({ messages: ask('x'), ...extra } as never));
      expect(e.status, param).toBe(400);
      expect(e.param, param).toBe(param);
      expect(e.message, param).toMatch(message);
    }
    // The same on every way in: an async job, a member of a job batch.
    const job = await fetch(`${stack.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'openai/gpt-4o-mini',
        messages: ask('x'),
        stream_options: { include_usage: true },
      }),
    });
    expect(job.status).toBe(400);
    expect(((await job.json()) as { error: { param: string } }).error.param).toBe('stream_options');
    expect(generations()).toEqual([]);
  });
});

describe('logit_bias as OpenAI takes it: token ids to a bias from -100 to 100', () => {
  it('anything else is a 400 naming the key, nothing queued; prototype-named keys too; a valid map is served', async () => {
    stack.fake.clearCalls();
    const post = (logit: string) =>
      fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
        body: `{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"x"}],"logit_bias":${logit}}`,
      });
    const cases = [
      ['{"constructor":2}', 'logit_bias.constructor', /token id/],
      ['{"1":200}', 'logit_bias.1', /from -100 to 100/],
      ['{"50256":-101}', 'logit_bias.50256', /from -100 to 100/],
      ['{"-1":5}', 'logit_bias.-1', /token id/],
      ['{"toString":1}', 'logit_bias.toString', /token id/],
      ['{"7":"x"}', 'logit_bias.7', /expected number/],
    ] as const;
    for (const [logit, param, message] of cases) {
      const r = await post(logit);
      const { error } = (await r.json()) as { error: { type: string; param: string; message: string } };
      expect([r.status, error.type, error.param], logit).toEqual([400, 'invalid_request_error', param]);
      expect(error.message, logit).toMatch(message);
    }
    // The probe's body: refused whichever of its two wrongs is named.
    const probe = await post('{"constructor":2,"1":200}');
    expect(probe.status).toBe(400);
    expect(((await probe.json()) as { error: { param: string } }).error.param).toMatch(/^logit_bias\./);
    // A __proto__ key is refused by the JSON parser, before any schema.
    const proto = await post('{"__proto__":2}');
    expect(proto.status).toBe(400);
    expect(((await proto.json()) as { error: { message: string } }).error.message).toMatch(/__proto__/);
    expect(generations()).toEqual([]);
    const ok = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('x'),
      logit_bias: { '50256': -100, '1': 100, '2': 1 },
    });
    expect(ok.object).toBe('chat.completion');
  });
});

describe('unknown fields inside a chat request', () => {
  const raw = (body: unknown) =>
    fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  it.each([
    ['a message', { role: 'user', content: 'x', foo: 'y' }, 'messages.0.foo'],

    [
      'a content part',
      { role: 'user', content: [{ type: 'text', text: 'x', cache: { type: 'ephemeral' } }] },
      'messages.0.content.0.cache',
    ],
  ])('%s is a 400 naming it, nothing queued', async (_, message, param) => {
    stack.fake.clearCalls();
    const r = await raw({
      model: 'openai/gpt-4o-mini',
      messages: [message, { role: 'user', content: 'hi' }],
    });
    expect(r.status).toBe(400);
    const { error } = (await r.json()) as { error: { param: string; message: string } };
    expect(error.param).toBe(param);
    expect(error.message).toContain(`Unrecognized request argument supplied: ${param}`);
    expect(generations()).toEqual([]);
  });

  it('a legacy assistant function_call left unanswered is a 400 naming it (answered ones are served: legacy-functions.test.ts)', async () => {
    const r = await raw({
      model: 'openai/gpt-4o-mini',
      messages: [
        { role: 'assistant', content: null, function_call: { name: 'f', arguments: '{}' } },
        { role: 'user', content: 'hi' },
      ],
    });
    expect(r.status).toBe(400);
    const { error } = (await r.json()) as { error: { param: string; message: string } };
    expect(error.param).toBe('messages.0.function_call');
    expect(error.message).toContain("must be followed by a function message (role 'function', name 'f')");
  });

  it('a tool_choice naming no tool of the request, or required without tools, is a 400 on every door', async () => {
    stack.fake.clearCalls();
    const named = await refusal(
      client.chat.completions.create({
        model: 'openai/gpt-4o-mini',
        messages: ask('hi'),
        tools,
        tool_choice: { type: 'function', function: { name: 'not_a_tool' } },
      }),
    );
    expect(named.status).toBe(400);
    expect(named.param).toBe('tool_choice');
    expect(named.message).toContain('not_a_tool');
    const required = await refusal(
      client.chat.completions.create({
        model: 'openai/gpt-4o-mini',
        messages: ask('hi'),
        tool_choice: 'required',
      }),
    );
    expect(required.param).toBe('tool_choice');
    const viaResponses = await refusal(
      client.responses.create({
        model: 'openai/gpt-4o-mini',
        input: 'hi',
        tools: [{ type: 'function', name: 'get_weather', parameters: { type: 'object' }, strict: false }],
        tool_choice: { type: 'function', name: 'not_a_tool' },
      }),
    );
    expect(viaResponses.param).toBe('tool_choice');
    expect(generations()).toEqual([]);
  });

  it('in a tool or a response format, likewise', async () => {
    const fn = { name: 'f', parameters: { type: 'object' }, foo: 1 };
    let r = await raw({
      model: 'openai/gpt-4o-mini',
      messages: ask('hi'),
      tools: [{ type: 'function', function: fn }],
    });
    expect(((await r.json()) as { error: { param: string } }).error.param).toBe('tools.0.function.foo');
    r = await raw({
      model: 'openai/gpt-4o-mini',
      messages: ask('hi'),
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {}, extra_thing: true } },
    });
    expect(((await r.json()) as { error: { param: string } }).error.param).toBe(
      'response_format.json_schema.extra_thing',
    );
  });

  it("an answer's message sent back as the next turn's history is accepted as SDKs send it", async () => {
    const first = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('weather please [[fake:{"tool":true}]]'),
      tools,
    });
    const message = first.choices[0]!.message;
    expect(message.tool_calls?.length).toBeGreaterThan(0);
    // As received (refusal, annotations), plus what streamed answers leave on tool calls (index).
    const echoed = {
      ...message,
      tool_calls: message.tool_calls?.map((c, index) => ({ ...c, index })),
    } as unknown as ChatCompletionMessageParam;
    const call = message.tool_calls![0]!;
    const next = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [...ask('weather please'), echoed, { role: 'tool', tool_call_id: call.id, content: 'sunny' }],
      tools,
    });
    expect(next.choices[0]?.message.content).toBeTruthy();
    // As the Python SDK sends a message it built (stream helper, parse(), model_dump()): its unset
    // fields as null.
    const dumped = {
      ...message,
      name: null,
      annotations: null,
      audio: null,
      function_call: null,
      parsed: null,
      tool_calls: message.tool_calls?.map((c) =>
        c.type === 'function' ? { ...c, function: { ...c.function, parsed_arguments: null } } : c,
      ),
    } as unknown as ChatCompletionMessageParam;
    const plain = {
      role: 'assistant',
      content: 'Hi.',
      name: null,
      tool_calls: null,
      function_call: null,
      annotations: null,
    };
    const again = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [
        ...ask('hello'),
        plain as unknown as ChatCompletionMessageParam,
        ...ask('weather please'),
        dumped,
        { role: 'tool', tool_call_id: call.id, content: 'sunny' },
      ],
      tools,
    });
    expect(again.choices[0]?.message.content).toBeTruthy();
  });
});

describe('an output cap above the model’s, on every door', () => {
  it('/v1/responses names max_output_tokens; /v1/messages answers in Anthropic’s shape; nothing queued', async () => {
    stack.fake.clearCalls();
    const e = await refusal(
      client.responses.create({ model: 'openai/gpt-4o-mini', input: 'hi', max_output_tokens: 100_000 }),
    );
    expect(e.status).toBe(400);
    expect(e.param).toBe('max_output_tokens');
    expect(e.message).toContain("'max_output_tokens' is too large: 100000");
    const anthropic = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
    // (Streamed: the SDK itself refuses a non-streamed request this long.)
    const m = await anthropic.messages
      .create({
        model: 'anthropic/claude-haiku-4-5',
        max_tokens: 100_000,
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
      })
      .catch((err: unknown) => err);
    expect(m).toBeInstanceOf(Anthropic.BadRequestError);
    expect((m as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining('at most 64000') },
    });
    expect(generations()).toEqual([]);
  });
});

describe('embeddings where the target has none', () => {
  it('an Anthropic model on /v1/embeddings is a 400 naming anthropic, nothing queued', async () => {
    stack.fake.clearCalls();
    const e = await refusal(client.embeddings.create({ model: 'anthropic/claude-haiku-4-5', input: 'a' }));
    expect(e.status).toBe(400);
    expect(e.param).toBe('model');
    expect(e.message).toContain('anthropic has no embeddings API');
    expect(generations()).toEqual([]);
  });
});

describe('structured output through the official SDK', () => {
  const schema = {
    type: 'object',
    properties: {
      city: { type: 'string' },
      days: { type: 'integer', minimum: 1 },
      tags: { type: 'array', items: { type: 'string', enum: ['sun', 'rain'] } },
      when: { anyOf: [{ type: 'string', format: 'date' }, { type: 'null' }] },
    },
    required: ['city', 'days', 'tags', 'when'],
    additionalProperties: false,
  };
  it.each(['openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5', 'gemini/gemini-2.5-flash'])(
    '%s answers JSON that follows the schema (json_schema), and an object for json_object where it has one',
    async (model) => {
      const parsed = await client.chat.completions.parse({
        model,
        messages: ask('Plan a trip.'),
        response_format: { type: 'json_schema', json_schema: { name: 'trip', schema, strict: true } },
      });
      const trip = parsed.choices[0]?.message.parsed as Record<string, unknown>;
      expect(trip).toEqual({ city: 'Oslo', days: 4, tags: ['sun'], when: '2025-01-01' });
      const json = client.chat.completions.create({
        model,
        messages: ask('Answer in JSON, please.'),
        response_format: { type: 'json_object' },
      });
      if (model.startsWith('anthropic/')) {
        // Anthropic has JSON by schema only: refused at the ingress, naming the parameter.
        expect((await refusal(json)).param).toBe('response_format');
        return;
      }
      const obj = await json;
      expect(typeof JSON.parse(obj.choices[0]?.message.content ?? '')).toBe('object');
    },
  );
});

describe('passed through or translated', () => {
  it('store: false and user reach Anthropic as they can (user → metadata.user_id)', async () => {
    const r = await client.chat.completions.create({
      model: 'anthropic/claude-haiku-4-5',
      messages: ask('hi'),
      store: false,
      user: 'u-7',
    });
    expect(r.choices[0]?.message.content).toBeTruthy();
  });

  it('null for an optional field is taken as not given, as OpenAI does, whatever the target', async () => {
    // What clients that build requests from optional arguments send (`tool_choice=None` and the like).
    const nulls = {
      tools: null,
      tool_choice: null,
      parallel_tool_calls: null,
      response_format: null,
      user: null,
      safety_identifier: null,
      functions: null,
      function_call: null,
    } as unknown as Partial<OpenAI.ChatCompletionCreateParamsNonStreaming>;
    for (const model of ['openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5', 'gemini/gemini-2.5-flash']) {
      const r = await client.chat.completions.create({ model, messages: ask('hi'), ...nulls });
      expect(r.choices[0]?.message.content, model).toBeTruthy();
      expect(r.choices[0]?.message.function_call, model).toBeUndefined();
      // Inside a message and a tool as well (a Python SDK model dump of them).
      const nested = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'hi', name: null }],
        tools: [{ type: 'function', function: { name: 'noop', description: null, parameters: null } }],
      } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
      expect(nested.choices[0]?.finish_reason, model).toBeTruthy();
    }
  });

  it("a tool loop as LangChain and the AI SDK run it: the tool message's name taken, and Claude reasoning goes on without the thinking they cannot send back", async () => {
    for (const [model, extra] of [
      ['openai/gpt-4o-mini', {}],
      ['gemini/gemini-2.5-flash', {}],
      ['anthropic/claude-haiku-4-5', { reasoning_effort: 'low' }],
    ] as const) {
      const messages: ChatCompletionMessageParam[] = ask('Weather in Oslo? [[fake:{"tool":true}]]');
      const first = await client.chat.completions.create({ model, messages, tools, ...extra });
      const call = first.choices[0]?.message.tool_calls?.[0];
      if (call?.type !== 'function') throw new Error(`${model}: no tool call`);
      // The assistant turn as an OpenAI-format client keeps it: no thinking_blocks.
      const answered = (first.choices[0]?.message ?? {}) as unknown as Record<string, unknown>;
      const { thinking_blocks: _dropped, ...assistant } = answered;
      const second = await client.chat.completions.create({
        model,
        tools,
        ...extra,
        messages: [
          ...ask('Weather in Oslo?'),
          assistant as unknown as ChatCompletionMessageParam,
          {
            role: 'tool',
            tool_call_id: call.id,
            content: '4°C, rain',
            name: call.function.name,
          } as ChatCompletionMessageParam,
        ],
      });
      expect(second.choices[0]?.finish_reason, model).toBeTruthy();
    }
  });

  it('prediction (Predicted Outputs) reaches OpenAI; its accepted and rejected tokens come back, rejected ones billed as output; refused elsewhere', async () => {
    const first = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('Edit it.'),
    });
    const answer = first.choices[0]?.message.content ?? '';
    expect(answer.length).toBeGreaterThan(0);
    stack.fake.clearCalls();
    // The answer predicted, plus words it will not have.
    const predicted = `${answer} zebra quokka`;
    const r = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('Edit it.'),
      prediction: { type: 'content', content: predicted },
    });
    const details = r.usage?.completion_tokens_details;
    expect(details?.accepted_prediction_tokens).toBe(answer.split(/\s+/).filter(Boolean).length);
    expect(details?.rejected_prediction_tokens).toBe(2);
    // Billed as the provider counted: the rejected tokens are in completion_tokens.
    expect(r.usage?.completion_tokens).toBe(generations()[0]?.completionTokens);
    expect(r.usage?.completion_tokens).toBe((first.usage?.completion_tokens ?? 0) + 2);
    // Streamed, in the usage chunk, with content parts.
    const stream = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('Edit it.'),
      prediction: { type: 'content', content: [{ type: 'text', text: predicted }] },
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    expect(usage?.completion_tokens_details?.rejected_prediction_tokens).toBe(2);
    for (const model of ['anthropic/claude-haiku-4-5', 'gemini/gemini-2.5-flash']) {
      const e = await refusal(
        client.chat.completions.create({
          model,
          messages: ask('hi'),
          prediction: { type: 'content', content: 'x' },
        }),
      );
      expect([e.status, e.param], model).toEqual([400, 'prediction']);
    }
  });

  it("every reasoning_effort OpenAI's SDK sends (none, xhigh, max too) is served, translated, or refused by the model that cannot take it", async () => {
    const reasoned = (r: OpenAI.ChatCompletion) =>
      ((r.choices[0]?.message as { reasoning_content?: string } | undefined)?.reasoning_content ?? '')
        .length > 0;
    for (const effort of ['none', 'xhigh', 'max'] as const) {
      const r = await client.chat.completions.create({
        model: 'openai/gpt-5-mini',
        messages: ask('hi'),
        reasoning_effort: effort,
      });
      expect(r.choices[0]?.message.content, effort).toBeTruthy();
    }
    // none on a model that does not reason: served (the field left out), as if not given.
    const plain = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('hi'),
      reasoning_effort: 'none',
    });
    expect(plain.choices[0]?.message.content).toBeTruthy();
    // Anthropic: none is no thinking (any temperature); xhigh thinks.
    const calm = await client.chat.completions.create({
      model: 'anthropic/claude-haiku-4-5',
      messages: ask('Ponder.'),
      reasoning_effort: 'none',
      temperature: 0.2,
    });
    expect(reasoned(calm)).toBe(false);
    const deep = await client.chat.completions.create({
      model: 'anthropic/claude-haiku-4-5',
      messages: ask('Ponder.'),
      reasoning_effort: 'xhigh',
    });
    expect(reasoned(deep)).toBe(true);
    const gemini = await client.chat.completions.create({
      model: 'gemini/gemini-2.5-flash',
      messages: ask('hi'),
      reasoning_effort: 'max',
    });
    expect(gemini.choices[0]?.message.content).toBeTruthy();
    // The o-series take low, medium and high only.
    const o = await refusal(
      client.chat.completions.create({
        model: 'openai/o4-mini',
        messages: ask('hi'),
        reasoning_effort: 'none',
      }),
    );
    expect([o.status, o.param]).toEqual([400, 'reasoning_effort']);
    const viaResponses = await client.responses.create({
      model: 'openai/gpt-5-mini',
      input: 'hi',
      reasoning: { effort: 'xhigh' },
    });
    expect(viaResponses.status).toBe('completed');
  });

  it("verbosity (GPT-5's; text.verbosity on the Responses door) reaches OpenAI and is refused elsewhere by the door's name", async () => {
    const chat = await client.chat.completions.create({
      model: 'openai/gpt-5-mini',
      messages: ask('hi'),
      verbosity: 'low',
    });
    expect(chat.choices).toHaveLength(1);
    const r = await client.responses.create({
      model: 'openai/gpt-5-mini',
      input: 'hi',
      text: { verbosity: 'low' },
    });
    expect(r.status).toBe('completed');
    expect(r.text?.verbosity).toBe('low');
    const onAnthropic = await refusal(
      client.chat.completions.create({
        model: 'anthropic/claude-haiku-4-5',
        messages: ask('hi'),
        verbosity: 'low',
      }),
    );
    expect(onAnthropic.param).toBe('verbosity');
    const viaResponses = await refusal(
      client.responses.create({
        model: 'anthropic/claude-haiku-4-5',
        input: 'hi',
        text: { verbosity: 'low' },
      }),
    );
    expect(viaResponses.param).toBe('text.verbosity');
  });

  it('service_tier: default passes through to OpenAI; flex (billed below the list price) is a 400 naming it', async () => {
    const r = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('hi'),
      service_tier: 'default',
    });
    expect(r.choices).toHaveLength(1);
    const e = await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask('hi'), service_tier: 'flex' })
      .catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as InstanceType<typeof OpenAI.APIError>).param).toBe('service_tier');
    const viaResponses = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'hi', service_tier: 'flex' })
      .catch((err: unknown) => err);
    expect(viaResponses).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it.each([
    ['gemini/gemini-2.5-flash', false],
    ['gemini/gemini-2.5-flash', true],
    ['openai/gpt-4o-mini', false],
    ['openai/gpt-4o-mini', true],
    ['anthropic/claude-haiku-4-5', false],
    ['anthropic/claude-haiku-4-5', true],
  ] as const)(
    '%s: parallel tool calls arrive whole, and parallel_tool_calls false gets one (stream: %s)',
    async (model, stream) => {
      const messages = ask('weather please [[fake:{"tool":true,"calls":2}]]');
      const calls = async (parallel: boolean | undefined) => {
        const base = {
          model,
          messages,
          tools,
          ...(parallel === undefined ? {} : { parallel_tool_calls: parallel }),
        };
        if (!stream) return (await client.chat.completions.create(base)).choices[0]?.message.tool_calls ?? [];
        const s = client.chat.completions.stream({ ...base, stream: true });
        return (await s.finalChatCompletion()).choices[0]?.message.tool_calls ?? [];
      };
      const two = await calls(undefined);
      expect(two).toHaveLength(2);
      expect(new Set(two.map((c) => c.id)).size).toBe(2);
      for (const c of two)
        expect(c.type === 'function' && JSON.parse(c.function.arguments)).toEqual({ city: 'Oslo' });
      const one = await calls(false);
      expect(one).toHaveLength(1);
      expect(one[0]?.type === 'function' && one[0].function.name).toBe('get_weather');
    },
  );

  it('gemini: tool-call ids are unique across the turns of a conversation', async () => {
    const first = await client.chat.completions.create({
      model: 'gemini/gemini-2.5-flash',
      messages: ask('weather in Paris [[fake:{"tool":true}]]'),
      tools,
    });
    const call1 = first.choices[0]?.message.tool_calls?.[0];
    expect(call1?.id).toMatch(/^call_/);
    const second = await client.chat.completions.create({
      model: 'gemini/gemini-2.5-flash',
      messages: [
        // (Gemini's turns merge the tool result with the next question: the fake reads its directive
        // from the last user turn without a tool result, the first one here.)
        ...ask('weather in Paris [[fake:{"tool":true}]]'),
        { role: 'assistant', content: null, tool_calls: first.choices[0]?.message.tool_calls ?? [] },
        { role: 'tool', tool_call_id: call1?.id ?? '', content: '{"temp":21}' },
        ...ask('and in Rome?'),
      ],
      tools,
    });
    const call2 = second.choices[0]?.message.tool_calls?.[0];
    expect(call2?.id).toMatch(/^call_/);
    expect(call2?.id).not.toBe(call1?.id);
  });
});
