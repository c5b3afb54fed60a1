import { countTokens, encodeChat } from 'gpt-tokenizer';
import { countTokens as countCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { describe, expect, it } from 'vitest';
import type { ChatMessage, ChatRequest } from '@faregate/contracts/chat';
import { imageTokensMax, inputBound, measurePrompt, upperBound, utf8Bytes } from './tokens.ts';
import { rng } from '@faregate/testing/random';

const EMOJI = ['😀', '🎉', '👍🏽', '👩‍👩‍👧‍👦', '🇳🇴', '❤️', '🧑🏿‍🚀', '🫠'];

/** Text of one kind: the scripts a byte-per-token guess gets wrong in opposite directions. */
function text(kind: string, rand: () => number, n: number): string {
  const pick = <T>(a: readonly T[]) => a[Math.floor(rand() * a.length)]!;
  const out: string[] = [];
  switch (kind) {
    case 'digits':
      for (let i = 0; i < n; i++) out.push(String(Math.floor(rand() * 10)));
      return out.join(rand() < 0.5 ? '' : pick(['', ' ', ',', '.']));
    case 'cjk':
      // BMP ideographs, and some from Extension B (4 bytes in UTF-8, rare in any vocabulary).
      for (let i = 0; i < n; i++)
        out.push(
          String.fromCodePoint(
            rand() < 0.9 ? 0x4e00 + Math.floor(rand() * 0x5200) : 0x20000 + Math.floor(rand() * 0xa6d0),
          ),
        );
      return out.join('');
    case 'emoji':
      for (let i = 0; i < n; i++) out.push(pick(EMOJI));
      return out.join(rand() < 0.5 ? '' : ' ');
    case 'letters':
      for (let i = 0; i < n; i++) out.push(String.fromCharCode(97 + Math.floor(rand() * 26)));
      return out.join(' ');
    case 'long': {
      const words = [
        'the',
        'gateway',
        'holds',
        'budget',
        'naïve',
        'Straße',
        'тест',
        'حساب',
        '\n',
        '\t',
        '{"a":1}',
        '<|endoftext|>',
      ];
      for (let i = 0; i < n * 8; i++) out.push(pick(words));
      return out.join(' ');
    }
    default:
      // Anything: code points across every plane (lone surrogates included).
      for (let i = 0; i < n; i++) out.push(String.fromCharCode(Math.floor(rand() * 0x10000)));
      return out.join('');
  }
}

const KINDS = ['digits', 'cjk', 'emoji', 'letters', 'long', 'any'];

function randomRequest(rand: () => number): ChatRequest {
  const messages: ChatMessage[] = [];
  const count = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < count; i++) {
    const kind = KINDS[Math.floor(rand() * KINDS.length)]!;
    // Some long ones (BPE is quadratic in a run without spaces: CJK, emoji and the like stay shorter).
    const unspaced = kind === 'cjk' || kind === 'emoji' || kind === 'any';
    const long = rand() < 0.2 ? (unspaced ? 2_000 : 5_000 + Math.floor(rand() * 15_000)) : 0;
    const size = long || Math.floor(rand() * 400);
    const role = i === 0 && rand() < 0.3 ? 'system' : i % 2 === 0 ? 'user' : 'assistant';
    messages.push({ role, content: text(kind, rand, size) } as ChatMessage);
  }
  return { model: 'm', messages };
}

// Special-token text a caller sends is ordinary text to the provider (gpt-tokenizer refuses it by default).
const asText = { disallowedSpecial: new Set<string>() };

/** What the prompt could cost in tokens by every count we know of (the worker's TPM estimate among them). */
function knownCounts(req: ChatRequest): Record<string, number> {
  const texts = req.messages.map((m) => (typeof m.content === 'string' ? m.content : ''));
  return {
    o200k: 3 + texts.reduce((s, t) => s + 4 + countTokens(t, asText), 0),
    cl100k: 3 + texts.reduce((s, t) => s + 4 + countCl100k(t, asText), 0),
    o200kChat: encodeChat(
      req.messages.map((m, i) => ({ role: m.role as 'user', content: texts[i]! })),
      'gpt-4o',
      asText,
    ).length,
    // The fake provider's count, and "every UTF-16 unit a token".
    fake: texts.reduce((s, t) => s + Math.ceil(t.length / 4) + 3, 0),
    units: texts.reduce((s, t) => s + t.length, 0),
  };
}

describe('upperBound', () => {
  it('is at least every tokenizer count on randomized prompts (digits, CJK, emoji, one-letter words, long text)', () => {
    const seed = Number(process.env.TOKENS_SEED ?? Date.now() % 1_000_000);
    const rand = rng(seed);
    for (let i = 0; i < 50; i++) {
      const req = randomRequest(rand);
      const bound = upperBound(req);
      for (const [name, n] of Object.entries(knownCounts(req))) {
        if (bound < n) throw new Error(`seed ${seed}, request ${i}: bound ${bound} < ${name} ${n}`);
      }
    }
  });

  it('covers the prompts a 3-bytes-per-token guess under-estimated', () => {
    const words: ChatRequest = {
      model: 'm',
      messages: [{ role: 'user', content: 'a '.repeat(3000).trim() }],
    };
    expect(countTokens('a '.repeat(3000).trim())).toBeGreaterThan(2_900);
    expect(upperBound(words)).toBeGreaterThanOrEqual(3_000 + 7);
    const cjk: ChatRequest = { model: 'm', messages: [{ role: 'user', content: '龘'.repeat(1000) }] };
    expect(upperBound(cjk)).toBeGreaterThanOrEqual(countTokens('龘'.repeat(1000)));
  });

  it('counts text bytes once and prices media per provider', () => {
    const req: ChatRequest = {
      model: 'm',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${'A'.repeat(100_000)}` } },
          ],
        },
      ],
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
    };
    const m = measurePrompt(req);
    expect(m.images).toBe(1);
    // The image's base64 is not read as text.
    expect(m.tokens).toBeLessThan(1_000);
    expect(inputBound(m, { provider: 'anthropic', model: 'claude-haiku-4-5' })).toBe(m.tokens + 1_600);
    expect(inputBound(m, { provider: 'openai', model: 'gpt-4o-mini' })).toBe(m.tokens + 2833 + 8 * 5667);
    expect(imageTokensMax({ provider: 'openai', model: 'gpt-4.1-nano' })).toBeGreaterThanOrEqual(3_779);
    // Tools cost their JSON and the provider's tool-use prompt (Anthropic: 346 tokens).
    expect(m.tokens).toBeGreaterThan(346 + utf8Bytes(JSON.stringify(req.tools)));
  });

  it('counts audio and files by their bytes, files also by their pages', () => {
    const audio: ChatRequest = {
      model: 'm',
      messages: [
        {
          role: 'user',
          content: [{ type: 'input_audio', input_audio: { data: 'B'.repeat(5000), format: 'wav' } }],
        },
      ],
    };
    expect(upperBound(audio)).toBeGreaterThan(5000);
    const pdf: ChatRequest = {
      model: 'm',
      messages: [
        {
          role: 'user',
          content: [{ type: 'file', file: { file_data: 'data:application/pdf;base64,JVBE' } }],
        },
      ],
    };
    expect(upperBound(pdf, { provider: 'anthropic', model: 'x' })).toBeGreaterThan(100 * 1_600);
  });
});
