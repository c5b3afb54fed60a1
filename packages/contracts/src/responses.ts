import { z } from 'zod';
import { byType } from './by-type.ts';
import { Metadata, OpenAIName, ReasoningEffort } from './chat.ts';

/**
 * OpenAI's Responses API request as callers send it to `POST /v1/responses`, the stateless part:
 * stateful fields (`previous_response_id`, `store: true`, `conversation`) are accepted by the schema
 * and refused by the door with a 400 naming them. Unknown fields are refused, as OpenAI does; null
 * is taken for every optional field (as OpenAI takes it: the field is absent).
 */

/**
 * Text or an array of items. A plain union answers only "Invalid input" at its own path when an
 * item is wrong (zod cannot tell which option was meant); here the value's own type picks the
 * option, and the item's issue, at its exact path, is the answer. The union after the check is the
 * type the API reference documents.
 */
function textOr<T extends z.ZodType>(item: T, what: string, bounds?: { min: number; max: number }) {
  const items = bounds ? z.array(item).min(bounds.min).max(bounds.max) : z.array(item);
  return z
    .transform((v: unknown, ctx) => {
      if (typeof v === 'string') return v;
      if (!Array.isArray(v)) {
        ctx.addIssue({ code: 'custom', message: `expected a string or an array of ${what}` });
        return z.NEVER;
      }
      for (const issue of items.safeParse(v).error?.issues ?? []) ctx.addIssue(issue as never);
      return v;
    })
    .pipe(z.union([z.string(), items]));
}

const InputText = z.strictObject({ type: z.literal('input_text'), text: z.string() });
const InputImage = z.strictObject({
  type: z.literal('input_image'),
  image_url: z.string().min(1).nullable().optional(),
  file_id: z.string().nullable().optional(),
  detail: z.enum(['auto', 'low', 'high']).optional(),
});
const OutputText = z.strictObject({
  type: z.literal('output_text'),
  text: z.string(),
  annotations: z.array(z.unknown()).optional(),
  /** Null in the `openai` SDK's dump of an answer that had none. */
  logprobs: z.array(z.unknown()).nullable().optional(),
  /** The `openai` SDK's parse helpers add it to the output they hand back; replayed, it is read-only. */
  parsed: z.unknown().optional(),
});
/**
 * A file (a PDF, say) as a data: URL in `file_data`, or a stored file's `file_id`: carried as the
 * chat request's `file` part. `file_url` is taken to be refused by name (the chat part has no URL).
 */
const InputFile = z.strictObject({
  type: z.literal('input_file'),
  file_data: z.string().min(1).optional(),
  file_id: z.string().min(1).optional(),
  filename: z.string().optional(),
  file_url: z.string().optional(),
});
const Refusal = z.strictObject({ type: z.literal('refusal'), refusal: z.string() });
export const ResponsesInputPart = byType('A content part', [
  InputText,
  InputImage,
  InputFile,
  OutputText,
  Refusal,
]);
export type ResponsesInputPart = z.infer<typeof ResponsesInputPart>;

/**
 * The fields an item has as an output item (an answer's `output`, sent back as input), each null
 * where the `openai` SDK's dump of the item (`model_dump()`) leaves it unset. Read-only: ignored.
 */
const itemMeta = {
  id: z.string().nullable().optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).nullable().optional(),
};

/**
 * What ran a tool call (OpenAI's programmatic tool calling: `direct`, or a program item's code). This
 * gateway runs no programs, so its calls are all the model's own: taken as OpenAI's API takes it on a
 * replayed call or output, and ignored.
 */
const caller = byType('A caller', [
  z.strictObject({ type: z.literal('direct') }),
  z.strictObject({ type: z.literal('program'), caller_id: z.string() }),
])
  .nullable()
  .optional();

export const ResponsesMessageItem = z.strictObject({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: textOr(ResponsesInputPart, 'content parts'),
  /**
   * OpenAI's label of an assistant message as `commentary` or the `final_answer`, which OpenAI asks
   * callers to send back as they got it. The chat request every target is sent has no such label (and
   * this gateway's answers none): taken, so a replayed message is not refused, and left out.
   */
  phase: z.enum(['commentary', 'final_answer']).nullable().optional(),
  ...itemMeta,
});
export const ResponsesFunctionCallItem = z.strictObject({
  type: z.literal('function_call'),
  call_id: z.string().min(1),
  name: z.string().min(1),
  arguments: z.string(),
  /** Added by the `openai` SDK's stream and parse helpers to the items they return; ignored. */
  parsed_arguments: z.unknown().optional(),
  caller,
  /** A namespaced tool's namespace (OpenAI's `namespace` tools, which this gateway does not offer); ignored. */
  namespace: z.string().nullable().optional(),
  /** Whether OpenAI ran the call asynchronously (the SDK's `async_`, dumped by its alias); ignored. */
  async: z.boolean().nullable().optional(),
  ...itemMeta,
});
export const ResponsesFunctionCallOutputItem = z.strictObject({
  type: z.literal('function_call_output'),
  call_id: z.string().min(1),
  output: textOr(byType('An output part', [InputText, InputImage, InputFile]), 'content parts'),
  caller,
  /** The called tool's name and namespace, as OpenAI's output items carry them: the call_id says which call. */
  name: z.string().nullable().optional(),
  namespace: z.string().nullable().optional(),
  ...itemMeta,
});

/**
 * A reasoning item of an earlier response, sent back as clients of a stateless Responses API do
 * (the whole `output` replayed). Its `encrypted_content` carries what the model needs back
 * (Anthropic's signed thinking, through this gateway); `summary` and `content` are for reading.
 */
export const ResponsesReasoningInputItem = z.strictObject({
  type: z.literal('reasoning'),
  summary: z.array(z.strictObject({ type: z.literal('summary_text'), text: z.string() })).optional(),
  content: z
    .array(z.strictObject({ type: z.literal('reasoning_text'), text: z.string() }))
    .nullable()
    .optional(),
  encrypted_content: z.string().nullable().optional(),
  ...itemMeta,
});

export const ResponsesInputItem = byType('An input item', [
  ResponsesMessageItem,
  ResponsesFunctionCallItem,
  ResponsesFunctionCallOutputItem,
  ResponsesReasoningInputItem,
]);
export type ResponsesInputItem = z.infer<typeof ResponsesInputItem>;

export const ResponsesTool = z.strictObject({
  type: z.literal('function'),
  name: OpenAIName,
  description: z.string().nullable().optional(),
  parameters: z.record(z.string(), z.unknown()).nullable().optional(),
  strict: z.boolean().nullable().optional(),
});
export type ResponsesTool = z.infer<typeof ResponsesTool>;

export const ResponsesToolChoice = z.union([
  z.enum(['none', 'auto', 'required']),
  z.strictObject({ type: z.literal('function'), name: z.string().min(1) }),
]);

export const ResponsesFormat = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text') }),
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    name: OpenAIName,
    schema: z.record(z.string(), z.unknown()),
    description: z.string().optional(),
    strict: z.boolean().nullable().optional(),
  }),
]);
export type ResponsesFormat = z.infer<typeof ResponsesFormat>;

export const ResponsesRequest = z.strictObject({
  model: z.string().min(1).max(256),
  input: textOr(ResponsesInputItem, 'input items', { min: 1, max: 4096 }),
  instructions: z.string().nullable().optional(),
  tools: z.array(ResponsesTool).max(128).nullable().optional(),
  tool_choice: ResponsesToolChoice.nullable().optional(),
  parallel_tool_calls: z.boolean().nullable().optional(),
  text: z
    .strictObject({
      format: ResponsesFormat.nullable().optional(),
      verbosity: z.enum(['low', 'medium', 'high']).nullable().optional(),
    })
    .nullable()
    .optional(),
  reasoning: z
    .strictObject({
      /** `none`: no reasoning (OpenAI's newest models take it); the request goes without effort. */
      effort: ReasoningEffort.nullable().optional(),
      /** The reasoning shown as a summary (`summary_text`) rather than as `reasoning_text`. */
      summary: z.enum(['auto', 'concise', 'detailed']).nullable().optional(),
    })
    .nullable()
    .optional(),
  /** At least 16, as OpenAI's. */
  max_output_tokens: z.number().int().min(16).nullable().optional(),
  /** Extra output to include; the door names what it serves and refuses the rest. */
  include: z.array(z.string()).max(16).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  metadata: Metadata.nullable().optional(),
  stream: z.boolean().nullable().optional(),
  user: z.string().max(256).nullable().optional(),
  safety_identifier: z.string().max(256).nullable().optional(),
  /** OpenAI's processing tier: passed to OpenAI; elsewhere only the default (capabilities.ts). */
  service_tier: z.enum(['auto', 'default', 'flex', 'scale', 'priority']).nullable().optional(),
  /** OpenAI's prompt-cache routing hint: passed to OpenAI, dropped elsewhere (it changes no answer). */
  prompt_cache_key: z.string().max(1024).nullable().optional(),
  prompt_cache_retention: z.enum(['in_memory', '24h']).nullable().optional(),
  /** Alternatives per token in `output_text.logprobs` (with `include: ["message.output_text.logprobs"]`). */
  top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
  /** A cap on built-in tool calls: this gateway runs none (function calls are the caller's), so none to cap. */
  max_tool_calls: z.number().int().min(1).nullable().optional(),
  /** Only the default: the gateway never drops input to fit (the response echoes `disabled`). */
  truncation: z.literal('disabled').nullable().optional(),
  // Stateful: refused by the door unless off.
  background: z.boolean().nullable().optional(),
  store: z.boolean().nullable().optional(),
  previous_response_id: z.string().nullable().optional(),
  /** A stored conversation, or a stored prompt template: refused by the door (it keeps neither). */
  conversation: z.unknown().optional(),
  prompt: z.unknown().optional(),
  /** Stream options: `include_obfuscation` pads events against length side channels; none is sent. */
  stream_options: z.strictObject({ include_obfuscation: z.boolean().optional() }).nullable().optional(),
});
export type ResponsesRequest = z.infer<typeof ResponsesRequest>;

export interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number; cache_write_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
  /** What the request cost in USD, every provider call at its listed price (as chat's `usage.cost`). */
  cost?: number;
}

/** A token's log probability in `output_text.logprobs` (Responses' shape: `bytes` always a list). */
export interface ResponsesLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

export interface ResponsesOutputText {
  type: 'output_text';
  text: string;
  annotations: unknown[];
  logprobs: ResponsesLogprob[];
}

/**
 * The model's reasoning text, as OpenAI's reasoning item carries it: in `content` (`reasoning_text`),
 * or in `summary` (`summary_text`) when the request asked for a summary.
 */
export interface ResponsesReasoningItem {
  id: string;
  type: 'reasoning';
  status: 'in_progress' | 'completed' | 'incomplete';
  summary: unknown[];
  content: Array<{ type: 'reasoning_text'; text: string }>;
  /** Anthropic's signed thinking, sealed, for the caller to send back (null when there is none). */
  encrypted_content: string | null;
}

export type ResponsesOutputItem =
  | ResponsesReasoningItem
  | {
      id: string;
      type: 'message';
      status: 'in_progress' | 'completed' | 'incomplete';
      role: 'assistant';
      content: ResponsesOutputText[];
    }
  | {
      id: string;
      type: 'function_call';
      status: 'in_progress' | 'completed' | 'incomplete';
      call_id: string;
      name: string;
      arguments: string;
    };

/** The response object (`object: "response"`), streamed in `response.*` events and answered whole. */
export interface ResponsesResponse {
  id: string;
  object: 'response';
  created_at: number;
  /** When the response completed (unix seconds); null until then, and on an incomplete one. */
  completed_at: number | null;
  status: 'in_progress' | 'completed' | 'incomplete';
  incomplete_details: { reason: 'max_output_tokens' | 'content_filter' } | null;
  error: null;
  model: string;
  output: ResponsesOutputItem[];
  usage: ResponsesUsage | null;
  instructions: string | null;
  max_output_tokens: number | null;
  metadata: Record<string, string>;
  parallel_tool_calls: boolean;
  previous_response_id: null;
  reasoning: { effort: string | null; summary: string | null };
  store: false;
  temperature: number | null;
  top_p: number | null;
  text: { format: ResponsesFormat };
  tool_choice: z.infer<typeof ResponsesToolChoice>;
  tools: ResponsesTool[];
  truncation: 'disabled';
  top_logprobs: number;
  max_tool_calls: number | null;
  service_tier?: string;
  prompt_cache_key?: string;
  user?: string;
}
