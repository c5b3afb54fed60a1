import { GatewayError } from '@faregate/contracts/errors';
import { lineTooLong } from '../shared/errors.ts';
import { createSseParser, DEFAULT_MAX_LINE_BYTES, isObj, type SseSink, str } from '../shared/sse.ts';
import type { StreamParser } from '../types.ts';
import { classifyGeminiErrorObject } from './errors.ts';
import { isBlockedPrompt, mapGeminiFinish, newCallId, parseGeminiUsage, readParts } from './response.ts';

/** Index of a `{` that starts a line inside `chunk`, or -1. */
function bareStart(chunk: string): number {
  const lf = chunk.indexOf('\n{');
  const cr = chunk.indexOf('\r{');
  const i = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
  return i < 0 ? -1 : i + 1;
}

const badBareJson = () =>
  new GatewayError({
    code: 'upstream_error',
    message: 'provider sent a non-SSE body in its stream',
    retryable: true,
  });

/**
 * Gemini `streamGenerateContent?alt=sse`: `data:` events, no event names, no [DONE]. Each chunk has a
 * text delta and cumulative usageMetadata; the last has finishReason, so the body ending after a
 * finishReason is the success marker. A mid-stream error is a bare JSON object with no `data:` prefix.
 */
export function createGeminiStreamParser(opts: { model: string; maxLineBytes?: number }): StreamParser {
  const max = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  let started = false;
  let finished = false;
  let toolCalls = 0;
  let atLineStart = true;
  let bare: string | undefined;

  const tryBare = (sink: SseSink) => {
    if (bare === undefined) return;
    let body: unknown;
    try {
      body = JSON.parse(bare);
    } catch {
      return; // incomplete: wait for more
    }
    const first = Array.isArray(body) ? body[0] : body;
    if (isObj(first) && isObj(first.error)) {
      const code = typeof first.error.code === 'number' ? first.error.code : 500;
      sink.fail(classifyGeminiErrorObject(code, first.error));
    } else sink.fail(badBareJson());
  };

  return createSseParser(
    {
      onRawChunk(chunk, sink, feed) {
        if (bare === undefined) {
          // A JSON object starting a line is not SSE: it is the error body (js-genai does the same check).
          const at = atLineStart && chunk.charCodeAt(0) === 123 ? 0 : bareStart(chunk);
          atLineStart = chunk.endsWith('\n') || chunk.endsWith('\r');
          if (at < 0) return feed(chunk);
          feed(chunk.slice(0, at));
          bare = '';
          chunk = chunk.slice(at);
        }
        bare += chunk;
        if (bare.length > max) sink.fail(lineTooLong(max));
        else tryBare(sink);
      },
      onEvent(_name, json, sink) {
        if (!isObj(json)) return;
        const out = sink.out;
        if (isObj(json.error)) {
          const code = typeof json.error.code === 'number' ? json.error.code : 500;
          sink.fail(classifyGeminiErrorObject(code, json.error));
          return;
        }
        if (!started) {
          started = true;
          out.push({
            type: 'start',
            upstreamId: str(json.responseId),
            model: str(json.modelVersion) ?? opts.model,
          });
        }
        const cand = Array.isArray(json.candidates) ? json.candidates[0] : undefined;
        let reason: unknown;
        if (isObj(cand)) {
          const parts = readParts(cand);
          if (parts.reasoning) out.push({ type: 'reasoning', text: parts.reasoning });
          if (parts.text) out.push({ type: 'text', text: parts.text });
          for (const c of parts.calls) {
            const index = toolCalls++;
            // Gemini sends each call whole; ids are ours (unique) unless Gemini gave one.
            out.push({
              type: 'tool_call',
              delta: {
                index,
                id: c.id ?? newCallId(),
                type: 'function',
                function: { name: c.name, arguments: JSON.stringify(c.args) },
              },
            });
          }
          reason = cand.finishReason;
        }
        if (isObj(json.usageMetadata))
          out.push({ type: 'usage', usage: parseGeminiUsage(json.usageMetadata) });
        if (reason !== undefined && reason !== null) {
          finished = true;
          out.push({ type: 'finish', reason: mapGeminiFinish(reason, toolCalls > 0) });
        } else if (isBlockedPrompt(json)) {
          finished = true;
          out.push({ type: 'finish', reason: 'content_filter' });
        }
      },
      onFinish(sink) {
        if (bare !== undefined) sink.fail(badBareJson());
        else if (finished) sink.end();
      },
    },
    max,
  );
}
