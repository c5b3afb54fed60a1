import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.ts';
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
  });

  it('a max_output_tokens cut is an incomplete response', async () => {
    const r = await client.responses.create({
      model: 'openai/gpt-4o-mini',
      input: 'Go on.',
      max_output_tokens: 3,
    });
    expect(r.status).toBe('incomplete');
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(r.usage?.output_tokens).toBe(3);
  });
});

describe('refusals', () => {
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
