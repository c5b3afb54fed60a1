import { z } from 'zod';
import { byType } from './by-type.ts';
import { CacheControl as ChatCacheControl } from './chat.ts';
import { withRule } from './refine.ts';

/**
 * Anthropic's Messages request as callers send it to `POST /v1/messages` (providers.md §2.2). Strict
 * objects: an unknown field is refused, never dropped. `cache_control` is taken on every block and
 * tool: an Anthropic target caches up to it (chat.ts `CacheControl`); on a tool_use block, or text in
 * an assistant turn, it is a hint left out.
 */
const CacheControl = ChatCacheControl.nullable().optional();

/**
 * Text or an array of blocks. A plain union answers only "Invalid input" at the content when a block
 * is wrong (zod cannot tell which option was meant); here the value's own type picks the option, and
 * the block's issue, at its exact path, is the answer. Unknown keys alone come out of the union as
 * they are. The union after the check is what the API reference documents.
 */
function textOr<T extends z.ZodType>(block: T) {
  const blocks = z.array(block);
  return z
    .transform((v: unknown, ctx) => {
      if (typeof v === 'string') return v;
      if (!Array.isArray(v)) {
        ctx.addIssue({ code: 'custom', message: 'expected a string or an array of content blocks' });
        return z.NEVER;
      }
      const issues = blocks.safeParse(v).error?.issues ?? [];
      if (issues.some((i) => i.code !== 'unrecognized_keys'))
        for (const issue of issues) ctx.addIssue(issue as never);
      return v;
    })
    .pipe(z.union([z.string(), blocks]));
}

/**
 * `citations` of an earlier answer's text (the Python SDK's `model_dump()` writes `null`): taken and
 * left out. They are what the model cited in that turn, informational history: no target reads them
 * back, and Anthropic's own answer does not depend on them.
 */
const TextBlock = z.strictObject({
  type: z.literal('text'),
  text: z.string(),
  cache_control: CacheControl,
  citations: z.array(z.unknown()).nullable().optional(),
});
const ImageBlock = z.strictObject({
  type: z.literal('image'),
  source: byType('An image source', [
    z.strictObject({
      type: z.literal('base64'),
      media_type: z.enum(['image/jpeg', 'image/png', 'image/gif', 'image/webp']),
      data: z.string().min(1),
    }),
    z.strictObject({ type: z.literal('url'), url: z.string().min(1) }),
  ]),
  cache_control: CacheControl,
});
/**
 * A document: a PDF (base64, or by URL: refused by the door, as files travel inline), plain text, or
 * content blocks (text and images), with an optional title and context, and `citations` (the door
 * refuses `enabled: true`: no answer through the gateway carries citations).
 */
const DocumentBlock = z.strictObject({
  type: z.literal('document'),
  source: byType('A document source', [
    z.strictObject({
      type: z.literal('base64'),
      media_type: z.literal('application/pdf'),
      data: z.string().min(1),
    }),
    z.strictObject({
      type: z.literal('text'),
      media_type: z.literal('text/plain'),
      data: z.string().min(1),
    }),
    z.strictObject({
      type: z.literal('content'),
      content: textOr(byType('A content block', [TextBlock, ImageBlock])),
    }),
    z.strictObject({ type: z.literal('url'), url: z.string().min(1) }),
    z.strictObject({ type: z.literal('file'), file_id: z.string().min(1) }),
  ]),
  title: z.string().nullable().optional(),
  context: z.string().nullable().optional(),
  citations: z.strictObject({ enabled: z.boolean().optional() }).nullable().optional(),
  cache_control: CacheControl,
});
/**
 * A tool call, as the model made it. Answers carry `caller` (who made the call: `direct`, the model,
 * or a server tool such as code execution) and `toolset_name` (the toolset of a toolset member);
 * the Python SDK's `model_dump()` writes both, null when unset. The door takes a direct (or null)
 * caller and a null toolset, and refuses the others by name: the gateway has neither server tools
 * nor toolsets to tie such a call to.
 */
const ToolUseBlock = z.strictObject({
  type: z.literal('tool_use'),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.record(z.string(), z.unknown()),
  cache_control: CacheControl,
  caller: z
    .strictObject({ type: z.string().min(1), tool_id: z.string().optional() })
    .nullable()
    .optional(),
  toolset_name: z.string().nullable().optional(),
});
const ToolResultBlock = z.strictObject({
  type: z.literal('tool_result'),
  tool_use_id: z.string().min(1),
  content: textOr(byType('A tool result block', [TextBlock, ImageBlock, DocumentBlock])).optional(),
  is_error: z.boolean().optional(),
  cache_control: CacheControl,
});
/** Earlier thinking of the model, sent back in a conversation's history. */
const ThinkingBlock = z.strictObject({
  type: z.literal('thinking'),
  thinking: z.string(),
  signature: z.string().optional(),
});
const RedactedThinkingBlock = z.strictObject({ type: z.literal('redacted_thinking'), data: z.string() });

/**
 * Server tool blocks (`server_tool_use`, `web_search_tool_result`, …) are refused by type: the
 * gateway runs no server tools, so no answer through it carries them.
 */
export const AnthropicBlock = byType('A content block', [
  TextBlock,
  ImageBlock,
  DocumentBlock,
  ToolUseBlock,
  ToolResultBlock,
  ThinkingBlock,
  RedactedThinkingBlock,
]);
export type AnthropicBlock = z.infer<typeof AnthropicBlock>;

export const AnthropicMessage = z.strictObject({
  role: z.enum(['user', 'assistant']),
  content: textOr(AnthropicBlock),
});
export type AnthropicMessage = z.infer<typeof AnthropicMessage>;

export const AnthropicTool = z.strictObject({
  type: z.literal('custom').optional(),
  // Its pattern and the gateway's bound of 64 (the chat request's, so every target accepts it) are
  // checked by the door (messages-rules.ts), which names the tool in Anthropic's words.
  name: z.string().min(1),
  description: z.string().optional(),
  // As Anthropic: a JSON schema of an object (`type: "object"` is required).
  input_schema: z.looseObject({ type: z.literal('object') }),
  cache_control: CacheControl,
  // Strict tool use: the call's input follows the schema exactly (`function.strict` in the one request).
  strict: z.boolean().optional(),
  // Example inputs (the door adds them to the description: see `toolOf` in the door).
  input_examples: z.array(z.record(z.string(), z.unknown())).max(64).optional(),
  // Fine-grained tool input streaming (the AI SDK sends it on every streamed tool): how the input
  // arrives, not what it is. Taken and left out: the door streams a call's input as it comes.
  eager_input_streaming: z.boolean().nullable().optional(),
});

const parallel = { disable_parallel_tool_use: z.boolean().optional() };
export const AnthropicToolChoice = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('auto'), ...parallel }),
  z.strictObject({ type: z.literal('any'), ...parallel }),
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('tool'), name: z.string().min(1), ...parallel }),
]);

export const AnthropicThinking = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('enabled'),
    budget_tokens: z.number().int().min(1024),
    // How thinking shows in the answer: `summarized` (as returned) is what the door answers; the
    // door refuses `omitted` by name.
    display: z.enum(['summarized', 'omitted']).nullable().optional(),
  }),
  z.strictObject({ type: z.literal('disabled') }),
]);

/**
 * As Anthropic: every turn has content, and no text block is empty, except in a final assistant
 * turn (a prefill to continue from). An empty turn would otherwise be dropped on the way to the
 * provider and its neighbours merged, or fail there.
 */
function nonEmptyTurns(messages: AnthropicMessage[], ctx: z.RefinementCtx): void {
  messages.forEach((m, i) => {
    if (m.role === 'assistant' && i === messages.length - 1) return;
    if (m.content === '' || (Array.isArray(m.content) && m.content.length === 0)) {
      ctx.addIssue({
        code: 'custom',
        path: [i, 'content'],
        message: 'all messages must have non-empty content except for the optional final assistant message',
      });
      return;
    }
    if (!Array.isArray(m.content)) return;
    m.content.forEach((b, j) => {
      // Anthropic's own checks: empty, then whitespace only (a final assistant prefill may not end in
      // whitespace either, but may be empty).
      if (b.type === 'text' && b.text.trim() === '')
        ctx.addIssue({
          code: 'custom',
          path: [i, 'content', j, 'text'],
          message:
            b.text === ''
              ? 'text content blocks must be non-empty'
              : 'text content blocks must contain non-whitespace text',
        });
    });
  });
}

/** The fields `POST /v1/messages/count_tokens` takes (no `max_tokens`, no sampling). */
const promptFields = {
  model: z.string().min(1).max(256),
  messages: withRule(
    z.array(AnthropicMessage).min(1, 'messages must contain at least one message').max(4096),
    nonEmptyTurns,
  ),
  system: textOr(TextBlock).optional(),
  tools: z.array(AnthropicTool).max(128).optional(),
  tool_choice: AnthropicToolChoice.optional(),
  thinking: AnthropicThinking.optional(),
  // Structured output (counted by count_tokens too, as Anthropic does): the answer's text is JSON following the schema (any target that has it).
  // `effort`: only `high`, Anthropic's default, is taken (the door says why).
  output_config: z
    .strictObject({
      format: z
        .strictObject({ type: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()) })
        .nullable()
        .optional(),
      effort: z.enum(['low', 'medium', 'high', 'xhigh', 'max']).nullable().optional(),
    })
    .optional(),
};

export const AnthropicRequest = z.strictObject({
  ...promptFields,
  max_tokens: z.number().int().positive(),
  stream: z.boolean().optional(),
  // The chat request's bound (the most any target takes).
  stop_sequences: z.array(z.string().min(1)).max(4).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.number().int().nonnegative().optional(),
  metadata: z.strictObject({ user_id: z.string().max(256).nullable().optional() }).optional(),
  service_tier: z.enum(['auto', 'standard_only']).optional(),
  // Anthropic's context-management beta (Claude Code sends it): taken here to be refused by name.
  context_management: z.record(z.string(), z.unknown()).nullable().optional(),
});
export type AnthropicRequest = z.infer<typeof AnthropicRequest>;

export const AnthropicCountTokensRequest = z.strictObject(promptFields);
export type AnthropicCountTokensRequest = z.infer<typeof AnthropicCountTokensRequest>;

export const AnthropicStopReason = z.enum(['end_turn', 'max_tokens', 'stop_sequence', 'tool_use', 'refusal']);
export type AnthropicStopReason = z.infer<typeof AnthropicStopReason>;

export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
  /** The writes by TTL, as Anthropic reports them (a 1-hour write costs more). */
  cache_creation: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number };
}

export type AnthropicContent =
  | { type: 'text'; text: string }
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

/** The non-streamed answer of `POST /v1/messages`. */
export interface AnthropicResponse {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicContent[];
  stop_reason: AnthropicStopReason;
  stop_sequence: string | null;
  usage: AnthropicUsage;
}

/** Anthropic's error `type` values (providers.md §2.5). */
export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'billing_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'timeout_error'
  | 'overloaded_error';

export interface AnthropicErrorBody {
  type: 'error';
  error: { type: AnthropicErrorType; message: string };
  request_id?: string | null;
}
