import {
  type Completion,
  type FinishReason,
  type ToolCall,
  type Usage,
  zeroUsage,
} from '@faregate/contracts/chat';
import type { StreamEvent } from './types.ts';

/**
 * Builds the final Completion out of stream events: text and reasoning concatenated, tool calls
 * assembled by index (argument fragments concatenated), usage = the last one seen (adapters make
 * it cumulative), finish = the last reason seen.
 */
export function createAssembler(model: string) {
  const text: string[] = [];
  const reasoning: string[] = [];
  const refusal: string[] = [];
  const calls = new Map<number, { id?: string; name: string; args: string[] }>();
  let usage: Usage = zeroUsage();
  let finish: FinishReason | undefined;
  let upstreamId: string | undefined;
  let upstreamModel: string | undefined;
  return {
    add(e: StreamEvent): void {
      switch (e.type) {
        case 'start':
          upstreamId = e.upstreamId ?? upstreamId;
          upstreamModel = e.model ?? upstreamModel;
          break;
        case 'text':
          text.push(e.text);
          break;
        case 'reasoning':
          reasoning.push(e.text);
          break;
        case 'refusal':
          refusal.push(e.text);
          break;
        case 'tool_call': {
          const d = e.delta;
          let c = calls.get(d.index);
          if (!c) {
            c = { name: '', args: [] };
            calls.set(d.index, c);
          }
          if (d.id) c.id = d.id;
          if (d.function?.name) c.name += d.function.name;
          if (d.function?.arguments) c.args.push(d.function.arguments);
          break;
        }
        case 'usage':
          usage = e.usage;
          break;
        case 'finish':
          finish = e.reason;
          break;
        default:
          break;
      }
    },
    completion(): Completion {
      const toolCalls: ToolCall[] = [...calls.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([i, c]) => ({
          id: c.id ?? `call_${i}`,
          type: 'function',
          function: { name: c.name, arguments: c.args.join('') },
        }));
      const content = text.join('');
      return {
        upstreamId,
        model: upstreamModel || model,
        content: content === '' && (toolCalls.length > 0 || refusal.length > 0) ? null : content,
        refusal: refusal.length > 0 ? refusal.join('') : null,
        ...(reasoning.length > 0 ? { reasoning: reasoning.join('') } : {}),
        toolCalls,
        finishReason: finish ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop'),
        usage,
      };
    },
  };
}
