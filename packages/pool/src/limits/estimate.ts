import { countTokens as countWithSpecials } from 'gpt-tokenizer';
import type { ChatRequest, Usage } from '@faregate/contracts/chat';
import { requestedMaxTokens } from '@faregate/contracts/chat';

/**
 * Text counted as text: a prompt or an answer may contain `<|endoftext|>` and the like, which
 * gpt-tokenizer refuses by default (it throws); here they are ordinary characters.
 */
const NO_SPECIALS = { disallowedSpecial: new Set<string>() };
export const countTokens = (text: string): number => countWithSpecials(text, NO_SPECIALS);

/**
 * Tokens a request may use, for token-per-minute limits: a real tokenizer (o200k) over the prompt
 * text, plus per-message overhead, images at a flat rate, and the output budget. The limiter then
 * corrects the estimate with the provider's actual usage.
 */
export function estimateTokens(req: ChatRequest, defaultMaxOutput: number): number {
  return promptTokens(req) + (requestedMaxTokens(req) ?? defaultMaxOutput);
}

/** What a call streamed before it ended: visible output (text, refusals, tool calls) and reasoning. */
export interface Streamed {
  text: string;
  reasoning: string;
}

/**
 * Usage estimated from the prompt and what was streamed (every choice's); output capped at the
 * request's max tokens for each of its `n` choices.
 */
export function estimateUsage(req: ChatRequest, streamed: Streamed): Usage {
  const reasoning = countTokens(streamed.reasoning);
  const cap = (requestedMaxTokens(req) ?? Number.POSITIVE_INFINITY) * (req.n ?? 1);
  const outputTokens = Math.min(countTokens(streamed.text) + reasoning, cap);
  return {
    inputTokens: promptTokens(req),
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens,
    reasoningTokens: Math.min(reasoning, outputTokens),
  };
}

/**
 * Usage of a call that ended without the provider's final count (it broke, was cut, was cancelled).
 * Input: the provider's count once it reported one (Anthropic's message_start, Gemini's every chunk
 * and an OpenAI-compatible server's running usage carry the prompt's final count, by the model's own
 * tokenizer); else the estimate of the prompt. Output and reasoning: the larger of what the provider
 * reported so far and what the streamed text comes to (reported output lags behind a stream:
 * Anthropic's message_start carries a placeholder, OpenAI counts only at the end, Gemini's count is
 * as of its last chunk). An estimate cannot see what the provider counts and never streamed (cache
 * reads and writes): those are as reported.
 * A call that neither reported nor streamed anything (refused, unreachable) produced nothing, unless
 * the provider `answered` it (a whole answer came with a 2xx, then could not be read or used): it
 * billed that call, at least its prompt.
 */
export function partialUsage(
  req: ChatRequest,
  reported: Usage,
  streamed: Streamed,
  answered = false,
): { usage: Usage; estimated: boolean } {
  const nothing =
    !answered && reported.inputTokens + reported.outputTokens === 0 && !streamed.text && !streamed.reasoning;
  if (nothing) return { usage: reported, estimated: false };
  const e = estimateUsage(req, streamed);
  const usage: Usage = {
    inputTokens: reported.inputTokens > 0 ? reported.inputTokens : e.inputTokens,
    cachedInputTokens: reported.cachedInputTokens,
    cacheWriteTokens: reported.cacheWriteTokens,
    ...(reported.cacheWrite1hTokens ? { cacheWrite1hTokens: reported.cacheWrite1hTokens } : {}),
    outputTokens: Math.max(reported.outputTokens, e.outputTokens),
    reasoningTokens: Math.max(reported.reasoningTokens, e.reasoningTokens),
  };
  const estimated =
    usage.inputTokens > reported.inputTokens ||
    usage.outputTokens > reported.outputTokens ||
    usage.reasoningTokens > reported.reasoningTokens;
  return { usage, estimated };
}

function promptTokens(req: ChatRequest): number {
  let tokens = 3;
  for (const m of req.messages) {
    tokens += 4;
    const c = 'content' in m ? m.content : undefined;
    if (typeof c === 'string') tokens += countTokens(c);
    else if (Array.isArray(c)) {
      for (const p of c) {
        if (p.type === 'text') tokens += countTokens(p.text);
        else if (p.type === 'image_url') tokens += 1_000;
      }
    }
    if (m.role === 'assistant' && m.tool_calls) tokens += countTokens(JSON.stringify(m.tool_calls));
  }
  if (req.tools) tokens += countTokens(JSON.stringify(req.tools));
  return tokens;
}
