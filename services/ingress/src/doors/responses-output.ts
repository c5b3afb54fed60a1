import type { ChatCompletion, OpenAIUsage, ThinkingBlock, TokenLogprob } from '@faregate/contracts/chat';
import type {
  ResponsesLogprob,
  ResponsesOutputItem,
  ResponsesOutputText,
  ResponsesReasoningItem,
  ResponsesRequest,
  ResponsesResponse,
  ResponsesUsage,
} from '@faregate/contracts/responses';
import { sealThinking } from './reasoning.ts';

/**
 * The Responses door's answers: the pipeline's chat completion as a `response` object and its
 * output items (shared by the whole answer and the stream's events, so both say the same).
 */

export function responsesUsage(u: OpenAIUsage): ResponsesUsage {
  return {
    input_tokens: u.prompt_tokens,
    // Both fields OpenAI's current SDKs declare (the Python SDK's model requires cache_write_tokens).
    input_tokens_details: {
      cached_tokens: u.prompt_tokens_details.cached_tokens,
      cache_write_tokens: u.prompt_tokens_details.cache_write_tokens ?? 0,
    },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: u.completion_tokens_details.reasoning_tokens },
    total_tokens: u.prompt_tokens + u.completion_tokens,
    ...(u.cost !== undefined ? { cost: u.cost } : {}),
  };
}

/** Output item ids, the same in a stream's events and its final response. */
export const messageId = (id: string) => `msg_${id}`;
export const reasoningId = (id: string) => `rs_${id}`;
export const callItemId = (id: string, index: number) => `fc_${id}_${index}`;

export const outputText = (text: string, logprobs: ResponsesLogprob[] = []): ResponsesOutputText => ({
  type: 'output_text',
  text,
  annotations: [],
  logprobs,
});

/** The `include` that asks for each output token's log probability (`output_text.logprobs`). */
export const LOGPROBS = 'message.output_text.logprobs';

/** The request asked for each output token's log probability (`include`). */
export const wantsLogprobs = (req: ResponsesRequest) => req.include?.includes(LOGPROBS) === true;

const bytesOf = (token: string, bytes: number[] | null) => bytes ?? [...Buffer.from(token, 'utf8')];

/** Chat's token log probabilities in Responses' shape (`bytes` always a list). */
export const responsesLogprobs = (tokens: readonly TokenLogprob[] | null | undefined): ResponsesLogprob[] =>
  (tokens ?? []).map((t) => ({
    token: t.token,
    logprob: t.logprob,
    bytes: bytesOf(t.token, t.bytes),
    top_logprobs: t.top_logprobs.map((a) => ({
      token: a.token,
      logprob: a.logprob,
      bytes: bytesOf(a.token, a.bytes),
    })),
  }));

/**
 * Whether reasoning is shown as a summary: the caller asked for one (`reasoning.summary`). The text
 * is what the provider returned (Anthropic's and Gemini's thinking is already a summary of the
 * model's reasoning); shown either way, never both.
 */
export const asSummary = (req: ResponsesRequest) => req.reasoning?.summary != null;

export const reasoningItem = (
  id: string,
  text: string,
  status: ResponsesReasoningItem['status'],
  summary: boolean,
  blocks: readonly ThinkingBlock[] = [],
): ResponsesReasoningItem => ({
  id,
  type: 'reasoning',
  status,
  summary: summary && text !== '' ? [{ type: 'summary_text', text }] : [],
  content: summary || text === '' ? [] : [{ type: 'reasoning_text', text }],
  // Anthropic's blocks, each signed (redacted ones too), in order: what goes back to it.
  encrypted_content: blocks.length === 0 ? null : sealThinking(blocks),
});

/** The response object around `output` (what the request asked for, echoed as OpenAI does). */
export function envelope(
  req: ResponsesRequest,
  id: string,
  createdAt: number,
  model: string,
): Omit<ResponsesResponse, 'status' | 'incomplete_details' | 'output' | 'usage' | 'completed_at'> {
  return {
    id,
    object: 'response',
    created_at: createdAt,
    error: null,
    model,
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    metadata: req.metadata ?? {},
    parallel_tool_calls: req.parallel_tool_calls ?? true,
    previous_response_id: null,
    reasoning: { effort: req.reasoning?.effort ?? null, summary: req.reasoning?.summary ?? null },
    store: false,
    temperature: req.temperature ?? null,
    top_p: req.top_p ?? null,
    text: {
      format: req.text?.format ?? { type: 'text' },
      ...(req.text?.verbosity != null ? { verbosity: req.text.verbosity } : {}),
    },
    tool_choice: req.tool_choice ?? 'auto',
    tools: req.tools ?? [],
    truncation: 'disabled',
    top_logprobs: req.top_logprobs ?? 0,
    max_tool_calls: req.max_tool_calls ?? null,
    ...(req.service_tier != null ? { service_tier: req.service_tier } : {}),
    ...(req.prompt_cache_key != null ? { prompt_cache_key: req.prompt_cache_key } : {}),
    ...(req.user ? { user: req.user } : {}),
  };
}

function statusOf(r: ChatCompletion): Pick<ResponsesResponse, 'status' | 'incomplete_details'> {
  const finish = r.choices[0]?.finish_reason;
  if (finish === 'length')
    return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter')
    return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

/** The pipeline's answer → the Responses output items (a message, then function calls). */
function outputOf(
  r: ChatCompletion,
  status: 'completed' | 'incomplete',
  summary: boolean,
  logprobs: boolean,
): ResponsesOutputItem[] {
  const m = r.choices[0]?.message;
  const lp = r.choices[0]?.logprobs;
  const out: ResponsesOutputItem[] = [];
  // The model's reasoning comes first, as it did (when the provider returns its text).
  const reasoning = typeof m?.reasoning_content === 'string' ? m.reasoning_content : '';
  const blocks = m?.thinking_blocks ?? [];
  if (reasoning !== '' || blocks.length > 0)
    out.push(reasoningItem(reasoningId(r.id), reasoning, 'completed', summary, blocks));
  const text = m?.content ?? m?.refusal ?? '';
  if (text !== '')
    out.push({
      id: messageId(r.id),
      type: 'message',
      status,
      role: 'assistant',
      content: [
        outputText(text, logprobs ? responsesLogprobs(m?.content != null ? lp?.content : lp?.refusal) : []),
      ],
    });
  for (const [i, t] of (m?.tool_calls ?? []).entries()) {
    out.push({
      id: callItemId(r.id, i),
      type: 'function_call',
      status: 'completed',
      call_id: t.id,
      name: t.function.name,
      arguments: t.function.arguments,
    });
  }
  return out;
}

/**
 * The non-streamed answer of `POST /v1/responses`. `model` keeps the gateway's `provider/model`.
 * `completedAtMs`: when the answer was complete (the done frame's `at`), so a replay of the job
 * says the same; answers stored before frames carried it get the time of reading.
 */
export function toResponse(
  req: ResponsesRequest,
  r: ChatCompletion,
  completedAtMs?: number,
): ResponsesResponse {
  const s = statusOf(r);
  return {
    ...envelope(req, r.id, r.created, r.model),
    // `auto` resolved to the tier that served it, as OpenAI answers.
    ...(req.service_tier === 'auto' ? { service_tier: r.service_tier ?? 'default' } : {}),
    ...s,
    completed_at: s.status === 'completed' ? Math.floor((completedAtMs ?? Date.now()) / 1000) : null,
    output: outputOf(
      r,
      s.status === 'incomplete' ? 'incomplete' : 'completed',
      asSummary(req),
      wantsLogprobs(req),
    ),
    usage: responsesUsage(r.usage),
  };
}
