import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenLogprob } from '@faregate/fake-provider/content';
import { finalUsage } from './support/calls.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * What #16 asks to pass through where the target can do it, with the official SDKs, unchanged:
 * `n > 1` and log probabilities (OpenAI), `top_k` on `/v1/messages` (Anthropic, Gemini), the
 * matched stop sequence, and reasoning in whole answers (thinking blocks with their signature,
 * Responses reasoning items, chat `reasoning_content`). Refused, naming the parameter and the
 * provider, where the target cannot.
 */
let stack: Stack;
let openai: OpenAI;
let anthropic: Anthropic;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai', 'anthropic', 'gemini', 'llama'] });
  openai = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const ask = (content: string): ChatCompletionMessageParam[] => [{ role: 'user', content }];
const generations = () => stack.fake.calls().filter((c) => !c.path.endsWith('/models'));

async function failure(p: Promise<unknown>) {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeDefined();
  return e as { status?: number; param?: string; message: string; error?: unknown };
}

describe('n > 1 on OpenAI', () => {
  it('answers every choice, billed at the provider usage of them all', async () => {
    const { data: r, response } = await openai.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask('Name a colour.'), n: 3 })
      .withResponse();
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(new Set(r.choices.map((c) => c.message.content)).size).toBe(3);
    const billed = generations().at(-1);
    expect(r.usage?.completion_tokens).toBe(billed?.completionTokens);
    const tokens = r.choices.reduce((n, c) => n + (c.message.content ?? '').split(' ').length, 0);
    expect(r.usage?.completion_tokens).toBe(tokens);
    const settled = await finalUsage(stack, response.headers.get('x-request-id') ?? '');
    expect(settled.output_tokens).toBe(r.usage?.completion_tokens);
  });

  it('streams every choice with its index; the SDK assembles what the whole answer says', async () => {
    const whole = await openai.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('Name a metal.'),
      n: 2,
    });
    const stream = openai.chat.completions.stream({
      model: 'openai/gpt-4o-mini',
      messages: ask('Name a metal.'),
      n: 2,
      stream_options: { include_usage: true },
    });
    const indexes = new Set<number>();
    stream.on('chunk', (c) => {
      for (const ch of c.choices) indexes.add(ch.index);
    });
    const done = await stream.finalChatCompletion();
    expect([...indexes].sort()).toEqual([0, 1]);
    expect(done.choices.map((c) => c.message.content)).toEqual(whole.choices.map((c) => c.message.content));
    expect(done.choices.map((c) => c.finish_reason)).toEqual(['stop', 'stop']);
    expect(done.usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
  });

  it.each([
    ['anthropic/claude-haiku-4-5', 'anthropic'],
    ['gemini/gemini-2.5-flash', 'gemini'],
  ])('%s: n = 2 is a 400 naming n and the provider, nothing sent', async (model, provider) => {
    stack.fake.clearCalls();
    const e = await failure(openai.chat.completions.create({ model, messages: ask('hi'), n: 2 }));
    expect(e.status).toBe(400);
    expect(e.param).toBe('n');
    expect(e.message).toContain(provider);
    expect(generations()).toEqual([]);
  });
});

describe('logprobs on OpenAI', () => {
  it('returns them in OpenAI shape, whole and streamed alike', async () => {
    const body = {
      model: 'openai/gpt-4o-mini',
      messages: ask('Name a tree.'),
      logprobs: true,
      top_logprobs: 3,
    };
    const whole = await openai.chat.completions.create(body);
    const c = whole.choices[0];
    const lp = c?.logprobs?.content ?? [];
    expect(lp.length).toBeGreaterThan(0);
    expect(lp.map((t) => t.token).join('')).toBe(c?.message.content);
    expect(lp.every((t) => t.top_logprobs.length === 3)).toBe(true);
    // The provider's values, as it sent them (the fake's are a hash of token and position).
    expect(lp.map((t) => t.logprob)).toEqual(lp.map((t, i) => tokenLogprob(t.token, i)));
    expect(lp.some((t) => t.logprob < 0)).toBe(true);
    expect(lp[0]?.top_logprobs.map((a) => a.logprob)).toEqual(
      [0, 1, 1.5].map((d) => (lp[0]?.logprob ?? 0) - d),
    );
    const streamed = await openai.chat.completions.stream(body).finalChatCompletion();
    expect(streamed.choices[0]?.logprobs?.content).toEqual(lp);
    const none = await openai.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask('x') });
    expect(none.choices[0]?.logprobs).toBeNull();
  });

  it('streamed, every content chunk carries the logprobs of exactly its text, for every choice', async () => {
    for (const n of [1, 2]) {
      for (const max_tokens of [3, 12]) {
        const stream = await openai.chat.completions.create({
          model: 'gpt-4o-mini',
          messages: ask(`Name a market, ${n} ${max_tokens}.`),
          stream: true,
          logprobs: true,
          max_tokens,
          n,
        });
        const text = new Map<number, string>();
        for await (const chunk of stream) {
          for (const c of chunk.choices) {
            const lp = c.logprobs?.content;
            if (c.delta.content) {
              // The probe saw the text first, then its logprobs one chunk late.
              expect(lp?.map((t) => t.token).join('')).toBe(c.delta.content);
              text.set(c.index, (text.get(c.index) ?? '') + c.delta.content);
            } else {
              // No chunk that exists only to carry logprobs (`content: ""`).
              expect(lp ?? []).toEqual([]);
            }
          }
        }
        expect([...text.keys()].sort()).toEqual(Array.from({ length: n }, (_, i) => i));
        for (const t of text.values()) expect(t.length).toBeGreaterThan(0);
      }
    }
  });

  it.each([
    ['anthropic/claude-haiku-4-5', 'anthropic', { logprobs: true }, 'logprobs'],
    ['gemini/gemini-2.5-flash', 'gemini', { logprobs: true, top_logprobs: 2 }, 'logprobs'],
    ['openai/gpt-4o-mini', 'openai', { top_logprobs: 2 }, 'top_logprobs'],
    // Ollama's preset refuses them: its pool publishes that, and the ingress refuses before queueing.
    ['llama/llama3.2', 'llama', { logprobs: true }, 'logprobs'],
  ] as const)('%s with %j is a 400 naming it', async (model, provider, extra, param) => {
    const e = await failure(openai.chat.completions.create({ model, messages: ask('hi'), ...extra }));
    expect(e.status).toBe(400);
    expect(e.param).toBe(param);
    expect(e.message).toContain(provider);
  });
});

const say = (text: string) => [{ role: 'user' as const, content: text }];
const textOf = (m: Anthropic.Message) =>
  m.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('');

describe('/v1/messages: top_k and stop sequences', () => {
  it.each(['anthropic/claude-haiku-4-5', 'gemini/gemini-2.5-flash'])('%s takes top_k', async (model) => {
    // (This SDK's types no longer list top_k; the API still takes it.)
    const body = { model, max_tokens: 32, top_k: 5, messages: say('hi') };
    const m = await anthropic.messages.create(body as Anthropic.MessageCreateParamsNonStreaming);
    expect(m.stop_reason).toBe('end_turn');
  });

  it('an OpenAI target refuses top_k in Anthropic’s error shape, naming it and openai', async () => {
    stack.fake.clearCalls();
    const res = await fetch(`${stack.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': stack.apiKey,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
      },
      body: JSON.stringify({ model: 'openai/gpt-4o-mini', max_tokens: 32, top_k: 5, messages: say('hi') }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { type: string; error: { type: string; message: string } };
    expect(body.type).toBe('error');
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toContain("'top_k'");
    expect(body.error.message).toContain('openai');
    expect(generations()).toEqual([]);
  });

  it.each([false, true])(
    'anthropic names the stop sequence that ended the answer (stream %s)',
    async (stream) => {
      const model = 'anthropic/claude-haiku-4-5';
      const full = textOf(
        await anthropic.messages.create({ model, max_tokens: 64, messages: say('Go on.') }),
      );
      const seq = ` ${full.split(' ')[3]}`;
      const body = { model, max_tokens: 64, messages: say('Go on.'), stop_sequences: ['##', seq] };
      const m = stream
        ? await anthropic.messages.stream(body).finalMessage()
        : await anthropic.messages.create(body);
      expect(m.stop_reason).toBe('stop_sequence');
      expect(m.stop_sequence).toBe(seq);
      expect(textOf(m)).toBe(full.slice(0, full.indexOf(seq)));
    },
  );

  it.each(['openai/gpt-4o-mini', 'gemini/gemini-2.5-flash'])(
    '%s does not say which sequence matched: end_turn, stop_sequence null',
    async (model) => {
      const full = textOf(
        await anthropic.messages.create({ model, max_tokens: 64, messages: say('Go on.') }),
      );
      const seq = ` ${full.split(' ')[3]}`;
      const m = await anthropic.messages.create({
        model,
        max_tokens: 64,
        messages: say('Go on.'),
        stop_sequences: [seq],
      });
      expect(textOf(m)).toBe(full.slice(0, full.indexOf(seq)));
      expect(m).toMatchObject({ stop_reason: 'end_turn', stop_sequence: null });
    },
  );
});

describe('reasoning in whole answers', () => {
  const thinking = { type: 'enabled' as const, budget_tokens: 1024 };

  it('/v1/messages: a thinking block with its signature, the same whole or streamed', async () => {
    const body = {
      model: 'anthropic/claude-haiku-4-5',
      max_tokens: 2048,
      thinking,
      messages: say('Ponder.'),
    };
    const m = await anthropic.messages.create(body);
    expect(m.content.map((b) => b.type)).toEqual(['thinking', 'text']);
    const t = m.content[0];
    if (t?.type !== 'thinking') throw new Error('no thinking block');
    expect(t.thinking.length).toBeGreaterThan(0);
    expect(t.signature.length).toBeGreaterThan(0);
    const s = await anthropic.messages.stream(body).finalMessage();
    expect(s.content).toEqual(m.content);
  });

  it('/v1/responses: a reasoning item before the message, whole and streamed', async () => {
    const body = {
      model: 'anthropic/claude-haiku-4-5',
      input: 'Ponder.',
      reasoning: { effort: 'low' as const },
      max_output_tokens: 4096,
    };
    const r = await openai.responses.create(body);
    expect(r.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
    const item = r.output[0];
    if (item?.type !== 'reasoning') throw new Error('no reasoning item');
    expect(item.content?.[0]?.text.length).toBeGreaterThan(0);
    const events: string[] = [];
    const stream = openai.responses.stream(body);
    stream.on('event', (e) => events.push(e.type));
    const s = await stream.finalResponse();
    expect(events).toContain('response.reasoning_text.delta');
    expect(s.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
    expect({ ...s.output[0], id: '' }).toEqual({ ...item, id: '' });
  });

  it('/v1/chat/completions: reasoning_content (and Anthropic thinking_blocks with the signature)', async () => {
    const claude = await openai.chat.completions.create({
      model: 'anthropic/claude-haiku-4-5',
      messages: ask('Ponder.'),
      reasoning_effort: 'low',
      max_completion_tokens: 4096,
    });
    const m = claude.choices[0]?.message as unknown as {
      reasoning_content?: string;
      thinking_blocks?: Array<{ thinking: string; signature: string }>;
    };
    expect(m.reasoning_content?.length).toBeGreaterThan(0);
    expect(m.thinking_blocks?.[0]?.thinking).toBe(m.reasoning_content);
    expect(m.thinking_blocks?.[0]?.signature.length).toBeGreaterThan(0);
    const llama = await openai.chat.completions.create({
      model: 'llama/llama3.2',
      messages: ask('Ponder.'),
      reasoning_effort: 'low',
    });
    const lm = llama.choices[0]?.message as unknown as { reasoning_content?: string };
    expect(lm.reasoning_content?.length).toBeGreaterThan(0);
    // Streamed: the SDK keeps the unknown delta field in the chunks.
    const streamedReasoning = async (model: string) => {
      let reasoning = '';
      const s = openai.chat.completions.stream({ model, messages: ask('Ponder.'), reasoning_effort: 'low' });
      s.on('chunk', (c) => {
        reasoning +=
          (c.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? '';
      });
      const final = await s.finalChatCompletion();
      return { reasoning, final };
    };
    expect((await streamedReasoning('llama/llama3.2')).reasoning).toBe(lm.reasoning_content);
    // Gemini returns its thoughts only when asked (includeThoughts): the gateway asks whenever it
    // sets a thinking budget, so they come back whole and streamed; billed as reasoning either way.
    const gemini = await openai.chat.completions.create({
      model: 'gemini/gemini-2.5-flash',
      messages: ask('Ponder.'),
      reasoning_effort: 'low',
    });
    const gm = gemini.choices[0]?.message as unknown as { reasoning_content?: string };
    expect(gm.reasoning_content?.length).toBeGreaterThan(0);
    expect(gemini.usage?.completion_tokens_details?.reasoning_tokens).toBeGreaterThan(0);
    const gs = await streamedReasoning('gemini/gemini-2.5-flash');
    expect(gs.reasoning).toBe(gm.reasoning_content);
    expect(gs.final.choices[0]?.message.content).toBe(gemini.choices[0]?.message.content);
    // Thinking off (`none`: no budget): no thoughts.
    const plain = await openai.chat.completions.create({
      model: 'gemini/gemini-2.5-flash',
      messages: ask('Ponder.'),
      reasoning_effort: 'none',
    });
    expect(
      (plain.choices[0]?.message as unknown as { reasoning_content?: string } | undefined)?.reasoning_content,
    ).toBeFalsy();
  });
});

describe('thinking with tools through /v1/chat/completions', () => {
  const tools: OpenAI.ChatCompletionTool[] = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    },
  ];
  type Thinking = { type: 'thinking'; thinking: string; signature: string };

  it('thinking_blocks sent back with the tool result reach Anthropic first in the assistant turn', async () => {
    const base = {
      model: 'anthropic/claude-haiku-4-5',
      reasoning_effort: 'low' as const,
      max_completion_tokens: 4096,
      tools,
    };
    const first = await openai.chat.completions.create({ ...base, messages: ask('Weather in Oslo?') });
    const m = first.choices[0]?.message;
    expect(first.choices[0]?.finish_reason).toBe('tool_calls');
    const blocks = (m as unknown as { thinking_blocks?: Thinking[] }).thinking_blocks;
    expect(blocks?.[0]?.signature.length).toBeGreaterThan(0);
    const call = m?.tool_calls?.[0];
    if (!call || !blocks) throw new Error('no tool call or thinking');
    const turn = (thinking_blocks?: unknown[]): ChatCompletionMessageParam[] => [
      ...ask('Weather in Oslo?'),
      {
        role: 'assistant',
        content: null,
        tool_calls: m.tool_calls,
        ...(thinking_blocks ? { thinking_blocks } : {}),
      } as ChatCompletionMessageParam,
      { role: 'tool', tool_call_id: call.id, content: '4°C, rain' },
    ];
    // The fake, like Anthropic, refuses the turn unless it starts with its thinking, signed as minted.
    const second = await openai.chat.completions.create({ ...base, messages: turn(blocks) });
    expect(second.choices[0]?.finish_reason).toBe('stop');
    expect(second.choices[0]?.message.content?.length).toBeGreaterThan(0);
    const redacted = await openai.chat.completions.create({
      ...base,
      messages: turn([{ type: 'redacted_thinking', data: 'opaque' }, ...blocks]),
    });
    expect(redacted.choices[0]?.finish_reason).toBe('stop');
    // Without them (an OpenAI-format client cannot send them), Anthropic would refuse the turn with
    // thinking on: that call goes on without thinking, as Anthropic allows.
    const without = await openai.chat.completions.create({ ...base, messages: turn() });
    expect(without.choices[0]?.finish_reason).toBe('stop');
    expect(
      (without.choices[0]?.message as { reasoning_content?: string } | undefined)?.reasoning_content,
    ).toBeUndefined();
    // Malformed blocks are the gateway's 400, naming the field, before anything is queued.
    stack.fake.clearCalls();
    const bad = await failure(
      openai.chat.completions.create({ ...base, messages: turn([{ type: 'thinking', thinking: 'x' }]) }),
    );
    expect(bad.status).toBe(400);
    expect(bad.message).toMatch(/thinking_blocks/);
    expect(generations()).toHaveLength(0);
    // OpenAI cannot take Anthropic-signed thinking: left out of its request, the call goes on.
    const gpt = await openai.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      tools,
      messages: turn(blocks),
    });
    expect(gpt.choices[0]?.finish_reason).toBe('stop');
  });

  it('streamed, the thinking block comes signed in the chunks, and the SDK’s final message carries it for the next turn', async () => {
    const base = {
      model: 'anthropic/claude-haiku-4-5',
      reasoning_effort: 'low' as const,
      max_completion_tokens: 4096,
      tools,
    };
    const stream = openai.chat.completions.stream({ ...base, messages: ask('Weather in Oslo?') });
    let reasoning = '';
    const streamedBlocks: Thinking[][] = [];
    stream.on('chunk', (c) => {
      const d = c.choices[0]?.delta as
        | { reasoning_content?: string; thinking_blocks?: Thinking[] }
        | undefined;
      reasoning += d?.reasoning_content ?? '';
      if (d?.thinking_blocks) streamedBlocks.push(d.thinking_blocks);
    });
    const final = await stream.finalChatCompletion();
    const m = final.choices[0]?.message;
    expect(final.choices[0]?.finish_reason).toBe('tool_calls');
    const blocks = streamedBlocks.at(-1);
    expect(blocks?.[0]?.thinking).toBe(reasoning);
    expect(blocks?.[0]?.signature.length).toBeGreaterThan(0);
    // The SDK keeps the unknown delta field on the message it builds: sent back as it is, the turn goes on.
    expect((m as unknown as { thinking_blocks?: Thinking[] }).thinking_blocks).toEqual(blocks);
    const call = m?.tool_calls?.[0];
    if (!call) throw new Error('no tool call');
    const second = await openai.chat.completions.create({
      ...base,
      messages: [
        ...ask('Weather in Oslo?'),
        m as ChatCompletionMessageParam,
        { role: 'tool', tool_call_id: call.id, content: '4°C, rain' },
      ],
    });
    expect(second.choices[0]?.finish_reason).toBe('stop');
  });
});
