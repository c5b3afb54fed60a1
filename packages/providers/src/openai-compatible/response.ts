import type { Completion, FinishReason, ToolCall, Usage } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { isObj, type Json, num, str } from '../shared/sse.ts';

/** OpenAI usage → normalized (prompt_tokens already includes cached; completion includes reasoning). */
export function parseOpenAIUsage(u: Json): Usage {
  const pd = isObj(u.prompt_tokens_details) ? u.prompt_tokens_details : undefined;
  const cd = isObj(u.completion_tokens_details) ? u.completion_tokens_details : undefined;
  return {
    inputTokens: num(u.prompt_tokens),
    // DeepSeek reports cache hits as prompt_cache_hit_tokens instead of prompt_tokens_details.
    cachedInputTokens: num(pd?.cached_tokens) || num(u.prompt_cache_hit_tokens),
    cacheWriteTokens: 0,
    outputTokens: num(u.completion_tokens),
    reasoningTokens: num(cd?.reasoning_tokens),
  };
}

const FINISH: Record<string, FinishReason> = {
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool_calls',
  content_filter: 'content_filter',
  function_call: 'function_call',
  // Seen on compatible hosts (vLLM `abort`, Mistral `model_length`, older `eos`).
  eos: 'stop',
  model_length: 'length',
};

export function mapOpenAIFinish(reason: unknown, hasToolCalls: boolean): FinishReason {
  const r = (typeof reason === 'string' && FINISH[reason]) || 'stop';
  // Some hosts (Ollama) say `stop` even when the model called tools.
  return r === 'stop' && hasToolCalls ? 'tool_calls' : r;
}

function toolCallsOf(v: unknown): ToolCall[] {
  if (!Array.isArray(v)) return [];
  const out: ToolCall[] = [];
  for (const t of v) {
    if (!isObj(t) || !isObj(t.function)) continue;
    const args = t.function.arguments;
    out.push({
      id: str(t.id) ?? `call_${out.length}`,
      type: 'function',
      function: {
        name: str(t.function.name) ?? '',
        // Some hosts return arguments as an object rather than a JSON string.
        arguments: typeof args === 'string' ? args : JSON.stringify(args ?? {}),
      },
    });
  }
  return out;
}

export function parseOpenAIResponse(body: unknown, fallbackModel: string): Completion {
  if (!isObj(body) || !Array.isArray(body.choices)) {
    throw new GatewayError({
      code: 'upstream_error',
      message: 'provider returned an unexpected body',
      retryable: true,
    });
  }
  const choice = body.choices[0];
  const msg = isObj(choice) && isObj(choice.message) ? choice.message : {};
  const toolCalls = toolCallsOf(msg.tool_calls);
  const reasoning = str(msg.reasoning_content) ?? str(msg.reasoning);
  return {
    upstreamId: str(body.id),
    model: str(body.model) ?? fallbackModel,
    content: str(msg.content) ?? null,
    refusal: str(msg.refusal) ?? null,
    ...(reasoning ? { reasoning } : {}),
    toolCalls,
    finishReason: mapOpenAIFinish(isObj(choice) ? choice.finish_reason : undefined, toolCalls.length > 0),
    usage: parseOpenAIUsage(isObj(body.usage) ? body.usage : {}),
  };
}
