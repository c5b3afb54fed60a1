import { z } from 'zod';
import { CacheControl as ChatCacheControl } from './chat.ts';

/**
 * Anthropic's Messages request as callers send it to `POST /v1/messages` (providers.md §2.2). Strict
 * objects: an unknown field is refused, never dropped. `cache_control` is taken on every block and
 * tool: an Anthropic target caches up to it (chat.ts `CacheControl`); on a tool_use block, or text in
 * an assistant turn, it is a hint left out.
 */
const CacheControl = ChatCacheControl.nullable().optional();

const TextBlock = z.strictObject({
  type: z.literal('text'),
  text: z.string(),
  cache_control: CacheControl,
  citations: z.array(z.unknown()).nullable().optional(),
});
const ImageBlock = z.strictObject({
  type: z.literal('image'),
  source: z.discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('base64'),
      media_type: z.enum(['image/jpeg', 'image/png', 'image/gif', 'image/webp']),
      data: z.string().min(1),
    }),
    z.strictObject({ type: z.literal('url'), url: z.string().min(1) }),
  ]),
  cache_control: CacheControl,
});
const DocumentBlock = z.strictObject({
  type: z.literal('document'),
  source: z.strictObject({
    type: z.literal('base64'),
    media_type: z.literal('application/pdf'),
    data: z.string().min(1),
  }),
  title: z.string().nullable().optional(),
  context: z.string().nullable().optional(),
  cache_control: CacheControl,
});
const ToolUseBlock = z.strictObject({
  type: z.literal('tool_use'),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.record(z.string(), z.unknown()),
  cache_control: CacheControl,
});
const ToolResultBlock = z.strictObject({
  type: z.literal('tool_result'),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(z.discriminatedUnion('type', [TextBlock, ImageBlock]))]).optional(),
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

export const AnthropicBlock = z.discriminatedUnion('type', [
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
  content: z.union([z.string(), z.array(AnthropicBlock)]),
});
export type AnthropicMessage = z.infer<typeof AnthropicMessage>;

export const AnthropicTool = z.strictObject({
  type: z.literal('custom').optional(),
  // The gateway's own bound on tool names (the chat request's), so every target accepts them.
  name: z.string().min(1).max(64),
  description: z.string().optional(),
  input_schema: z.record(z.string(), z.unknown()),
  cache_control: CacheControl,
});

const parallel = { disable_parallel_tool_use: z.boolean().optional() };
export const AnthropicToolChoice = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('auto'), ...parallel }),
  z.strictObject({ type: z.literal('any'), ...parallel }),
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('tool'), name: z.string().min(1), ...parallel }),
]);

export const AnthropicThinking = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('enabled'), budget_tokens: z.number().int().min(1024) }),
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
  messages: z
    .array(AnthropicMessage)
    .min(1, 'messages must contain at least one message')
    .max(4096)
    .superRefine(nonEmptyTurns),
  system: z.union([z.string(), z.array(TextBlock)]).optional(),
  tools: z.array(AnthropicTool).max(128).optional(),
  tool_choice: AnthropicToolChoice.optional(),
  thinking: AnthropicThinking.optional(),
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
  // Structured output: the answer's text is JSON following the schema (any target that has it).
  output_config: z
    .strictObject({
      format: z
        .strictObject({ type: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()) })
        .optional(),
    })
    .optional(),
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
