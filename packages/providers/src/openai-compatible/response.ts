import type {
  ChoiceLogprobs,
  Completion,
  CompletionChoice,
  FinishReason,
  TokenLogprob,
  ToolCall,
  Usage,
} from '@faregate/contracts/chat';
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
    // Predicted Outputs (present only when the request predicted).
    ...(num(cd?.accepted_prediction_tokens)
      ? { acceptedPredictionTokens: num(cd?.accepted_prediction_tokens) }
      : {}),
    ...(num(cd?.rejected_prediction_tokens)
      ? { rejectedPredictionTokens: num(cd?.rejected_prediction_tokens) }
      : {}),
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

const bytesOf = (v: unknown): number[] | null =>
  Array.isArray(v) && v.every((b) => Number.isInteger(b)) ? (v as number[]) : null;

/** A log probability as the provider sent it (≤ 0; OpenAI writes -9999 for the least likely). */
const logprobOf = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function tokensOf(v: unknown): TokenLogprob[] | null {
  if (!Array.isArray(v)) return null;
  const out: TokenLogprob[] = [];
  for (const t of v) {
    if (!isObj(t) || typeof t.token !== 'string') continue;
    out.push({
      token: t.token,
      logprob: logprobOf(t.logprob),
      bytes: bytesOf(t.bytes),
      top_logprobs: Array.isArray(t.top_logprobs)
        ? t.top_logprobs
            .filter((x): x is Json => isObj(x) && typeof x.token === 'string')
            .map((x) => ({
              token: x.token as string,
              logprob: logprobOf(x.logprob),
              bytes: bytesOf(x.bytes),
            }))
        : [],
    });
  }
  return out;
}

/** A choice's `logprobs` (`{content, refusal}`), or undefined when the provider sent none. */
export function parseLogprobs(v: unknown): ChoiceLogprobs | undefined {
  if (!isObj(v)) return undefined;
  return { content: tokensOf(v.content), refusal: tokensOf(v.refusal) };
}

/** vLLM's `stop_reason`: the stop string that ended the choice (an integer is a stop token id). */
export const matchedStop = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function choiceOf(choice: unknown): CompletionChoice {
  const c = isObj(choice) ? choice : {};
  const msg = isObj(c.message) ? c.message : {};
  const toolCalls = toolCallsOf(msg.tool_calls);
  const reasoning = str(msg.reasoning_content) ?? str(msg.reasoning);
  const logprobs = parseLogprobs(c.logprobs);
  const finishReason = mapOpenAIFinish(c.finish_reason, toolCalls.length > 0);
  const stop = finishReason === 'stop' ? matchedStop(c.stop_reason) : undefined;
  return {
    content: str(msg.content) ?? null,
    refusal: str(msg.refusal) ?? null,
    ...(reasoning ? { reasoning } : {}),
    toolCalls,
    finishReason,
    ...(stop !== undefined ? { stopSequence: stop } : {}),
    ...(logprobs ? { logprobs } : {}),
  };
}

export function parseOpenAIResponse(body: unknown, fallbackModel: string): Completion {
  // No choices is no answer (as no `choices` at all): retried or fallen back from, never a success.
  if (!isObj(body) || !Array.isArray(body.choices) || body.choices.length === 0) {
    throw new GatewayError({
      code: 'upstream_error',
      message: 'provider returned an unexpected body',
      retryable: true,
    });
  }
  // Choices in index order (OpenAI sends them so; `index` decides where a host says otherwise).
  const byIndex = [...body.choices.entries()]
    .map(([i, c]) => ({ i: isObj(c) && typeof c.index === 'number' ? c.index : i, c }))
    .sort((a, b) => a.i - b.i)
    .map((x) => choiceOf(x.c));
  const [first = choiceOf(undefined), ...more] = byIndex;
  return {
    upstreamId: str(body.id),
    model: str(body.model) ?? fallbackModel,
    ...first,
    usage: parseOpenAIUsage(isObj(body.usage) ? body.usage : {}),
    ...(more.length > 0 ? { moreChoices: more } : {}),
  };
}
