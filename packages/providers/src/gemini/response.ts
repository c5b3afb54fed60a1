import { newId } from '@faregate/contracts/ids';
import type { Completion, FinishReason, ToolCall, Usage } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { isObj, type Json, num, str } from '../shared/sse.ts';

/** usageMetadata → normalized: candidates exclude thinking, so output = candidates + thoughts. */
export function parseGeminiUsage(u: Json): Usage {
  const thoughts = num(u.thoughtsTokenCount);
  return {
    inputTokens: num(u.promptTokenCount),
    cachedInputTokens: num(u.cachedContentTokenCount),
    cacheWriteTokens: 0,
    outputTokens: num(u.candidatesTokenCount) + thoughts,
    reasoningTokens: thoughts,
  };
}

const FILTERED = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
  'IMAGE_PROHIBITED_CONTENT',
  'IMAGE_RECITATION',
]);

/** Gemini has no tool finish reason: STOP with functionCall parts is a tool call (providers.md §0.2). */
export function mapGeminiFinish(reason: unknown, hasToolCalls: boolean): FinishReason {
  if (reason === 'MAX_TOKENS') return 'length';
  if (typeof reason === 'string' && FILTERED.has(reason)) return 'content_filter';
  return hasToolCalls ? 'tool_calls' : 'stop';
}

export interface PartsOut {
  text: string;
  reasoning: string;
  calls: Array<{ id?: string; name: string; args: unknown }>;
}

export function readParts(candidate: Json): PartsOut {
  const out: PartsOut = { text: '', reasoning: '', calls: [] };
  const content = candidate.content;
  if (!isObj(content) || !Array.isArray(content.parts)) return out;
  for (const p of content.parts) {
    if (!isObj(p)) continue;
    if (typeof p.text === 'string') {
      if (p.thought === true) out.reasoning += p.text;
      else out.text += p.text;
    } else if (isObj(p.functionCall)) {
      out.calls.push({
        id: str(p.functionCall.id),
        name: str(p.functionCall.name) ?? '',
        args: p.functionCall.args ?? {},
      });
    }
  }
  return out;
}

/** A prompt blocked before generation: HTTP 200, no candidates, promptFeedback.blockReason. */
export const isBlockedPrompt = (body: Json): boolean =>
  (!Array.isArray(body.candidates) || body.candidates.length === 0) &&
  isObj(body.promptFeedback) &&
  typeof body.promptFeedback.blockReason === 'string';

export function parseGeminiResponse(body: unknown): Completion {
  if (!isObj(body)) {
    throw new GatewayError({
      code: 'upstream_error',
      message: 'provider returned an unexpected body',
      retryable: true,
    });
  }
  const usage = parseGeminiUsage(isObj(body.usageMetadata) ? body.usageMetadata : {});
  const base = {
    upstreamId: str(body.responseId),
    model: str(body.modelVersion) ?? '',
    refusal: null,
    usage,
  };
  const cand = Array.isArray(body.candidates) ? body.candidates[0] : undefined;
  if (!isObj(cand)) {
    if (isBlockedPrompt(body)) return { ...base, content: '', toolCalls: [], finishReason: 'content_filter' };
    throw new GatewayError({
      code: 'upstream_error',
      message: 'provider returned no candidates',
      retryable: true,
    });
  }
  const parts = readParts(cand);
  const toolCalls: ToolCall[] = parts.calls.map((c) => ({
    id: c.id ?? newCallId(),
    type: 'function',
    function: { name: c.name, arguments: JSON.stringify(c.args) },
  }));
  return {
    ...base,
    content: parts.text === '' && toolCalls.length > 0 ? null : parts.text,
    ...(parts.reasoning ? { reasoning: parts.reasoning } : {}),
    toolCalls,
    finishReason: mapGeminiFinish(cand.finishReason, toolCalls.length > 0),
  };
}

/**
 * An id for a call Gemini gave none: unique within the conversation (a caller sends it back with the
 * result, and the next turn's calls must not repeat it), in OpenAI's `call_…` form.
 */
export const newCallId = (): string => newId('call', 12);
