import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.ts';
import { tokenLogprob } from '@faregate/fake-provider/content';
import { finalUsage } from './support/calls.ts';

/**
 * The OpenAI Responses door (`/v1/responses`) with the official SDK, unchanged, against the real
 * services: every provider's model behind it, whole and streamed, function-call round trips,
 * structured output, and the stateful parameters refused by name.
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

const MODELS = [
  ['openai', 'openai/gpt-4o-mini'],
  ['anthropic', 'anthropic/claude-haiku-4-5'],
  ['gemini', 'gemini/gemini-2.5-flash'],
] as const;

const weather: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Current weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: false,
};

/** A response's output items, sent back as input (the SDK types some output items apart). */
const replay = (items: OpenAI.Responses.ResponseOutputItem[]) =>
  items as OpenAI.Responses.ResponseInputItem[];

const settled = (requestId: string) => finalUsage(stack, requestId);

describe.each(MODELS)('%s behind /v1/responses', (provider, model) => {
  it('answers a response with the usage billing settled', async () => {
    const { data: r, response } = await client.responses
      .create({
        model,
        instructions: 'Be brief.',
        input: [
          { role: 'user', content: `Hello ${provider}.` },
          { role: 'assistant', content: 'Hi. What do you want to know?' },
          { role: 'user', content: [{ type: 'input_text', text: 'Something short.' }] },
        ],
        max_output_tokens: 64,
        metadata: { team: 'door' },
      })
      .withResponse();
    expect(r.object).toBe('response');
    expect(r.status).toBe('completed');
    expect(r.model.startsWith(`${provider}/`)).toBe(true);
    expect(r.output_text.length).toBeGreaterThan(0);
    expect(r.metadata).toEqual({ team: 'door' });
    const id = response.headers.get('x-request-id')!;
    expect(r.id).toBe(id);
    const billed = await settled(id);
    expect(r.usage?.input_tokens).toBe(billed.input_tokens);
    expect(r.usage?.output_tokens).toBe(billed.output_tokens);
    expect(r.usage?.total_tokens).toBe(billed.input_tokens + billed.output_tokens);
    // What it cost, as chat's usage.cost: what billing settled (USD); and when it completed.
    const cost = await stack.sql.query(
      'SELECT sum(cost_micros)::text AS c FROM usage_events WHERE request_id = $1',
      [id],
    );
    expect((r.usage as { cost?: number }).cost).toBe(Number(cost.rows[0].c) / 1_000_000);
    expect(r.completed_at).toBeGreaterThanOrEqual(r.created_at);
  });

  it('streams the same answer with responses.stream, completed with usage', async () => {
    const params = { model, input: `Stream to me, ${provider}.`, max_output_tokens: 64 };
    const whole = await client.responses.create(params);
    const stream = client.responses.stream(params);
    let text = '';
    const types: string[] = [];
    const seqs: number[] = [];
    for await (const e of stream) {
      types.push(e.type);
      seqs.push(e.sequence_number);
      if (e.type === 'response.output_text.delta') text += e.delta;
    }
    const final = await stream.finalResponse();
    expect(text).toBe(whole.output_text);
    expect(final.output_text).toBe(whole.output_text);
    expect(final.usage).toEqual(whole.usage);
    expect(final.completed_at).toBeGreaterThanOrEqual(final.created_at);
    expect(types[0]).toBe('response.created');
    expect(types[1]).toBe('response.in_progress');
    expect(types.at(-1)).toBe('response.completed');
    expect(types).toContain('response.output_text.done');
    expect(types).toContain('response.content_part.done');
    expect(seqs).toEqual(seqs.map((_, i) => i));
  });

  it('does a function-call round trip, whole and streamed', async () => {
    const ask = 'What is the weather in Oslo?';
    const first = await client.responses.create({ model, input: ask, tools: [weather] });
    const call = first.output.find((o) => o.type === 'function_call');
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather' });
    if (call?.type !== 'function_call') throw new Error('no function call');
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Oslo' });

    const stream = client.responses.stream({ model, input: ask, tools: [weather] });
    let args = '';
    for await (const e of stream) if (e.type === 'response.function_call_arguments.delta') args += e.delta;
    const streamed = await stream.finalResponse();
    expect(JSON.parse(args)).toEqual({ city: 'Oslo' });
    expect(streamed.output.find((o) => o.type === 'function_call')).toMatchObject({ name: 'get_weather' });

    const second = await client.responses.create({
      model,
      tools: [weather],
      tool_choice: 'auto',
      input: [
        { role: 'user', content: ask },
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: '4°C, rain' },
      ],
    });
    expect(second.status).toBe('completed');
    expect(second.output_text.length).toBeGreaterThan(0);
  });
});

describe('the rest of the Responses API', () => {
  it('passes structured output (text.format json_schema) and images', async () => {
    const r = await client.responses.create({
      model: 'openai/gpt-4o-mini',
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'Describe.' },
            { type: 'input_image', image_url: 'https://example.com/cat.png', detail: 'auto' },
          ],
        },
      ],
      text: {
        format: {
          type: 'json_schema',
          name: 'answer',
          schema: { type: 'object', properties: { a: { type: 'string' } } },
          strict: false,
        },
      },
    });
    expect(r.status).toBe('completed');
    expect(r.text?.format?.type).toBe('json_schema');
    expect(JSON.parse(r.output_text)).toEqual({ a: 'Oslo' });
    // OpenAI's cache hints are taken (to OpenAI; dropped elsewhere).
    const cached = await client.responses.create({
      model: 'openai/gpt-4o-mini',
      input: 'hi',
      prompt_cache_key: 'tenant-1',
      prompt_cache_retention: '24h',
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    expect(cached.status).toBe('completed');
  });

  it('reasoning.effort goes to reasoning models and is refused, naming it, for the others', async () => {
    const ok = await client.responses.create({
      model: 'gemini/gemini-2.5-flash',
      input: 'Think.',
      reasoning: { effort: 'low' },
    });
    expect(ok.status).toBe('completed');
    const err = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'Think.', reasoning: { effort: 'low' } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err).toMatchObject({ param: 'reasoning.effort' });
    // `none` asks for no reasoning: any model takes it.
    const none = await client.responses.create({
      model: 'openai/gpt-4o-mini',
      input: 'Answer.',
      reasoning: { effort: 'none' },
    });
    expect(none.status).toBe('completed');
    expect(none.reasoning?.effort).toBe('none');
    // Anthropic's thinking needs a 1,024-token budget under the answer's limit: refused at the
    // ingress by the names the caller sent (it was refused by the worker, naming max_completion_tokens).
    const small = await client.responses
      .create({
        model: 'anthropic/claude-sonnet-4-5',
        input: 'Think.',
        reasoning: { effort: 'high' },
        max_output_tokens: 100,
      })
      .catch((e: unknown) => e);
    expect(small).toBeInstanceOf(OpenAI.BadRequestError);
    expect(small).toMatchObject({ param: 'reasoning.effort' });
    expect((small as Error).message).toContain('1,024 output tokens');
    expect((small as Error).message).not.toContain('max_completion_tokens');
  });

  it('extended thinking with tools, multi-turn: reasoning items carry Anthropic thinking back, whole and streamed', async () => {
    const model = 'anthropic/claude-haiku-4-5';
    const ask = 'What is the weather in Oslo?';
    const base = {
      model,
      tools: [weather],
      reasoning: { effort: 'low' as const },
      include: ['reasoning.encrypted_content' as const],
    };
    const whole = await client.responses.create({ ...base, input: ask });
    const stream = client.responses.stream({ ...base, input: ask });
    const done: OpenAI.Responses.ResponseOutputItem[] = [];
    for await (const e of stream) if (e.type === 'response.output_item.done') done.push(e.item);
    const streamed = await stream.finalResponse();
    // The streamed reasoning item, as it closed, is the final response's (whose items the SDK
    // decorates: `parsed_arguments`, which a replay then carries and the door ignores).
    expect(done[0]).toEqual(streamed.output[0]);
    expect(done).toHaveLength(2);
    for (const first of [whole, streamed]) {
      expect(first.output.map((o) => o.type)).toEqual(['reasoning', 'function_call']);
      const [reasoning, call] = first.output;
      if (reasoning?.type !== 'reasoning' || call?.type !== 'function_call')
        throw new Error('unexpected output');
      expect(reasoning.content?.[0]?.text.length).toBeGreaterThan(0);
      expect(reasoning.encrypted_content).toMatch(/^fg-thinking-1\./);
      const result = { type: 'function_call_output' as const, call_id: call.call_id, output: '4°C, rain' };
      // The whole output replayed, as stateless clients do: the fake, like Anthropic, refuses a
      // tool-use turn with thinking on unless it starts with its signed thinking, so this answer
      // means the thinking went back unchanged.
      for (const again of [
        await client.responses.create({
          ...base,
          input: [{ role: 'user', content: ask }, ...replay(first.output), result],
        }),
        await client.responses
          .stream({ ...base, input: [{ role: 'user', content: ask }, ...replay(first.output), result] })
          .finalResponse(),
      ]) {
        expect(again.status).toBe('completed');
        expect(again.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
        expect(again.output_text.length).toBeGreaterThan(0);
      }
      // Without the reasoning item Anthropic would refuse the turn with thinking on: that call goes on
      // without thinking, as Anthropic allows.
      const dropped = await client.responses.create({
        ...base,
        input: [{ role: 'user', content: ask }, call, result],
      });
      expect(dropped.status).toBe('completed');
      expect(dropped.output.map((o) => o.type)).toEqual(['message']);
      // Damaged sealed thinking is this door's 400, naming the item's field.
      const damaged = await client.responses
        .create({
          ...base,
          input: [
            { role: 'user', content: ask },
            { ...reasoning, encrypted_content: `${reasoning.encrypted_content?.slice(0, 20)}!!` },
            call,
            result,
          ],
        })
        .catch((e: unknown) => e);
      expect(damaged).toBeInstanceOf(OpenAI.BadRequestError);
      expect(damaged).toMatchObject({ param: 'input.1.encrypted_content' });
    }
    // Another provider cannot take Anthropic-signed thinking: it is left out, the call goes on.
    const gemini = await client.responses.create({
      ...base,
      model: 'gemini/gemini-2.5-flash',
      input: [
        { role: 'user', content: ask },
        ...replay(whole.output),
        {
          type: 'function_call_output',
          call_id: (whole.output[1] as { call_id: string }).call_id,
          output: '4°C',
        },
      ],
    });
    expect(gemini.status).toBe('completed');
    // A reasoning item that is only text (or OpenAI's own encrypted content) goes nowhere either.
    const foreign = await client.responses.create({
      model: 'openai/gpt-4o-mini',
      input: [
        { role: 'user', content: 'Hi' },
        { type: 'reasoning', id: 'rs_x', summary: [], encrypted_content: 'gAAAAB-openai-own' },
        { role: 'assistant', content: 'Hello.' },
        { role: 'user', content: 'And again?' },
      ],
    });
    expect(foreign.status).toBe('completed');
    // include names what it may: anything else is a 400 naming the entry.
    const include = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'x', include: ['code_interpreter_call.outputs'] })
      .catch((e: unknown) => e);
    expect(include).toMatchObject({ status: 400, param: 'include.0' });
  });

  it('reasoning.summary shows the reasoning as summary_text, whole and streamed, for reasoning models only', async () => {
    const base = {
      model: 'anthropic/claude-haiku-4-5',
      input: 'Think, then answer.',
      reasoning: { effort: 'low' as const, summary: 'auto' as const },
    };
    const whole = await client.responses.create(base);
    const events: string[] = [];
    const stream = client.responses.stream(base);
    let deltas = '';
    for await (const e of stream) {
      events.push(e.type);
      if (e.type === 'response.reasoning_summary_text.delta') deltas += e.delta;
    }
    const streamed = await stream.finalResponse();
    for (const r of [whole, streamed]) {
      expect(r.reasoning).toMatchObject({ effort: 'low', summary: 'auto' });
      const item = r.output[0];
      if (item?.type !== 'reasoning') throw new Error('no reasoning item');
      expect(item.summary).toEqual([{ type: 'summary_text', text: expect.stringMatching(/\S/) }]);
      expect(item.content ?? []).toEqual([]);
    }
    const item = streamed.output[0] as OpenAI.Responses.ResponseReasoningItem;
    expect(deltas).toBe(item.summary[0]?.text);
    expect(events).toEqual(
      expect.arrayContaining([
        'response.reasoning_summary_part.added',
        'response.reasoning_summary_text.done',
        'response.reasoning_summary_part.done',
      ]),
    );
    expect(events).not.toContain('response.reasoning_text.delta');
    const err = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'x', reasoning: { summary: 'auto' } })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, param: 'reasoning.summary' });
  });

  it('a max_output_tokens cut is an incomplete response', async () => {
    const r = await client.responses.create({
      model: 'openai/gpt-4o-mini',
      input: 'Go on. [[fake:{"tokens":40}]]',
      max_output_tokens: 16,
    });
    expect(r.status).toBe('incomplete');
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(r.usage?.output_tokens).toBe(16);
  });

  it('output_text.logprobs with include, whole and streamed; service_tier, prompt_cache_key and max_tool_calls taken and echoed', async () => {
    const params = {
      model: 'openai/gpt-4o-mini',
      input: 'Say something.',
      include: ['message.output_text.logprobs' as const],
      top_logprobs: 2,
      service_tier: 'auto' as const,
      prompt_cache_key: 'tenant-42',
      max_tool_calls: 3,
    };
    const r = await client.responses.create(params);
    expect(r).toMatchObject({
      top_logprobs: 2,
      max_tool_calls: 3,
      prompt_cache_key: 'tenant-42',
      service_tier: 'default',
    });
    const part = r.output.flatMap((o) => (o.type === 'message' ? o.content : []))[0];
    if (part?.type !== 'output_text') throw new Error('no output_text');
    expect(part.logprobs?.length).toBeGreaterThan(0);
    expect(part.logprobs?.map((l) => l.token).join('')).toBe(part.text);
    // The provider's values (the fake's: a hash of token and position), not a clamp of them.
    expect(part.logprobs?.map((l) => l.logprob)).toEqual(
      part.logprobs?.map((l, i) => tokenLogprob(l.token, i)),
    );
    expect(part.logprobs?.some((l) => l.logprob < 0)).toBe(true);
    for (const l of part.logprobs ?? []) {
      expect(l.bytes).toEqual([...Buffer.from(l.token)]);
      expect(l.top_logprobs).toHaveLength(2);
    }
    const stream = client.responses.stream(params);
    const deltas: unknown[] = [];
    stream.on('response.output_text.delta', (e) => deltas.push(...(e.logprobs ?? [])));
    const final = await stream.finalResponse();
    const streamed = final.output.flatMap((o) => (o.type === 'message' ? o.content : []))[0];
    if (streamed?.type !== 'output_text') throw new Error('no output_text');
    expect(streamed.logprobs?.length).toBeGreaterThan(0);
    expect(deltas).toEqual(streamed.logprobs);
    // Without the include, none.
    const plain = await client.responses.create({ model: 'openai/gpt-4o-mini', input: 'Say something.' });
    const p0 = plain.output.flatMap((o) => (o.type === 'message' ? o.content : []))[0];
    expect(p0).toMatchObject({ type: 'output_text', logprobs: [] });
    expect(plain).toMatchObject({ top_logprobs: 0, max_tool_calls: null });
    // A provider without log probabilities refuses them, naming what the caller sent.
    const err = await client.responses
      .create({ model: 'anthropic/claude-haiku-4-5', input: 'x', include: ['message.output_text.logprobs'] })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, param: 'include' });
  });

  it("max_output_tokens below 16 and metadata past OpenAI's limits are 400s naming them", async () => {
    const low = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'x', max_output_tokens: 15 })
      .catch((e: unknown) => e);
    expect(low).toMatchObject({ status: 400, param: 'max_output_tokens' });
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    for (const metadata of [many, { ['k'.repeat(65)]: 'v' }, { k: 'v'.repeat(513) }]) {
      const err = await client.responses
        .create({ model: 'openai/gpt-4o-mini', input: 'x', metadata })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ status: 400, param: expect.stringMatching(/^metadata/) });
      const chat = await client.chat.completions
        .create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], metadata })
        .catch((e: unknown) => e);
      expect(chat).toMatchObject({ status: 400, param: expect.stringMatching(/^metadata/) });
    }
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v'.repeat(512)]));
    const ok = await client.responses.create({ model: 'openai/gpt-4o-mini', input: 'x', metadata: sixteen });
    expect(ok.metadata).toEqual(sixteen);
  });
});

describe('refusals', () => {
  it('conversation and prompt (stored on OpenAI) are 400s naming them; stream_options is taken; an unknown nested key is named', async () => {
    const base = { model: 'openai/gpt-4o-mini', input: 'x' } as const;
    for (const [param, extra] of [
      ['conversation', { conversation: 'conv_123' }],
      ['prompt', { prompt: { id: 'pmpt_123' } }],
      ['text.length', { text: { length: 'short' } }],
    ] as const) {
      const err = await client.responses.create({ ...base, ...extra } as never).catch((e: unknown) => e);
      expect(err).toMatchObject({ status: 400, param });
    }
    const ok = await client.responses.create({
      ...base,
      stream: true,
      stream_options: { include_obfuscation: false },
    });
    let completed = false;
    for await (const e of ok) if (e.type === 'response.completed') completed = true;
    expect(completed).toBe(true);
  });

  it('stateful features are a 400 naming the parameter', async () => {
    const prev = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'x', previous_response_id: 'resp_123' })
      .catch((e: unknown) => e);
    expect(prev).toBeInstanceOf(OpenAI.BadRequestError);
    expect(prev).toMatchObject({ status: 400, param: 'previous_response_id' });
    const store = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'x', store: true })
      .catch((e: unknown) => e);
    expect(store).toMatchObject({ status: 400, param: 'store' });
    const background = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'x', background: true })
      .catch((e: unknown) => e);
    expect(background).toMatchObject({ status: 400, param: 'background' });
    // The defaults, as an SDK or a saved request sends them, are taken.
    const defaults = await client.responses.create({
      model: 'openai/gpt-4o-mini',
      input: 'x',
      background: false,
      truncation: 'disabled',
    });
    expect(defaults).toMatchObject({ status: 'completed', truncation: 'disabled' });
    const get = await client.responses.retrieve('resp_123').catch((e: unknown) => e);
    expect(get).toMatchObject({ status: 400, param: 'response_id' });
  });

  it('no key or a wrong key is 401 in OpenAI shape; malformed bodies are 400 naming the field', async () => {
    const post = (
      body: string,
      headers: Record<string, string> = { authorization: `Bearer ${stack.apiKey}` },
    ) =>
      fetch(`${stack.url}/v1/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
    const anon = await post('{"model":"openai/gpt-4o-mini","input":"x"}', {});
    expect(anon.status).toBe(401);
    expect(await anon.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
    const cases: Array<[string, RegExp]> = [
      ['{"model":', /JSON/],
      ['"x"', /JSON object/],
      ['{"model":"openai/gpt-4o-mini"}', /input/],
      ['{"model":"openai/gpt-4o-mini","input":[{"type":"item_reference","id":"x"}]}', /input/],
      // The JSON parser refuses a __proto__ key outright.
      ['{"model":"openai/gpt-4o-mini","input":"x","__proto__":{"store":true}}', /JSON/],
      ['{"model":"openai/gpt-4o-mini","input":"x","constructor":{"prototype":{"x":1}}}', /JSON/],
      ['{"model":"openai/gpt-4o-mini","input":"x","constructor":1}', /constructor/],
      ['{"model":"openai/gpt-4o-mini","input":"x","max_output_tokens":-1}', /max_output_tokens/],
    ];
    for (const [body, message] of cases) {
      const r = await post(body);
      expect(r.status, body).toBe(400);
      const e = (await r.json()) as { error: { message: string; type: string } };
      expect(e.error.type, body).toBe('invalid_request_error');
      expect(e.error.message, body).toMatch(message);
    }
  });

  it('a stream cut after content ends with an error event the SDK raises', async () => {
    stack.fake.script('openai', [{ fault: 'cut_after_burst' }]);
    let text = '';
    const cut = await (async () => {
      const stream = client.responses.stream({ model: 'openai/gpt-4o-mini', input: 'cut me' });
      for await (const e of stream) if (e.type === 'response.output_text.delta') text += e.delta;
      await stream.finalResponse();
    })().catch((e: unknown) => e);
    expect(text.length).toBeGreaterThan(0);
    expect(cut).toBeInstanceOf(OpenAI.APIError);
    expect(cut).toMatchObject({ code: 'upstream_error' });
  });

  it('unknown and prototype-named models are 404', async () => {
    for (const model of ['no-such-model', '__proto__', 'constructor', 'openai/__proto__', 'hasOwnProperty']) {
      const err = await client.responses.create({ model, input: 'x' }).catch((e: unknown) => e);
      expect(err, model).toBeInstanceOf(OpenAI.NotFoundError);
      expect(err).toMatchObject({ code: 'model_not_found' });
    }
  });
});

describe("refusals in the Responses API's terms", () => {
  it('a function_call with no function_call_output after it, and content parts a target cannot take, are named as input items; nothing is called', async () => {
    stack.fake.clearCalls();
    const refusal = (body: OpenAI.Responses.ResponseCreateParamsNonStreaming) =>
      client.responses.create(body).then(
        () => undefined,
        (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
      );
    const unanswered = await refusal({
      model: 'gpt-4o-mini',
      input: [
        { role: 'user', content: 'x' },
        { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' },
        { role: 'user', content: 'y' },
      ],
    });
    expect(unanswered?.status).toBe(400);
    expect(unanswered?.param).toBe('input.1');
    expect(unanswered?.message).toContain(
      "No tool output found for function call c1: a 'function_call' item",
    );
    expect(unanswered?.message).not.toContain('tool_calls');
    const orphan = await refusal({
      model: 'gpt-4o-mini',
      input: [
        { role: 'user', content: 'x' },
        { type: 'function_call_output', call_id: 'c9', output: 'ok' },
      ],
    });
    expect(orphan?.param).toBe('input.1');
    expect(orphan?.message).toContain("'function_call_output' item with call_id 'c9'");
    const image = await refusal({
      model: 'anthropic/claude-haiku-4-5',
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'see' },
            { type: 'input_image', image_url: 'ftp://x/y.png', detail: 'auto' },
          ],
        },
      ],
    });
    expect(image?.status).toBe(400);
    expect(image?.param).toBe('input.0.content.1');
    expect(image?.message).toContain("'input.0.content.1' is not supported by anthropic");
    expect(stack.fake.calls().filter((c) => !c.path.endsWith('/models'))).toEqual([]);
  });
});

describe('what the openai Python SDK sends', () => {
  it("output items as it dumps them, and null for optional fields, are taken; a tool's name outside OpenAI's rule is a 400 naming it", async () => {
    const model = 'anthropic/claude-haiku-4-5';
    const ask = 'What is the weather in Oslo?';
    const first = await client.responses.create({ model, input: ask, tools: [weather] });
    const call = first.output.find((o) => o.type === 'function_call');
    if (call?.type !== 'function_call') throw new Error('no function call');
    // As `item.model_dump(by_alias=True)` gives them: the SDK's unset optional fields as null.
    const second = await client.responses.create({
      model,
      tools: [weather],
      tool_choice: null,
      text: null,
      user: null,
      safety_identifier: null,
      input: [
        { role: 'user', content: ask },
        { ...call, async: null, caller: null, namespace: null },
        {
          type: 'function_call_output',
          id: null,
          call_id: call.call_id,
          output: '4°C, rain',
          status: null,
          caller: null,
          name: null,
          namespace: null,
        },
      ],
    } as never);
    expect(second).toMatchObject({
      status: 'completed',
      tool_choice: 'auto',
      text: { format: { type: 'text' } },
    });
    const answer = second.output.find((o) => o.type === 'message');
    if (answer?.type !== 'message') throw new Error('no message');
    // The answer sent back with its phase, as OpenAI asks, and its text's null logprobs.
    const third = await client.responses.create({
      model,
      input: [
        { role: 'user', content: ask },
        { ...answer, phase: 'final_answer', content: answer.content.map((c) => ({ ...c, logprobs: null })) },
        { role: 'user', content: 'Thanks.' },
      ],
    } as never);
    expect(third.status).toBe('completed');

    const bad = await client.responses
      .create({ model, input: 'x', tools: [{ ...weather, name: 'bad name!' }] })
      .catch((e: unknown) => e);
    expect(bad).toMatchObject({ status: 400, param: 'tools.0.name' });
    expect((bad as Error).message).toContain(
      "Invalid value for 'tools.0.name': must match '^[a-zA-Z0-9_-]+$'",
    );
  });
});
