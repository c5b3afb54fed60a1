import type { ChatRequest, Completion } from '@faregate/contracts/chat';
import { type FakeProvider, startFakeProvider } from '@faregate/fake-provider/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callProvider, closeHttp } from './call.ts';
import { adapterForConfig, providersFromEnv } from './registry.ts';
import type { ProviderConfig, StreamEvent } from './types.ts';

/**
 * What the adapters carry besides text, over real HTTP against the fake: several choices (`n`)
 * and log probabilities from OpenAI, Anthropic's thinking signature and matched stop sequence,
 * the same whether the answer was streamed or not.
 */
let fake: FakeProvider;
let configs: ProviderConfig[];
beforeAll(async () => {
  fake = await startFakeProvider({ firstByteMs: 0, chunkMs: 0 });
  configs = providersFromEnv({ FAKE_PROVIDER_URL: fake.url });
});
afterAll(async () => {
  await closeHttp();
  await fake.close();
});

async function call(provider: string, model: string, req: Partial<ChatRequest>, stream: boolean) {
  const cfg = configs.find((c) => c.id === provider);
  if (!cfg) throw new Error(`no fake config for ${provider}`);
  const events: StreamEvent[] = [];
  const r = await callProvider({
    adapter: adapterForConfig(cfg),
    config: cfg,
    apiKey: cfg.apiKeys[0],
    request: { model, messages: [{ role: 'user', content: 'Name a river' }], ...req },
    model,
    stream,
    onEvent: (e) => events.push(e),
  });
  return { completion: r.completion, events };
}

const choicesOf = (c: Completion) => [c, ...(c.moreChoices ?? [])];

describe('openai: n choices and logprobs', () => {
  it.each([false, true])('stream %s: every choice, its logprobs, usage of all', async (stream) => {
    const { completion: c, events } = await call(
      'openai',
      'gpt-4o-mini',
      { n: 3, logprobs: true, top_logprobs: 1 },
      stream,
    );
    const billed = fake.calls().at(-1);
    const all = choicesOf(c);
    expect(all).toHaveLength(3);
    expect(new Set(all.map((x) => x.content)).size).toBe(3);
    for (const ch of all) {
      expect(ch.finishReason).toBe('stop');
      expect(ch.logprobs?.content?.map((t) => t.token).join('')).toBe(ch.content);
      expect(ch.logprobs?.content?.[0]?.top_logprobs).toHaveLength(1);
    }
    expect(c.usage.outputTokens).toBe(billed?.completionTokens);
    if (stream) {
      const byChoice = (i: number) =>
        events.flatMap((e) => (e.type === 'text' && (e.choice ?? 0) === i ? [e.text] : [])).join('');
      expect([0, 1, 2].map(byChoice)).toEqual(all.map((x) => x.content));
    }
  });

  it('the same choices whether streamed or not', async () => {
    const a = await call('openai', 'gpt-4o-mini', { n: 2 }, false);
    const b = await call('openai', 'gpt-4o-mini', { n: 2 }, true);
    expect(choicesOf(b.completion).map((x) => x.content)).toEqual(
      choicesOf(a.completion).map((x) => x.content),
    );
  });

  it('parallel_tool_calls: false keeps one call in every choice', async () => {
    const tools: ChatRequest['tools'] = [{ type: 'function', function: { name: 'get_weather' } }];
    const { completion } = await call(
      'openai',
      'gpt-4o-mini',
      { n: 2, tools, tool_choice: 'required', parallel_tool_calls: false },
      false,
    );
    expect(choicesOf(completion).map((x) => x.toolCalls.length)).toEqual([1, 1]);
  });
});

describe('anthropic: thinking signature and matched stop sequence', () => {
  it.each([false, true])('stream %s', async (stream) => {
    const plain = await call('anthropic', 'claude-haiku-4-5', { max_tokens: 64 }, stream);
    const text = plain.completion.content ?? '';
    const seq = ` ${text.split(' ')[2]}`;
    const { completion: c } = await call(
      'anthropic',
      'claude-haiku-4-5',
      { max_tokens: 4096, reasoning_effort: 'low', stop: [seq] },
      stream,
    );
    expect(c.reasoning?.length).toBeGreaterThan(0);
    expect(c.reasoningSignature?.length).toBeGreaterThan(0);
    expect(c.finishReason).toBe('stop');
    expect(c.stopSequence).toBe(seq);
    expect(c.content).toBe(text.slice(0, text.indexOf(seq)));
  });

  it('top_k reaches Anthropic and Gemini; OpenAI refuses it before any I/O', async () => {
    await expect(call('anthropic', 'claude-haiku-4-5', { top_k: 5 }, false)).resolves.toBeDefined();
    await expect(call('gemini', 'gemini-2.5-flash', { top_k: 5 }, false)).resolves.toBeDefined();
    const before = fake.calls().length;
    await expect(call('openai', 'gpt-4o-mini', { top_k: 5 }, false)).rejects.toMatchObject({
      code: 'invalid_request_error',
      param: 'top_k',
    });
    expect(fake.calls().length).toBe(before);
  });
});
