import type { ChatRequest } from '@faregate/contracts/chat';
import { describe, expect, it } from 'vitest';
import { chatRefusal, embeddingsRefusal, hasEmbeddings, modelRefusal } from './capabilities.ts';

const chat = (extra: Partial<ChatRequest>): ChatRequest => ({
  model: 'm',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

const TOOL = { type: 'function' as const, function: { name: 'f', parameters: { type: 'object' } } };

describe('what each protocol cannot do, in one table', () => {
  it.each([
    ['anthropic', { seed: 1 }, 'seed'],
    ['anthropic', { metadata: { a: 'b' } }, 'metadata'],
    ['anthropic', { store: true }, 'store'],
    ['anthropic', { temperature: 1.5 }, 'temperature'],
    ['anthropic', { frequency_penalty: 0.2 }, 'frequency_penalty'],
    ['gemini', { user: 'u' }, 'user'],
    ['gemini', { safety_identifier: 'u' }, 'safety_identifier'],
    ['gemini', { stop: ['a', 'b', 'c', 'd', 'e', 'f'] as unknown as string[] }, 'stop'],
    ['openai-compatible', { store: true }, 'store'],
    ['openai', { service_tier: 'priority' }, 'service_tier'],
    ['openai', { service_tier: 'flex' }, 'service_tier'],
    ['anthropic', { verbosity: 'low' }, 'verbosity'],
    ['gemini', { verbosity: 'high' }, 'verbosity'],
    ['openai-compatible', { verbosity: 'medium' }, 'verbosity'],
    ['anthropic', { n: 2 }, 'n'],
    ['anthropic', { logprobs: true }, 'logprobs'],
    ['gemini', { n: 3 }, 'n'],
    ['gemini', { top_logprobs: 2 }, 'top_logprobs'],
    ['openai', { top_k: 5 }, 'top_k'],
    ['openai', { top_logprobs: 2 }, 'top_logprobs'],
    ['openai', { stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    ['openai-compatible', { top_k: 5 }, 'top_k'],
    // Extended thinking: a budget of 1,024 under the token limit, temperature 1 only.
    ['anthropic', { reasoning_effort: 'high', max_tokens: 100 }, 'reasoning_effort'],
    ['anthropic', { reasoning_effort: 'low', max_completion_tokens: 1024 }, 'reasoning_effort'],
    ['anthropic', { reasoning_effort: 'medium', temperature: 0.5 }, 'temperature'],
    // ...no forced tool use, no top_k, top_p from 0.95 only.
    ['anthropic', { reasoning_effort: 'low', tools: [TOOL], tool_choice: 'required' }, 'tool_choice'],
    [
      'anthropic',
      { reasoning_effort: 'low', tools: [TOOL], tool_choice: { type: 'function', function: { name: 'f' } } },
      'tool_choice',
    ],
    ['anthropic', { reasoning_effort: 'high', top_k: 5 }, 'top_k'],
    ['anthropic', { reasoning_effort: 'high', top_p: 0.9 }, 'top_p'],
  ] as const)('%s refuses %j naming %s and the provider', (kind, extra, param) => {
    const r = chatRefusal(kind, `my-${kind}`, chat(extra as Partial<ChatRequest>));
    expect(r?.param).toBe(param);
    expect(r?.message).toContain(`my-${kind}`);
  });

  it.each([
    ['anthropic', { store: false, metadata: {}, user: 'u', seed: null }],
    ['gemini', { seed: 3, store: false, service_tier: 'auto' }],
    [
      'openai',
      { seed: 3, store: true, metadata: { a: 'b' }, service_tier: 'default', user: 'u', verbosity: 'low' },
    ],
    ['openai', { n: 3, logprobs: true, top_logprobs: 2 }],
    ['openai-compatible', { n: 2, logprobs: true }],
    ['anthropic', { n: 1, top_k: 5 }],
    ['anthropic', { reasoning_effort: 'low', max_completion_tokens: 1025, temperature: 1 }],
    ['anthropic', { reasoning_effort: 'high' }],
    ['anthropic', { reasoning_effort: 'high', tools: [TOOL], tool_choice: 'auto', top_p: 0.95 }],
    ['anthropic', { reasoning_effort: 'high', tools: [TOOL], tool_choice: 'none' }],
    ['anthropic', { tools: [TOOL], tool_choice: 'required', top_k: 5, top_p: 0.5 }],
    ['anthropic', { reasoning_effort: 'minimal', max_tokens: 10, temperature: 0.2 }],
    ['gemini', { n: 1, top_k: 40, logprobs: false }],
    // Gemini's 5 stop sequences; OpenAI's 4.
    ['gemini', { stop: ['a', 'b', 'c', 'd', 'e'] }],
    ['openai', { stop: ['a', 'b', 'c', 'd'] }],
    ['openai-compatible', { stop: ['a', 'b', 'c', 'd', 'e'] }],
  ] as const)('%s accepts %j', (kind, extra) => {
    expect(chatRefusal(kind, kind, chat(extra as Partial<ChatRequest>))).toBeUndefined();
  });

  it("a tool call's arguments sent back must be a JSON object for Anthropic and Gemini (not OpenAI), named at their path", () => {
    const turn = (args: string) =>
      chat({
        messages: [
          { role: 'user', content: 'x' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'c0', type: 'function', function: { name: 'f', arguments: '{}' } },
              { id: 'c1', type: 'function', function: { name: 'f', arguments: args } },
            ],
          },
          { role: 'tool', tool_call_id: 'c0', content: 'r' },
          { role: 'tool', tool_call_id: 'c1', content: 'r' },
        ],
      } as Partial<ChatRequest>);
    for (const bad of ['not json', '[1]', '"s"', '3', 'null'])
      for (const kind of ['anthropic', 'gemini'] as const)
        expect(chatRefusal(kind, kind, turn(bad)), `${kind} ${bad}`).toMatchObject({
          param: 'messages.1.tool_calls.1.function.arguments',
        });
    for (const ok of ['{"a":1}', '', '  '])
      for (const kind of ['anthropic', 'gemini'] as const)
        expect(chatRefusal(kind, kind, turn(ok)), `${kind} ${ok}`).toBeUndefined();
    expect(chatRefusal('openai', 'openai', turn('not json'))).toBeUndefined();
  });

  it("'minimal' reasoning goes to GPT-5 models, not to the o-series (low, medium, high)", () => {
    const m = (id: string) => ({ provider: 'openai', id, capabilities: ['reasoning'] });
    expect(modelRefusal('openai', m('o4-mini'), chat({ reasoning_effort: 'minimal' }))).toMatchObject({
      param: 'reasoning_effort',
    });
    expect(modelRefusal('openai', m('o4-mini'), chat({ reasoning_effort: 'low' }))).toBeUndefined();
    expect(modelRefusal('openai', m('gpt-5-mini'), chat({ reasoning_effort: 'minimal' }))).toBeUndefined();
  });

  it('the o-series take low, medium and high only; later efforts (none, xhigh, max) go to the GPT-5 line', () => {
    const m = (id: string) => ({ provider: 'openai', id, capabilities: ['reasoning'] });
    for (const effort of ['none', 'xhigh', 'max'] as const) {
      expect(modelRefusal('openai', m('o3'), chat({ reasoning_effort: effort })), effort).toMatchObject({
        param: 'reasoning_effort',
      });
      expect(
        modelRefusal('openai', m('gpt-5-mini'), chat({ reasoning_effort: effort })),
        effort,
      ).toBeUndefined();
    }
  });

  it("verbosity goes to OpenAI's reasoning models (GPT-5) and is refused on the others, as OpenAI refuses it", () => {
    const m = (id: string, capabilities: string[]) => ({ provider: 'openai', id, capabilities });
    expect(modelRefusal('openai', m('gpt-4o-mini', []), chat({ verbosity: 'low' }))).toMatchObject({
      param: 'verbosity',
    });
    expect(
      modelRefusal('openai', m('gpt-5-mini', ['reasoning']), chat({ verbosity: 'low' })),
    ).toBeUndefined();
  });

  it('at reasoning effort none a GPT-5 model takes the sampling parameters (GPT-5.1 and later do)', () => {
    const m = { provider: 'openai', id: 'gpt-5.2', capabilities: ['reasoning'] };
    expect(
      modelRefusal('openai', m, chat({ reasoning_effort: 'none', temperature: 0.3, top_p: 0.5 })),
    ).toBeUndefined();
    expect(modelRefusal('openai', m, chat({ reasoning_effort: 'low', temperature: 0.3 }))).toMatchObject({
      param: 'temperature',
    });
    expect(modelRefusal('openai', m, chat({ temperature: 0.3 }))).toMatchObject({ param: 'temperature' });
  });

  it('reasoning effort none is no extended thinking on Anthropic: no budget, any temperature', () => {
    expect(
      chatRefusal(
        'anthropic',
        'anthropic',
        chat({ reasoning_effort: 'none', max_tokens: 10, temperature: 0.2 }),
      ),
    ).toBeUndefined();
  });

  it('gemini takes only text in a tool result, naming the part (a function response is a JSON object)', () => {
    const messages: ChatRequest['messages'] = [
      { role: 'user', content: 'x' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{}' } }],
      },
      {
        role: 'tool',
        tool_call_id: 't1',
        content: [
          { type: 'text', text: 'see' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
        ],
      },
    ];
    expect(chatRefusal('gemini', 'gemini', chat({ messages }))).toEqual({
      param: 'messages.2.content.1',
      message:
        "'messages.2.content.1' is not supported by gemini: it takes only text in a tool result (send an image or a file in a user message).",
    });
    expect(chatRefusal('anthropic', 'anthropic', chat({ messages }))).toBeUndefined();
    const text = messages.map((m) =>
      m.role === 'tool' ? { ...m, content: [{ type: 'text' as const, text: 'ok' }] } : m,
    );
    expect(chatRefusal('gemini', 'gemini', chat({ messages: text }))).toBeUndefined();
  });

  it('content parts an adapter cannot build are refused by the table, naming the part, as the adapter would refuse them', () => {
    type Part = Exclude<ChatRequest['messages'][number]['content'], string | null | undefined>[number];
    const user = (p: Part): Partial<ChatRequest> => ({
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, p] }],
    });
    const audio: Part = { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } };
    const fileId: Part = { type: 'file', file: { file_id: 'file-abc' } };
    const png: Part = { type: 'file', file: { file_data: 'data:image/png;base64,AAAA' } };
    const pdf: Part = { type: 'file', file: { file_data: 'data:application/pdf;base64,AAAA' } };
    const ftp: Part = { type: 'image_url', image_url: { url: 'ftp://x/y.png' } };
    const web: Part = { type: 'image_url', image_url: { url: 'https://x/y.png' } };
    expect(chatRefusal('anthropic', 'anthropic', chat(user(audio)))).toEqual({
      param: 'messages.0.content.1',
      message:
        "'messages.0.content.1' is not supported by anthropic: it takes no audio input (an input_audio part).",
    });
    expect(chatRefusal('anthropic', 'anthropic', chat(user(fileId)))?.param).toBe('messages.0.content.1');
    expect(chatRefusal('anthropic', 'anthropic', chat(user(png)))?.message).toMatch(/inline PDF/);
    expect(chatRefusal('anthropic', 'anthropic', chat(user(ftp)))?.message).toMatch(/http\(s\) URL/);
    expect(chatRefusal('gemini', 'gemini', chat(user(fileId)))).toEqual({
      param: 'messages.0.content.1',
      message:
        "'messages.0.content.1' is not supported by gemini: it takes a file only inline (file_data as a base64 data: URL; a file_id is OpenAI's stored file).",
    });
    expect(chatRefusal('gemini', 'gemini', chat(user(ftp)))?.param).toBe('messages.0.content.1');
    // What each adapter builds passes.
    for (const p of [pdf, web]) expect(chatRefusal('anthropic', 'anthropic', chat(user(p)))).toBeUndefined();
    for (const p of [audio, png, pdf, web])
      expect(chatRefusal('gemini', 'gemini', chat(user(p)))).toBeUndefined();
    // OpenAI's protocols take every part (their hosts answer for themselves).
    for (const kind of ['openai', 'openai-compatible'])
      for (const p of [audio, fileId, ftp]) expect(chatRefusal(kind, kind, chat(user(p)))).toBeUndefined();
    // A system prompt is text only on both; the first refused part is named, in the order sent.
    const system = chat({
      messages: [
        { role: 'system', content: [{ type: 'text', text: 's' }, web] },
        { role: 'user', content: [audio] },
      ],
    });
    expect(chatRefusal('anthropic', 'anthropic', system)?.param).toBe('messages.0.content.1');
    expect(chatRefusal('gemini', 'gemini', system)?.message).toMatch(/only text in a system message/);
  });

  it('an unknown or prototype-named kind has no rules (the adapters still refuse what they cannot build)', () => {
    expect(chatRefusal('__proto__', 'x', chat({ seed: 1 }))).toBeUndefined();
    expect(hasEmbeddings('__proto__')).toBe(false);
    expect(hasEmbeddings('constructor')).toBe(false);
  });

  it('embeddings: which protocols have them and what they take', () => {
    expect(hasEmbeddings('openai')).toBe(true);
    expect(hasEmbeddings('anthropic')).toBe(false);
    expect(embeddingsRefusal('anthropic', 'anthropic', { model: 'm', input: 'x' })?.message).toMatch(
      /anthropic has no embeddings API/,
    );
    expect(embeddingsRefusal('gemini', 'gemini', { model: 'm', input: [1, 2] })?.param).toBe('input');
    expect(embeddingsRefusal('gemini', 'gemini', { model: 'm', input: Array(101).fill('a') })?.param).toBe(
      'input',
    );
    expect(embeddingsRefusal('gemini', 'gemini', { model: 'm', input: 'a', user: 'u' })?.param).toBe('user');
    expect(
      embeddingsRefusal('openai', 'openai', { model: 'm', input: [[1], [2]], user: 'u' }),
    ).toBeUndefined();
    expect(embeddingsRefusal('openai-compatible', 'llama', { model: 'm', input: [[1]] })?.param).toBe(
      'input',
    );
  });
});
