import type { Completion, FinishReason, ThinkingBlock, ToolCall, Usage } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { thinkingFields } from '../assemble.ts';
import { isObj, type Json, num, str } from '../shared/sse.ts';

/** Raw Anthropic usage counters; stream events update them field by field (they are cumulative). */
export interface AnthropicCounters {
  input: number;
  cacheWrite: number;
  /** Of `cacheWrite`, the 1-hour writes (`cache_creation.ephemeral_1h_input_tokens`). */
  cacheWrite1h: number;
  cacheRead: number;
  output: number;
}

export const zeroCounters = (): AnthropicCounters => ({
  input: 0,
  cacheWrite: 0,
  cacheWrite1h: 0,
  cacheRead: 0,
  output: 0,
});

/** Overwrite (never add) the counters present in `u`: Anthropic's stream usage is cumulative. */
export function mergeCounters(c: AnthropicCounters, u: Json): void {
  if (typeof u.input_tokens === 'number') c.input = num(u.input_tokens);
  if (typeof u.cache_creation_input_tokens === 'number') c.cacheWrite = num(u.cache_creation_input_tokens);
  if (typeof u.cache_read_input_tokens === 'number') c.cacheRead = num(u.cache_read_input_tokens);
  // The split of the writes by TTL; a 1-hour write is priced apart (2× input against 1.25×).
  if (isObj(u.cache_creation) && typeof u.cache_creation.ephemeral_1h_input_tokens === 'number')
    c.cacheWrite1h = num(u.cache_creation.ephemeral_1h_input_tokens);
  if (typeof u.output_tokens === 'number') c.output = num(u.output_tokens);
}

/** input_tokens excludes cache reads and writes; our inputTokens includes both (providers.md §0.1). */
export function toUsage(c: AnthropicCounters): Usage {
  return {
    inputTokens: c.input + c.cacheWrite + c.cacheRead,
    cachedInputTokens: c.cacheRead,
    cacheWriteTokens: c.cacheWrite,
    ...(c.cacheWrite1h > 0 ? { cacheWrite1hTokens: Math.min(c.cacheWrite1h, c.cacheWrite) } : {}),
    outputTokens: c.output,
    // Thinking tokens are inside output_tokens and not reported apart.
    reasoningTokens: 0,
  };
}

const STOP: Record<string, FinishReason> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

/** The matched stop sequence Anthropic names with `stop_reason: "stop_sequence"`. */
export const stopSequenceOf = (reason: unknown, sequence: unknown): { stopSequence?: string } =>
  reason === 'stop_sequence' && typeof sequence === 'string' ? { stopSequence: sequence } : {};

export const mapStopReason = (r: unknown): FinishReason => (typeof r === 'string' && STOP[r]) || 'stop';

export function parseAnthropicResponse(body: unknown): Completion {
  if (!isObj(body) || !Array.isArray(body.content)) {
    throw new GatewayError({
      code: 'upstream_error',
      message: 'provider returned an unexpected body',
      retryable: true,
    });
  }
  let text = '';
  let reasoning = '';
  // Each thinking block keeps its own signature, redacted ones their data, in order: Anthropic
  // takes them back only so (a tool-use turn with thinking on).
  const blocks: ThinkingBlock[] = [];
  const toolCalls: ToolCall[] = [];
  for (const b of body.content) {
    if (!isObj(b)) continue;
    if (b.type === 'text') text += str(b.text) ?? '';
    else if (b.type === 'thinking') {
      const thinking = str(b.thinking) ?? '';
      const signature = str(b.signature);
      reasoning += thinking;
      if (signature) blocks.push({ type: 'thinking', thinking, signature });
    } else if (b.type === 'redacted_thinking') {
      const data = str(b.data);
      if (data) blocks.push({ type: 'redacted_thinking', data });
    } else if (b.type === 'tool_use') {
      toolCalls.push({
        id: str(b.id) ?? `toolu_${toolCalls.length}`,
        type: 'function',
        function: { name: str(b.name) ?? '', arguments: JSON.stringify(b.input ?? {}) },
      });
    }
  }
  const c = zeroCounters();
  if (isObj(body.usage)) mergeCounters(c, body.usage);
  return {
    upstreamId: str(body.id),
    model: str(body.model) ?? '',
    content: text === '' && toolCalls.length > 0 ? null : text,
    refusal: null,
    ...(reasoning ? { reasoning } : {}),
    ...thinkingFields(blocks),
    toolCalls,
    finishReason: mapStopReason(body.stop_reason),
    ...stopSequenceOf(body.stop_reason, body.stop_sequence),
    usage: toUsage(c),
  };
}
