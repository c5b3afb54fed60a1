import { classifyInBand } from '../shared/errors.ts';
import { createSseParser, isObj, str } from '../shared/sse.ts';
import type { StreamParser } from '../types.ts';
import { mapStopReason, mergeCounters, stopSequenceOf, toUsage, zeroCounters } from './response.ts';

const TEXT_DELTA_HEAD = '{"type":"content_block_delta","index":';
const TEXT_DELTA_MID = ',"delta":{"type":"text_delta","text":"';

/**
 * Anthropic Messages stream: message_start → content blocks → message_delta(s) → message_stop.
 * Usage is cumulative: message_start holds input (and a placeholder output), each message_delta
 * overwrites what it carries. Counters are merged, never summed.
 */
export function createAnthropicStreamParser(opts: { model: string; maxLineBytes?: number }): StreamParser {
  const counters = zeroCounters();
  /** content block index → tool call index (tool calls are numbered among tool blocks only). */
  const toolIndex = new Map<number, number>();
  /** Tool calls whose arguments have not begun: a call with none closes as `{}` (OpenAI's). */
  const noArgsYet = new Set<number>();
  return createSseParser(
    {
      onRawData(data, sink) {
        // Hot path: most events are text deltas. Parse only their string literal (JSON.parse validates
        // it, escapes included); any other shape takes the full parse.
        if (!data.startsWith(TEXT_DELTA_HEAD) || !data.endsWith('"}}')) return false;
        const start = data.indexOf(TEXT_DELTA_MID, TEXT_DELTA_HEAD.length);
        if (start < 0 || !/^\d{1,9}$/.test(data.slice(TEXT_DELTA_HEAD.length, start))) return false;
        let text: unknown;
        try {
          text = JSON.parse(data.slice(start + TEXT_DELTA_MID.length - 1, -2));
        } catch {
          return false;
        }
        if (typeof text !== 'string') return false;
        if (text !== '') sink.out.push({ type: 'text', text });
        return true;
      },
      onEvent(name, json, sink) {
        if (!isObj(json)) return;
        const out = sink.out;
        switch (name ?? json.type) {
          case 'content_block_delta': {
            const d = json.delta;
            if (!isObj(d)) return;
            if (d.type === 'text_delta') {
              const text = str(d.text);
              if (text) out.push({ type: 'text', text });
            } else if (d.type === 'input_json_delta') {
              const idx = toolIndex.get(typeof json.index === 'number' ? json.index : -1);
              const args = str(d.partial_json);
              if (idx !== undefined && args) {
                noArgsYet.delete(idx);
                out.push({ type: 'tool_call', delta: { index: idx, function: { arguments: args } } });
              }
            } else if (d.type === 'thinking_delta') {
              const text = str(d.thinking);
              if (text) out.push({ type: 'reasoning', text });
            } else if (d.type === 'signature_delta') {
              const signature = str(d.signature);
              if (signature) out.push({ type: 'signature', signature });
            }
            return;
          }
          case 'content_block_start': {
            const b = json.content_block;
            if (!isObj(b)) return;
            if (b.type === 'tool_use') {
              const idx = toolIndex.size;
              toolIndex.set(typeof json.index === 'number' ? json.index : idx, idx);
              noArgsYet.add(idx);
              out.push({
                type: 'tool_call',
                delta: {
                  index: idx,
                  id: str(b.id),
                  type: 'function',
                  function: { name: str(b.name) ?? '', arguments: '' },
                },
              });
            } else if (b.type === 'text' && str(b.text)) {
              out.push({ type: 'text', text: b.text as string });
            } else if (b.type === 'thinking' && str(b.thinking)) {
              out.push({ type: 'reasoning', text: b.thinking as string });
            } else if (b.type === 'redacted_thinking' && str(b.data)) {
              // Whole in its start event (no deltas): opaque, to go back to Anthropic unchanged.
              out.push({ type: 'redacted_thinking', data: b.data as string });
            }
            return;
          }
          case 'message_start': {
            const m = json.message;
            if (!isObj(m)) return;
            out.push({ type: 'start', upstreamId: str(m.id), model: str(m.model) ?? opts.model });
            if (isObj(m.usage)) {
              mergeCounters(counters, m.usage);
              out.push({ type: 'usage', usage: toUsage(counters) });
            }
            return;
          }
          case 'message_delta': {
            const d = json.delta;
            if (isObj(json.usage)) {
              mergeCounters(counters, json.usage);
              out.push({ type: 'usage', usage: toUsage(counters) });
            }
            if (isObj(d) && d.stop_reason != null)
              out.push({
                type: 'finish',
                reason: mapStopReason(d.stop_reason),
                ...stopSequenceOf(d.stop_reason, d.stop_sequence),
              });
            return;
          }
          case 'message_stop':
            sink.end();
            return;
          case 'error': {
            const e = isObj(json.error) ? json.error : {};
            sink.fail(classifyInBand(str(e.type), e.message));
            return;
          }
          case 'content_block_stop': {
            // A tool call that streamed no arguments (Anthropic sends an empty `partial_json`, or
            // none, for a tool that takes none) has `{}` for them, as whole and as OpenAI streams it:
            // a caller joining the pieces must not get "" to parse.
            const idx = toolIndex.get(typeof json.index === 'number' ? json.index : -1);
            if (idx !== undefined && noArgsYet.delete(idx))
              out.push({ type: 'tool_call', delta: { index: idx, function: { arguments: '{}' } } });
            return;
          }
          default:
            // ping and event types newer than this adapter.
            return;
        }
      },
    },
    opts.maxLineBytes,
  );
}
