import { createHash } from 'node:crypto';
import type { Conversation, ReplyChoice, ToolSpec } from './content.ts';
import { checkThinkingBlocks, signThinkingBlocks, textOf, thinkingSignature } from './content.ts';
import { bearer } from './http.ts';
import {
  chunkPieces,
  type ErrorKind,
  type Parsed,
  padding,
  type Protocol,
  type RenderCtx,
  type SseEvent,
} from './protocol.ts';
import { rfc3339 } from './rate-limit.ts';

/** Anthropic Messages (providers.md §2): `event:` lines on every SSE event, RFC 3339 rate-limit resets. */
export function anthropicProtocol(): Protocol {
  const errorBody = (type: string, message: string, requestId: string) =>
    JSON.stringify({ type: 'error', error: { type, message }, request_id: requestId || null });

  function error(e: ErrorKind, requestId: string) {
    const out = (status: number, type: string, message: string, headers?: Record<string, string>) => ({
      status,
      body: errorBody(type, message, requestId),
      headers,
    });
    switch (e.kind) {
      case 'auth_missing':
        return out(401, 'authentication_error', 'x-api-key header is required');
      case 'auth_bad':
        return out(401, 'authentication_error', 'invalid x-api-key');
      case 'bad_request':
        return out(400, 'invalid_request_error', e.message);
      case 'model_not_found':
        return out(404, 'not_found_error', `model: ${e.model}`);
      case 'not_found':
        return out(404, 'not_found_error', e.message);
      case 'rate_limit':
        return out(
          429,
          'rate_limit_error',
          `This request would exceed the rate limit for your organization (org-fake) of ${e.limit} requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.`,
          // retry-after is whole seconds (real); retry-after-ms lets tests retry fast (both SDKs honour it).
          {
            'retry-after': String(Math.ceil(e.retryAfterMs / 1000)),
            'retry-after-ms': String(e.retryAfterMs),
          },
        );
      case 'request_too_large':
        // (Only OpenAI's fake sends it; Anthropic words an over-the-limit request as its rate limit.)
        return out(
          429,
          'rate_limit_error',
          `This request would exceed the rate limit for your organization (org-fake) of ${e.limit} input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. Please reduce the prompt length or the maximum tokens requested, or try again later.`,
        );
      case 'server':
        return out(500, 'api_error', 'Internal server error');
      case 'unavailable':
        return out(503, 'api_error', 'Service unavailable');
      case 'overloaded':
        return out(529, 'overloaded_error', 'Overloaded');
      case 'context_length':
        return out(
          400,
          'invalid_request_error',
          `prompt is too long: ${e.tokens} tokens > ${e.limit} maximum`,
        );
    }
  }

  const ev = (type: string, data: unknown, tokens = 0): SseEvent => ({
    text: `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`,
    tokens,
  });

  return {
    id: 'anthropic',
    auth(req) {
      const key = (req.headers['x-api-key'] as string | undefined) || bearer(req);
      if (!key) return { kind: 'auth_missing' };
      if (key === 'bad-key') return { kind: 'auth_bad' };
      if (!req.headers['anthropic-version']) {
        return { kind: 'bad_request', message: 'anthropic-version: header is required' };
      }
      return undefined;
    },
    parse: parseMessages,
    error,
    headers(requestId, limits) {
      const now = Date.now();
      const { requests, input, output } = limits;
      // `tokens-*` reports whichever of the input/output limits is most restrictive right now.
      const tight =
        input.remaining() / input.capacity <= output.remaining() / output.capacity ? input : output;
      return {
        'request-id': requestId,
        'anthropic-organization-id': '00000000-0000-4000-8000-00000000fa4e',
        'anthropic-ratelimit-requests-limit': String(requests.capacity),
        'anthropic-ratelimit-requests-remaining': String(requests.remaining()),
        'anthropic-ratelimit-requests-reset': rfc3339(now + requests.resetMs()),
        'anthropic-ratelimit-tokens-limit': String(tight.capacity),
        'anthropic-ratelimit-tokens-remaining': String(tight.remaining()),
        'anthropic-ratelimit-tokens-reset': rfc3339(now + tight.resetMs()),
        'anthropic-ratelimit-input-tokens-limit': String(input.capacity),
        // Real servers round the token remainders to the nearest thousand.
        'anthropic-ratelimit-input-tokens-remaining': String(Math.round(input.remaining() / 1000) * 1000),
        'anthropic-ratelimit-input-tokens-reset': rfc3339(now + input.resetMs()),
        'anthropic-ratelimit-output-tokens-limit': String(output.capacity),
        'anthropic-ratelimit-output-tokens-remaining': String(Math.round(output.remaining() / 1000) * 1000),
        'anthropic-ratelimit-output-tokens-reset': rfc3339(now + output.resetMs()),
      };
    },
    reportedModel: (_requested, served) => served,
    json(c) {
      const r = c.reply;
      const thinking = thinkingBlocksOf(c);
      return JSON.stringify({
        id: `msg_01${c.id}`,
        type: 'message',
        role: 'assistant',
        model: c.model,
        content: [
          ...thinking,
          ...(r.tool
            ? Array.from({ length: r.tool.count }, (_, k) => ({
                type: 'tool_use',
                id: toolUseId(c.id, k),
                name: r.tool?.name,
                input: r.tool?.args,
              }))
            : [{ type: 'text', text: r.pieces.join('') }]),
        ],
        ...stopOf(r),
        usage: usage(c, r.completionTokens),
      });
    },
    stream(c) {
      const r = c.reply;
      const out: SseEvent[] = [];
      out.push(
        ev('message_start', {
          type: 'message_start',
          message: {
            id: `msg_01${c.id}`,
            type: 'message',
            role: 'assistant',
            model: c.model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            // output_tokens here is a placeholder, as in real streams; message_delta carries the count.
            usage: usage(c, 1),
          },
        }),
      );
      // With thinking on, the thinking blocks come first, in order: a thinking block's signature
      // closes it (signature_delta); a redacted block comes whole in its start event.
      let index = 0;
      const signed = thinkingBlocksOf(c);
      const pieces = r.thinkingBlocks?.map((b) => (b.type === 'thinking' ? b.pieces : [])) ?? [
        r.thinking ?? [],
      ];
      for (const [k, b] of signed.entries()) {
        out.push(
          ev('content_block_start', {
            type: 'content_block_start',
            index,
            content_block:
              b.type === 'redacted_thinking' ? b : { type: 'thinking', thinking: '', signature: '' },
          }),
        );
        if (index === 0) out.push(ev('ping', { type: 'ping' }));
        if (b.type === 'thinking') {
          for (const group of chunkPieces(pieces[k] ?? [], c.config.tokensPerChunk)) {
            out.push(
              ev(
                'content_block_delta',
                {
                  type: 'content_block_delta',
                  index,
                  delta: { type: 'thinking_delta', thinking: group.join('') },
                },
                // Counted already: the reasoning is produced, and logged, before the stream
                // (generate.ts). Counting each delta again logged the thinking twice.
                0,
              ),
            );
          }
          out.push(
            ev('content_block_delta', {
              type: 'content_block_delta',
              index,
              delta: { type: 'signature_delta', signature: b.signature },
            }),
          );
        }
        out.push(ev('content_block_stop', { type: 'content_block_stop', index }));
        index++;
      }
      if (r.tool) {
        // Parallel calls (directive `calls`): one tool_use block each, in order.
        for (let k = 0; k < r.tool.count; k++) {
          if (k > 0) {
            out.push(ev('content_block_stop', { type: 'content_block_stop', index }));
            index++;
          }
          out.push(
            ev('content_block_start', {
              type: 'content_block_start',
              index,
              content_block: { type: 'tool_use', id: toolUseId(c.id, k), name: r.tool.name, input: {} },
            }),
          );
          if (index === 0) out.push(ev('ping', { type: 'ping' }));
          // A call with no arguments streams one empty `partial_json`, as Anthropic's does: the
          // input `{}` is only in the block's start.
          for (const piece of r.tool.argsJson === '{}' ? [''] : r.tool.argPieces) {
            out.push(
              ev(
                'content_block_delta',
                {
                  type: 'content_block_delta',
                  index,
                  delta: { type: 'input_json_delta', partial_json: piece },
                },
                1,
              ),
            );
          }
        }
      } else {
        out.push(
          ev('content_block_start', {
            type: 'content_block_start',
            index,
            content_block: { type: 'text', text: '' },
          }),
        );
        if (index === 0) out.push(ev('ping', { type: 'ping' }));
        for (const group of chunkPieces(r.pieces, c.config.tokensPerChunk)) {
          out.push(
            ev(
              'content_block_delta',
              { type: 'content_block_delta', index, delta: { type: 'text_delta', text: group.join('') } },
              group.length,
            ),
          );
        }
      }
      out.push(ev('content_block_stop', { type: 'content_block_stop', index }));
      const { service_tier: _tier, ...cumulative } = usage(c, r.completionTokens);
      out.push(
        ev('message_delta', {
          type: 'message_delta',
          delta: stopOf(r),
          usage: cumulative,
        }),
      );
      out.push(ev('message_stop', { type: 'message_stop' }));
      return out;
    },
    streamContentType: () => 'text/event-stream; charset=utf-8',
    malformedEvent: () =>
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":\n\n',
    inbandErrorEvent: () =>
      `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } })}\n\n`,
    hugeEvent: (_c, bytes) => `event: ping\ndata: {"type":"ping","padding":"${padding(bytes)}"}\n\n`,
    unknownEvent: () =>
      'event: fake_unknown_event\ndata: {"type":"fake_unknown_event","note":"clients must ignore unknown events"}\n\n',
    inbandAsStatus: { kind: 'overloaded' },
  };
}

/** The reply's thinking as Anthropic's signed blocks: one block, or the directive's several. */
function thinkingBlocksOf(c: RenderCtx) {
  const r = c.reply;
  if (r.thinkingBlocks) return signThinkingBlocks(r.thinkingBlocks, c.id);
  if (!r.thinking) return [];
  const thinking = r.thinking.join('');
  return [{ type: 'thinking' as const, thinking, signature: thinkingSignature(thinking) }];
}

/** `stop_reason` and `stop_sequence`: Anthropic names the stop sequence that ended the reply. */
function stopOf(r: ReplyChoice): { stop_reason: string; stop_sequence: string | null } {
  if (r.stopSequence !== undefined) return { stop_reason: 'stop_sequence', stop_sequence: r.stopSequence };
  const reason = r.finish === 'tool' ? 'tool_use' : r.finish === 'length' ? 'max_tokens' : 'end_turn';
  return { stop_reason: reason, stop_sequence: null };
}

/** Anthropic's `input_tokens` excludes cache reads (providers.md §0.1). */
function usage(c: RenderCtx, outputTokens: number) {
  const r = c.reply;
  return {
    input_tokens: r.promptTokens - r.cachedTokens - r.cacheWriteTokens,
    cache_creation_input_tokens: r.cacheWriteTokens,
    cache_read_input_tokens: r.cachedTokens,
    cache_creation: {
      ephemeral_5m_input_tokens: r.cacheWriteTokens - r.cacheWrite1hTokens,
      ephemeral_1h_input_tokens: r.cacheWrite1hTokens,
    },
    output_tokens: outputTokens,
    service_tier: 'standard',
  };
}

interface MessagesBody {
  model?: unknown;
  max_tokens?: unknown;
  messages?: unknown;
  system?: unknown;
  stream?: unknown;
  tools?: unknown;
  tool_choice?: { type?: string; name?: string; disable_parallel_tool_use?: boolean };
  stop_sequences?: unknown;
  thinking?: { type?: unknown; budget_tokens?: unknown };
  output_config?: { format?: { type?: unknown; schema?: unknown } | null } | null;
}

/**
 * What Anthropic checks of earlier thinking (its extended-thinking docs): with thinking on, the last
 * assistant turn that called a tool must start with its thinking (`thinking` or `redacted_thinking`)
 * as the model returned it, and a thinking block's signature must be the one minted for its text.
 */
function checkThinking(b: MessagesBody): string | undefined {
  const messages = b.messages as Array<{ role?: string; content?: unknown }>;
  for (const [i, m] of messages.entries()) {
    if (m?.role !== 'assistant' || !Array.isArray(m.content)) continue;
    const content = m.content as Array<Record<string, unknown>>;
    for (const [j, blk] of content.entries()) {
      if (blk?.type === 'thinking') {
        if (typeof blk.thinking !== 'string' || typeof blk.signature !== 'string')
          return `messages.${i}.content.${j}.signature: Field required`;
      } else if (blk?.type === 'redacted_thinking' && typeof blk.data !== 'string')
        return `messages.${i}.content.${j}.data: Field required`;
    }
    // Each block as given (a signature for its text, redacted data untouched), and the blocks of
    // one answer all there, in their order.
    const bad = checkThinkingBlocks(content);
    if (bad?.problem === 'signature')
      return `messages.${i}.content.${bad.at}: Invalid \`signature\` in \`thinking\` block`;
    if (bad?.problem === 'data')
      return `messages.${i}.content.${bad.at}: Invalid \`data\` in \`redacted_thinking\` block`;
    if (bad)
      return `messages.${i}.content.${bad.at}: thinking or redacted_thinking blocks in the latest assistant message cannot be modified. These blocks must remain as they were in the original response.`;
  }
  if (b.thinking?.type !== 'enabled') return undefined;
  const last = messages.findLastIndex((m) => m?.role === 'assistant');
  const turn = messages[last];
  if (!turn || !Array.isArray(turn.content)) return undefined;
  const blocks = turn.content as Array<{ type?: unknown }>;
  if (!blocks.some((blk) => blk?.type === 'tool_use')) return undefined;
  const first = blocks[0]?.type;
  if (first === 'thinking' || first === 'redacted_thinking') return undefined;
  return (
    `messages.${last}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${String(first)}\`. ` +
    'When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the ' +
    'lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from ' +
    'previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at ' +
    'https://docs.claude.com/en/docs/build-with-claude/extended-thinking'
  );
}

function parseMessages(raw: unknown): Parsed | ErrorKind {
  if (!raw || typeof raw !== 'object')
    return { kind: 'bad_request', message: 'Request body must be a JSON object' };
  const b = raw as MessagesBody;
  if (typeof b.model !== 'string' || b.model === '')
    return { kind: 'bad_request', message: 'model: Field required' };
  if (typeof b.max_tokens !== 'number') return { kind: 'bad_request', message: 'max_tokens: Field required' };
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    return { kind: 'bad_request', message: 'messages: at least one message is required' };
  }
  const thinkingError = checkThinking(b);
  if (thinkingError) return { kind: 'bad_request', message: thinkingError };
  const texts: string[] = [];
  const system = textOf(b.system);
  if (system) texts.push(system);
  let lastUserText = '';
  let endsWithUserText = false;
  for (const m of b.messages as Array<{ role?: string; content?: unknown }>) {
    const blocks = typeof m?.content === 'string' ? [{ type: 'text', text: m.content }] : m?.content;
    let t = '';
    let hasToolResult = false;
    if (Array.isArray(blocks)) {
      for (const blk of blocks as Array<Record<string, unknown>>) {
        if (blk?.type === 'text' && typeof blk.text === 'string') t += blk.text;
        else if (blk?.type === 'tool_use') t += JSON.stringify(blk.input ?? {});
        else if (blk?.type === 'tool_result') {
          hasToolResult = true;
          t += textOf(blk.content);
        }
      }
    }
    texts.push(t);
    if (m?.role === 'user') lastUserText = hasToolResult ? lastUserText : t;
    endsWithUserText = m?.role === 'user' && !hasToolResult;
  }
  const tools: ToolSpec[] = [];
  if (Array.isArray(b.tools)) {
    for (const t of b.tools as Array<{ name?: unknown; input_schema?: unknown }>) {
      if (typeof t?.name === 'string') tools.push({ name: t.name, parameters: t.input_schema });
    }
  }
  const choice = b.tool_choice?.type;
  const conversation: Conversation = {
    texts,
    lastUserText,
    endsWithUserText,
    tools,
    toolMode: choice === 'none' ? 'none' : choice === 'any' || choice === 'tool' ? 'forced' : 'auto',
    forcedTool: choice === 'tool' ? b.tool_choice?.name : undefined,
    toolChars: tools.length > 0 ? JSON.stringify(b.tools).length : 0,
    maxTokens: b.max_tokens,
    ...(Array.isArray(b.stop_sequences)
      ? { stop: b.stop_sequences.filter((x): x is string => typeof x === 'string') }
      : {}),
    thinking: b.thinking?.type === 'enabled',
    ...(b.tool_choice?.disable_parallel_tool_use === true ? { parallelToolCalls: false } : {}),
    // Structured output (providers.md §2.2): the answer's text is JSON following the schema.
    ...(b.output_config?.format?.type === 'json_schema'
      ? { json: { schema: b.output_config.format.schema ?? { type: 'object' } } }
      : {}),
  };
  const cachePrefix = cachePrefixOf(b);
  if (cachePrefix) conversation.cachePrefix = cachePrefix;
  return { model: b.model, stream: b.stream === true, includeUsage: false, sse: true, conversation };
}

/**
 * The prompt up to the last `cache_control` breakpoint, in Anthropic's cache order (tools, system,
 * messages), counted as `countPromptTokens` counts the whole prompt (a message's text: a token per 4
 * characters, plus 3), and keyed by the model and that prefix: the same prefix again is a cache hit.
 */
function cachePrefixOf(b: MessagesBody): Conversation['cachePrefix'] {
  const hash = createHash('sha256').update(String(b.model));
  let tokens = 0;
  let found: Conversation['cachePrefix'];
  const mark = (cc: unknown) => {
    if (!cc || typeof cc !== 'object') return;
    const ttl = (cc as { ttl?: unknown }).ttl === '1h' ? 3_600_000 : 300_000;
    found = { key: hash.copy().digest('base64url'), tokens, ttlMs: ttl };
  };
  if (Array.isArray(b.tools)) {
    let chars = 0;
    for (const t of b.tools as Array<Record<string, unknown>>) {
      const json = JSON.stringify(t);
      chars += json.length;
      hash.update(json);
      tokens = Math.ceil(chars / 4);
      mark(t?.cache_control);
    }
  }
  const base = tokens;
  const turn = (blocks: unknown, before: number): number => {
    let chars = 0;
    const list = typeof blocks === 'string' ? [{ type: 'text', text: blocks }] : blocks;
    if (!Array.isArray(list)) return before;
    for (const blk of list as Array<Record<string, unknown>>) {
      const text =
        blk?.type === 'text'
          ? String(blk.text ?? '')
          : blk?.type === 'tool_use'
            ? JSON.stringify(blk.input ?? {})
            : blk?.type === 'tool_result'
              ? textOf(blk.content)
              : '';
      chars += text.length;
      hash.update(JSON.stringify(blk));
      tokens = before + Math.ceil(chars / 4) + 3;
      mark(blk?.cache_control);
    }
    return before + Math.ceil(chars / 4) + 3;
  };
  let at = b.system === undefined ? base : turn(b.system, base);
  for (const m of (b.messages ?? []) as Array<{ content?: unknown }>) at = turn(m?.content, at);
  return found;
}

/** A tool_use block's id: the first call's as before, the parallel ones numbered after it. */
const toolUseId = (id: string, k: number) => (k === 0 ? `toolu_01${id}` : `toolu_01${id}_${k}`);
