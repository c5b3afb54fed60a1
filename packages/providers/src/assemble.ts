import {
  type Completion,
  type CompletionChoice,
  type FinishReason,
  type ThinkingBlock,
  type TokenLogprob,
  type ToolCall,
  type Usage,
  zeroUsage,
} from '@faregate/contracts/chat';
import type { StreamEvent } from './types.ts';

/**
 * The completion's thinking fields for Anthropic's blocks: all of them, and the one signature
 * when the thinking is a single signed block (`reasoningSignature`, for readers of one block).
 */
export function thinkingFields(
  blocks: ThinkingBlock[],
): Pick<Completion, 'thinkingBlocks' | 'reasoningSignature'> {
  if (blocks.length === 0) return {};
  const only = blocks.length === 1 && blocks[0]?.type === 'thinking' ? blocks[0] : undefined;
  return { thinkingBlocks: blocks, ...(only ? { reasoningSignature: only.signature } : {}) };
}

/** What one choice (one answer of `n`) accumulates from its stream events. */
class ChoiceParts {
  readonly text: string[] = [];
  readonly reasoning: string[] = [];
  readonly refusal: string[] = [];
  /** Anthropic's thinking blocks closed so far (signed, or redacted), in order. */
  readonly blocks: ThinkingBlock[] = [];
  /** The text of the thinking block open (not yet closed by its signature). */
  open: string[] = [];
  readonly calls = new Map<number, { id?: string; name: string; args: string[] }>();
  finish: FinishReason | undefined;
  stopSequence: string | undefined;
  logprobs: { content?: TokenLogprob[]; refusal?: TokenLogprob[] } | undefined;

  add(e: StreamEvent): void {
    switch (e.type) {
      case 'text':
        this.text.push(e.text);
        break;
      case 'reasoning':
        this.reasoning.push(e.text);
        this.open.push(e.text);
        break;
      case 'signature':
        // A signature closes the thinking block open (Anthropic streams one block at a time and
        // signs each apart): the next reasoning opens another.
        this.blocks.push({ type: 'thinking', thinking: this.open.join(''), signature: e.signature });
        this.open = [];
        break;
      case 'redacted_thinking':
        this.blocks.push({ type: 'redacted_thinking', data: e.data });
        this.open = [];
        break;
      case 'refusal':
        this.refusal.push(e.text);
        break;
      case 'tool_call': {
        const d = e.delta;
        let c = this.calls.get(d.index);
        if (!c) {
          c = { name: '', args: [] };
          this.calls.set(d.index, c);
        }
        if (d.id) c.id = d.id;
        if (d.function?.name) c.name += d.function.name;
        if (d.function?.arguments) c.args.push(d.function.arguments);
        break;
      }
      case 'logprobs': {
        const lp = this.logprobs ?? {};
        if (e.content) lp.content = [...(lp.content ?? []), ...e.content];
        if (e.refusal) lp.refusal = [...(lp.refusal ?? []), ...e.refusal];
        this.logprobs = lp;
        break;
      }
      case 'finish':
        this.finish = e.reason;
        if (e.stopSequence !== undefined) this.stopSequence = e.stopSequence;
        break;
      default:
        break;
    }
  }

  choice(): CompletionChoice {
    const toolCalls: ToolCall[] = [...this.calls.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([i, c]) => ({
        id: c.id ?? `call_${i}`,
        type: 'function',
        function: { name: c.name, arguments: c.args.join('') },
      }));
    const content = this.text.join('');
    const lp = this.logprobs;
    return {
      content: content === '' && (toolCalls.length > 0 || this.refusal.length > 0) ? null : content,
      refusal: this.refusal.length > 0 ? this.refusal.join('') : null,
      ...(this.reasoning.length > 0 ? { reasoning: this.reasoning.join('') } : {}),
      ...thinkingFields(this.blocks),
      toolCalls,
      finishReason: this.finish ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop'),
      ...(this.stopSequence !== undefined ? { stopSequence: this.stopSequence } : {}),
      ...(lp ? { logprobs: { content: lp.content ?? null, refusal: lp.refusal ?? null } } : {}),
    };
  }
}

/**
 * Builds the final Completion out of stream events, per choice (`n > 1` streams interleave them):
 * text and reasoning concatenated, tool calls assembled by index (argument fragments
 * concatenated), log probabilities appended; usage = the last one seen (adapters make it
 * cumulative, and it covers every choice), finish = the last reason seen.
 */
export function createAssembler(model: string) {
  const choices = new Map<number, ChoiceParts>();
  const partsOf = (i: number) => {
    let p = choices.get(i);
    if (!p) {
      p = new ChoiceParts();
      choices.set(i, p);
    }
    return p;
  };
  let usage: Usage = zeroUsage();
  let upstreamId: string | undefined;
  let upstreamModel: string | undefined;
  return {
    add(e: StreamEvent): void {
      switch (e.type) {
        case 'start':
          upstreamId = e.upstreamId ?? upstreamId;
          upstreamModel = e.model ?? upstreamModel;
          break;
        case 'usage':
          usage = e.usage;
          break;
        case 'text':
        case 'reasoning':
        case 'signature':
        case 'redacted_thinking':
        case 'refusal':
        case 'tool_call':
        case 'logprobs':
        case 'finish':
          partsOf(e.choice ?? 0).add(e);
          break;
        default:
          break;
      }
    },
    completion(): Completion {
      const first = partsOf(0).choice();
      const last = Math.max(0, ...choices.keys());
      const more: CompletionChoice[] = [];
      for (let i = 1; i <= last; i++) more.push(partsOf(i).choice());
      return {
        upstreamId,
        model: upstreamModel || model,
        ...first,
        usage,
        ...(more.length > 0 ? { moreChoices: more } : {}),
      };
    },
  };
}
