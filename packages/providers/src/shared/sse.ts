import type { GatewayError } from '@faregate/contracts/errors';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { StreamEvent, StreamParser } from '../types.ts';
import { invalidStreamJson, lineTooLong, streamIncomplete } from './errors.ts';

export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

/** What a provider's stream handler sees: where to put events, and how to end the stream. */
export interface SseSink {
  out: StreamEvent[];
  /** Terminal failure: emits one `error` event; later input is ignored. */
  fail(error: GatewayError): void;
  /** Terminal success: emits `end`; later input is ignored. */
  end(): void;
  readonly done: boolean;
}

export interface SseHandlers {
  /** One parsed SSE event. `json` is the parsed `data` (never called for invalid JSON). */
  onEvent(name: string | undefined, json: unknown, sink: SseSink): void;
  /** A data payload that is not JSON (e.g. OpenAI's `[DONE]`). Return true when handled. */
  onRawData?(data: string, sink: SseSink): boolean;
  /** The body ended before `end()`/`fail()`. Default: the stream was cut → retryable error. */
  onFinish?(sink: SseSink): void;
  /**
   * Sees every raw chunk first (Gemini's bare JSON errors) and passes on, through `feed`, what the SSE
   * parser should see. Without it every chunk is fed whole.
   */
  onRawChunk?(chunk: string, sink: SseSink, feed: (text: string) => void): void;
}

/**
 * The SSE framing every adapter shares. eventsource-parser does the line/event splitting (it accepts
 * `\n`, `\r\n` and `\r` endings) and bounds its own buffers with `maxBufferSize`: a line or event over
 * the limit becomes one `error` event instead of megabytes of buffered text. The limit counts UTF-16
 * code units, which for the ASCII-heavy JSON of these streams is the byte count.
 */
export function createSseParser(handlers: SseHandlers, maxLineBytes = DEFAULT_MAX_LINE_BYTES): StreamParser {
  let out: StreamEvent[] = [];
  let done = false;
  let finishing = false;
  const sink: SseSink = {
    get out() {
      return out;
    },
    fail(error) {
      if (done) return;
      done = true;
      out.push({ type: 'error', error });
    },
    end() {
      if (done) return;
      done = true;
      out.push({ type: 'end' });
    },
    get done() {
      return done;
    },
  };
  const onEvent = (ev: EventSourceMessage) => {
    if (done) return;
    const data = ev.data;
    if (handlers.onRawData?.(data, sink)) return;
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      // At the end of the body, unparsable data is a cut-off event, not a protocol error.
      sink.fail(finishing ? streamIncomplete() : invalidStreamJson());
      return;
    }
    handlers.onEvent(ev.event, json, sink);
  };
  const parser = createParser({
    onEvent,
    maxBufferSize: maxLineBytes,
    onError(err) {
      if (err.type === 'max-buffer-size-exceeded') sink.fail(lineTooLong(maxLineBytes));
      // Unknown fields and bad `retry:` values are ignored, as the SDKs do.
    },
  });
  const feed = (text: string) => {
    if (!done && text !== '') parser.feed(text);
  };
  return {
    push(chunk) {
      out = [];
      if (done || chunk === '') return out;
      if (handlers.onRawChunk) handlers.onRawChunk(chunk, sink, feed);
      else parser.feed(chunk);
      return out;
    },
    finish() {
      out = [];
      if (done) return out;
      // A last event whose blank line never came (`data: [DONE]` then EOF) still counts: the SDKs
      // accept it, and a truly cut event fails to parse as JSON anyway.
      finishing = true;
      if (handlers.onRawChunk) handlers.onRawChunk('\n\n', sink, feed);
      else parser.feed('\n\n');
      if (!done && handlers.onFinish) handlers.onFinish(sink);
      if (!done) sink.fail(streamIncomplete());
      return out;
    },
  };
}

/** Narrowing helpers for untrusted JSON. */
export type Json = Record<string, unknown>;
export const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
export const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);
