import { classifyInBand } from '../shared/errors.ts';
import { createSseParser, isObj, type Json, str } from '../shared/sse.ts';
import type { StreamEvent, StreamParser } from '../types.ts';
import { mapOpenAIFinish, matchedStop, parseLogprobs, parseOpenAIUsage } from './response.ts';

/**
 * OpenAI chat.completion.chunk stream: `data:` lines only, ends with `data: [DONE]`. Usage comes in a
 * final `choices: []` chunk (stream_options.include_usage); vLLM with continuous stats sends it on
 * every chunk, and it is cumulative there too, so "last usage seen" is right either way.
 */
export function createOpenAIStreamParser(opts: { model: string; maxLineBytes?: number }): StreamParser {
  let started = false;
  /** Choices (by index) that streamed tool calls: a host's `stop` then means `tool_calls`. */
  const sawToolCalls = new Set<number>();
  // Each chunk's choices carry their `index` (n > 1 interleaves them); index 0 is the default.
  const readChoice = (choice: Json, out: StreamEvent[]) => {
    const index = typeof choice.index === 'number' && choice.index > 0 ? choice.index : 0;
    const at = index === 0 ? {} : { choice: index };
    const delta = choice.delta;
    if (isObj(delta)) {
      const content = delta.content;
      if (typeof content === 'string' && content !== '') out.push({ type: 'text', text: content, ...at });
      const reasoning = delta.reasoning_content ?? delta.reasoning;
      if (typeof reasoning === 'string' && reasoning !== '')
        out.push({ type: 'reasoning', text: reasoning, ...at });
      const refusal = delta.refusal;
      if (typeof refusal === 'string' && refusal !== '') out.push({ type: 'refusal', text: refusal, ...at });
      const tcs = delta.tool_calls;
      if (Array.isArray(tcs)) {
        for (const tc of tcs) {
          if (!isObj(tc)) continue;
          sawToolCalls.add(index);
          const fn = isObj(tc.function) ? tc.function : undefined;
          const args = fn?.arguments;
          out.push({
            type: 'tool_call',
            delta: {
              index: typeof tc.index === 'number' ? tc.index : 0,
              ...(typeof tc.id === 'string' ? { id: tc.id, type: 'function' as const } : {}),
              function: {
                ...(typeof fn?.name === 'string' ? { name: fn.name } : {}),
                ...(args === undefined
                  ? {}
                  : { arguments: typeof args === 'string' ? args : JSON.stringify(args) }),
              },
            },
            ...at,
          });
        }
      }
    }
    const lp = parseLogprobs(choice.logprobs);
    if (lp && (lp.content?.length || lp.refusal?.length)) {
      out.push({
        type: 'logprobs',
        ...(lp.content?.length ? { content: lp.content } : {}),
        ...(lp.refusal?.length ? { refusal: lp.refusal } : {}),
        ...at,
      });
    }
    const fr = choice.finish_reason;
    if (fr !== null && fr !== undefined) {
      const reason = mapOpenAIFinish(fr, sawToolCalls.has(index));
      const stop = reason === 'stop' ? matchedStop(choice.stop_reason) : undefined;
      out.push({ type: 'finish', reason, ...(stop !== undefined ? { stopSequence: stop } : {}), ...at });
    }
  };
  return createSseParser(
    {
      onRawData(data, sink) {
        if (data !== '[DONE]') return false;
        sink.end();
        return true;
      },
      onEvent(name, json, sink) {
        if (name === 'error' || (isObj(json) && json.error !== undefined && json.error !== null)) {
          const e = isObj(json) ? json.error : undefined;
          if (isObj(e)) {
            sink.fail(classifyInBand(str(e.code) ?? str(e.type) ?? String(e.code ?? ''), e.message));
          } else {
            sink.fail(classifyInBand(undefined, typeof e === 'string' ? e : undefined));
          }
          return;
        }
        if (!isObj(json)) return;
        const out = sink.out;
        if (!started) {
          started = true;
          out.push({ type: 'start', upstreamId: str(json.id), model: str(json.model) ?? opts.model });
        }
        const choices = json.choices;
        if (Array.isArray(choices)) {
          for (const choice of choices) if (isObj(choice)) readChoice(choice, out);
        }
        if (isObj(json.usage)) out.push({ type: 'usage', usage: parseOpenAIUsage(json.usage) });
      },
    },
    opts.maxLineBytes,
  );
}
