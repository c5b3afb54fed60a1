import type { ChatRequest, Usage } from '@faregate/contracts/chat';
import { zeroUsage } from '@faregate/contracts/chat';
import { countTokens } from 'gpt-tokenizer';
import { describe, expect, it } from 'vitest';
import { estimateTokens, estimateUsage, partialUsage } from './estimate.ts';

const req: ChatRequest = { model: 'm', messages: [{ role: 'user', content: 'Tell me about the planets.' }] };
const eleven = ' one two three four five six seven eight nine ten eleven';
const usage = (u: Partial<Usage>): Usage => ({ ...zeroUsage(), ...u });

describe('partialUsage: the reported prompt count; output the larger of reported and streamed', () => {
  it('a placeholder output count (Anthropic message_start) gives way to what was streamed', () => {
    const reported = usage({
      inputTokens: 900,
      cachedInputTokens: 800,
      cacheWriteTokens: 5,
      outputTokens: 1,
    });
    const { usage: u, estimated } = partialUsage(req, reported, { text: eleven, reasoning: '' });
    expect(estimated).toBe(true);
    expect(u.outputTokens).toBe(countTokens(eleven));
    expect(u.outputTokens).toBeGreaterThanOrEqual(11);
    // The provider's own counts stay where they are larger, and what only it can see is kept.
    expect(u).toMatchObject({ inputTokens: 900, cachedInputTokens: 800, cacheWriteTokens: 5 });
  });

  it("a reported prompt count stands even below the estimate: it is the model's own tokenizer's", () => {
    // The probe's case: a digit-heavy prompt Claude counted as 3,022 tokens, o200k as 12,030.
    const digits: ChatRequest = { model: 'm', messages: [{ role: 'user', content: '7 3 9 1 '.repeat(400) }] };
    const reported = usage({ inputTokens: 20, cacheWriteTokens: 8, cacheWrite1hTokens: 8, outputTokens: 1 });
    expect(estimateUsage(digits, { text: '', reasoning: '' }).inputTokens).toBeGreaterThan(20);
    const { usage: u } = partialUsage(digits, reported, { text: eleven, reasoning: '' });
    expect(u).toMatchObject({ inputTokens: 20, cacheWriteTokens: 8, cacheWrite1hTokens: 8 });
    expect(u.outputTokens).toBe(countTokens(eleven));
  });

  it('reported counts larger than the estimate stand, and are not marked estimated', () => {
    const reported = usage({ inputTokens: 500, outputTokens: 300, reasoningTokens: 200 });
    expect(partialUsage(req, reported, { text: ' hi', reasoning: ' hmm' })).toEqual({
      usage: reported,
      estimated: false,
    });
  });

  it('nothing reported: the prompt and the streamed output, reasoning included in the output', () => {
    const { usage: u, estimated } = partialUsage(req, zeroUsage(), {
      text: eleven,
      reasoning: ' let me think',
    });
    expect(estimated).toBe(true);
    expect(u.inputTokens).toBe(estimateUsage(req, { text: '', reasoning: '' }).inputTokens);
    expect(u.inputTokens).toBeGreaterThan(0);
    expect(u.reasoningTokens).toBe(countTokens(' let me think'));
    expect(u.outputTokens).toBe(countTokens(eleven) + u.reasoningTokens);
  });

  it('a call that neither reported nor streamed anything produced nothing', () => {
    expect(partialUsage(req, zeroUsage(), { text: '', reasoning: '' })).toEqual({
      usage: zeroUsage(),
      estimated: false,
    });
  });

  it('special-token text in a prompt or an answer is counted as text, not refused', () => {
    const special: ChatRequest = { ...req, messages: [{ role: 'user', content: 'say <|endoftext|> twice' }] };
    expect(estimateTokens(special, 0)).toBeGreaterThan(0);
    const { usage: u } = partialUsage(special, zeroUsage(), {
      text: '<|endoftext|><|fim_prefix|>',
      reasoning: '',
    });
    expect(u.inputTokens).toBeGreaterThan(0);
    expect(u.outputTokens).toBeGreaterThan(0);
  });

  it('the estimated output never exceeds the request’s max tokens', () => {
    const capped: ChatRequest = { ...req, max_tokens: 5 };
    const { usage: u } = partialUsage(capped, zeroUsage(), { text: eleven, reasoning: ' thinking hard' });
    expect(u.outputTokens).toBe(5);
    expect(u.reasoningTokens).toBeLessThanOrEqual(5);
  });
});
