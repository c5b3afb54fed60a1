import { classifyInBand } from '../shared/errors.ts';
import { createSseParser, isObj, str } from '../shared/sse.ts';
import type { StreamParser } from '../types.ts';
import { mapOpenAIFinish, parseOpenAIUsage } from './response.ts';

/**
 * OpenAI chat.completion.chunk stream: `data:` lines only, ends with `data: [DONE]`. Usage comes in a
 * final `choices: []` chunk (stream_options.include_usage); vLLM with continuous stats sends it on
 * every chunk, and it is cumulative there too, so "last usage seen" is right either way.
 */
export function createOpenAIStreamParser(opts: { model: string; maxLineBytes?: number }): StreamParser {
  let started = false;
  let sawToolCalls = false;
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
        if (Array.isArray(choices) && choices.length > 0) {
          const choice = choices[0];
          if (isObj(choice)) {
            const delta = choice.delta;
            if (isObj(delta)) {
              const content = delta.content;
              if (typeof content === 'string' && content !== '') out.push({ type: 'text', text: content });
              const reasoning = delta.reasoning_content ?? delta.reasoning;
              if (typeof reasoning === 'string' && reasoning !== '')
                out.push({ type: 'reasoning', text: reasoning });
              const refusal = delta.refusal;
              if (typeof refusal === 'string' && refusal !== '') out.push({ type: 'refusal', text: refusal });
              const tcs = delta.tool_calls;
              if (Array.isArray(tcs)) {
                for (const tc of tcs) {
                  if (!isObj(tc)) continue;
                  sawToolCalls = true;
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
                  });
                }
              }
            }
            const fr = choice.finish_reason;
            if (fr !== null && fr !== undefined) {
              out.push({ type: 'finish', reason: mapOpenAIFinish(fr, sawToolCalls) });
            }
          }
        }
        if (isObj(json.usage)) out.push({ type: 'usage', usage: parseOpenAIUsage(json.usage) });
      },
    },
    opts.maxLineBytes,
  );
}
