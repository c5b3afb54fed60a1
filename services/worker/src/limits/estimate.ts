import { countTokens } from 'gpt-tokenizer';
import type { ChatRequest, Usage } from '@faregate/contracts/chat';
import { requestedMaxTokens } from '@faregate/contracts/chat';

/**
 * Tokens a request may use, for token-per-minute limits: a real tokenizer (o200k) over the prompt
 * text, plus per-message overhead, images at a flat rate, and the output budget. The limiter then
 * corrects the estimate with the provider's actual usage.
 */
export function estimateTokens(req: ChatRequest, defaultMaxOutput: number): number {
  return promptTokens(req) + (requestedMaxTokens(req) ?? defaultMaxOutput);
}

/** Usage of a call whose stream broke before the provider reported it: the prompt and what was streamed. */
export function estimateUsage(req: ChatRequest, streamedText: string): Usage {
  return {
    inputTokens: promptTokens(req),
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: countTokens(streamedText),
    reasoningTokens: 0,
  };
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
