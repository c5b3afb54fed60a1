import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

let stack: Stack;
let client: OpenAI;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai', 'anthropic', 'gemini', 'llama'] });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const MODELS = [
  ['openai', 'openai/gpt-4o-mini'],
  ['anthropic', 'anthropic/claude-haiku-4-5'],
  ['gemini', 'gemini/gemini-2.5-flash'],
  ['llama', 'llama/llama3.2'],
] as const;

const weatherTool: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

describe.each(MODELS)('%s through the gateway', (provider, model) => {
  it('answers non-streamed and streamed identically, with the usage the provider billed', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: `Tell me something, ${provider}.` },
    ];
    const plain = await client.chat.completions.create({ model, messages, max_tokens: 40 });
    expect(plain.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(plain.choices[0]?.finish_reason).toBe('stop');
    const billed = stack.fake
      .calls()
      .filter((c) => c.provider === provider && c.model !== null && c.status === 200)
      .at(-1)!;
    expect(plain.usage?.prompt_tokens).toBe(billed.promptTokens);
    expect(plain.usage?.completion_tokens).toBe(billed.completionTokens);

    const stream = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 40,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(plain.choices[0]?.message.content);
    expect(usage?.completion_tokens).toBe(plain.usage?.completion_tokens);
    const rows = await until(async () => {
      const r = await stack.sql.query(
        'SELECT provider, output_tokens FROM usage_events WHERE request_id = $1',
        [plain.id],
      );
      return r.rows.length ? r.rows : undefined;
    });
    expect(rows).toEqual([{ provider, output_tokens: plain.usage?.completion_tokens }]);
  });

  it('returns tool calls in OpenAI shape, streamed and not', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'What is the weather in Oslo?' },
    ];
    const r = await client.chat.completions.create({ model, messages, tools: [weatherTool] });
    expect(r.choices[0]?.finish_reason).toBe('tool_calls');
    const call = r.choices[0]?.message.tool_calls?.[0];
    expect(call?.type).toBe('function');
    if (call?.type !== 'function') throw new Error('no function call');
    expect(call.function.name).toBe('get_weather');
    expect(() => JSON.parse(call.function.arguments)).not.toThrow();

    const stream = await client.chat.completions.create({
      model,
      messages,
      tools: [weatherTool],
      stream: true,
    });
    let args = '';
    let name = '';
    let finish: string | null = null;
    for await (const c of stream) {
      for (const t of c.choices[0]?.delta.tool_calls ?? []) {
        name += t.function?.name ?? '';
        args += t.function?.arguments ?? '';
      }
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(name).toBe('get_weather');
    expect(JSON.parse(args)).toEqual(JSON.parse(call.function.arguments));
    expect(finish).toBe('tool_calls');

    // The tool result goes back in OpenAI's shape and the conversation continues.
    const next = await client.chat.completions.create({
      model,
      tools: [weatherTool],
      messages: [
        ...messages,
        r.choices[0]!.message,
        { role: 'tool', tool_call_id: call.id, content: '4°C, rain' },
      ],
    });
    expect(next.choices[0]?.message.content?.length).toBeGreaterThan(0);
  });
});

describe('routing', () => {
  it('lists every pool in /v1/models with its owner and pricing', async () => {
    const list = await client.models.list();
    const owners = new Set(list.data.filter((m) => m.id !== 'auto').map((m) => m.owned_by));
    expect([...owners].sort()).toEqual(['anthropic', 'gemini', 'llama', 'openai']);
    // `auto` is a name callers use: listed and retrievable, with what it can reach and no price of its own.
    const auto = (await client.models.retrieve('auto')) as unknown as {
      owned_by: string;
      routable: boolean;
      pricing: null;
      capabilities: string[];
      context_window: number;
    };
    expect(list.data.find((m) => m.id === 'auto')).toEqual(auto);
    expect(auto).toMatchObject({ owned_by: 'faregate', routable: true, pricing: null });
    expect(auto.capabilities).toEqual(expect.arrayContaining(['tools', 'vision']));
    expect(auto.context_window).toBeGreaterThan(100_000);
    const llama = list.data.find((m) => m.id === 'llama/llama3.2:latest') as unknown as {
      pricing: { input: string; note?: string };
    };
    expect(llama.pricing.input).toBe('0');
    expect(llama.pricing.note).toMatch(/self-hosted/);
  });

  it('auto picks the cheapest live model that can serve the request', async () => {
    stack.fake.clearCalls();
    await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'hi' }] });
    // Self-hosted llama is free: the cheapest.
    expect(
      stack.fake
        .calls()
        .filter((c) => c.model !== null)
        .map((c) => c.provider),
    ).toEqual(['llama']);
    stack.fake.clearCalls();
    // An image needs vision, which the llama model lacks: the cheapest vision model serves it.
    await client.chat.completions.create({
      model: 'auto',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
      ],
    });
    const served = stack.fake.calls().filter((c) => c.model !== null);
    expect(served.map((c) => `${c.provider}/${c.model}`)).toEqual(['openai/gpt-5-nano']);
  });

  it('a bare model name served by one provider routes there; an unpriced model is refused', async () => {
    const r = await client.chat.completions.create({
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(r.model).toBe('anthropic/claude-haiku-4-5-20251001');
    const err = await client.chat.completions
      .create({
        model: 'gemini/gemini-2.5-flash-image-preview-unknown',
        messages: [{ role: 'user', content: 'x' }],
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
  });
});
