import { describe, expect, it } from 'vitest';
import { createAssembler } from '../assemble.ts';
import type { StreamEvent, StreamParser } from '../types.ts';
import { CANONICAL, CASES, type ConformanceCase, type ErrorFixture, fixture } from './cases.ts';

/** Feeds `text` in slices of `size` (Infinity = whole) and returns every event, finish() included. */
function run(parser: StreamParser, text: string, size = Number.POSITIVE_INFINITY): StreamEvent[] {
  const events: StreamEvent[] = [];
  for (let i = 0; i < text.length; i += size) events.push(...parser.push(text.slice(i, i + size)));
  events.push(...parser.finish());
  return events;
}

const assemble = (model: string, events: StreamEvent[]) => {
  const a = createAssembler(model);
  for (const e of events) a.add(e);
  return a.completion();
};

const classify = (c: ConformanceCase, f: ErrorFixture) =>
  c.adapter.classifyError(f.status, new Headers(f.headers ?? {}), fixture(c.dir, f.file));

describe.each(CASES)('conformance (fixtures): $name', (c) => {
  const parser = () => c.adapter.createStreamParser({ model: c.model });
  const build = (stream: boolean, key = 'sk-conformance-key-0001') =>
    c.adapter.buildRequest(CANONICAL, { model: c.model, stream, config: c.config, apiKey: key });

  describe('request translation', () => {
    it('maps system, images, tool round trip, JSON schema and sampling the same way', () => {
      const req = build(false);
      const facts = c.inspect(JSON.parse(req.body ?? '{}'));
      expect(facts).toEqual({
        system: 'Be brief.',
        toolResultFor: 'lookup',
        toolCallArgs: { q: 'planets' },
        toolNames: ['lookup'],
        images: ['base64:image/png', 'url:https://example.com/cat.jpg'],
        jsonSchema: { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] },
        temperature: 0.3,
        topP: 0.9,
        maxTokens: 50,
        stop: ['###'],
        lastUserText: 'Thanks. Which is largest?',
      });
    });

    it('sends the key in a header, never in the URL, and targets the streaming endpoint', () => {
      const plain = build(false);
      const streamed = build(true);
      for (const r of [plain, streamed]) {
        expect(r.method).toBe('POST');
        expect(r.url).not.toContain('sk-conformance-key-0001');
        expect(Object.values(r.headers).join(' ')).toContain('sk-conformance-key-0001');
      }
      expect(streamed.url === plain.url ? JSON.parse(streamed.body ?? '{}').stream : true).toBe(true);
    });
  });

  describe('responses', () => {
    it('text response: content, finish and exact usage', () => {
      const r = c.adapter.parseResponse(JSON.parse(fixture(c.dir, 'response.json')));
      expect(r).toMatchObject({ content: 'Jupiter', finishReason: 'stop', toolCalls: [] });
      expect(r.usage).toEqual(c.usage.text);
      expect(r.model).not.toBe('');
    });

    it('tool response: tool_calls finish, name and JSON arguments, exact usage', () => {
      const r = c.adapter.parseResponse(JSON.parse(fixture(c.dir, 'response-tools.json')));
      expect(r.finishReason).toBe('tool_calls');
      expect(r.toolCalls).toHaveLength(1);
      expect(r.toolCalls[0]?.function.name).toBe('lookup');
      expect(JSON.parse(r.toolCalls[0]?.function.arguments ?? '')).toEqual({ q: 'planets' });
      expect(r.toolCalls[0]?.id).toBeTruthy();
      expect(r.usage).toEqual(c.usage.tools);
    });
  });

  describe('streams', () => {
    for (const [label, size] of [
      ['whole', Number.POSITIVE_INFINITY],
      ['7-char slices', 7],
      ['1-char slices', 1],
    ] as const) {
      it(`text stream (${label}) assembles to the non-streaming completion and ends with 'end'`, () => {
        const events = run(parser(), fixture(c.dir, 'stream.sse'), size);
        expect(events.at(-1)).toEqual({ type: 'end' });
        expect(events.filter((e) => e.type === 'error')).toEqual([]);
        const got = assemble(c.model, events);
        const want = c.adapter.parseResponse(JSON.parse(fixture(c.dir, 'response.json')));
        expect(got).toMatchObject({
          content: want.content,
          finishReason: want.finishReason,
          usage: want.usage,
        });
      });
    }

    it('accepts \\r\\n\\r\\n event endings', () => {
      const crlf = fixture(c.dir, 'stream.sse').replace(/\n/g, '\r\n');
      const events = run(parser(), crlf, 5);
      expect(events.at(-1)).toEqual({ type: 'end' });
      expect(assemble(c.model, events).content).toBe('Jupiter');
    });

    it('tool stream: arguments concatenated, tool_calls finish, usage as the response', () => {
      const events = run(parser(), fixture(c.dir, 'stream-tools.sse'), 11);
      expect(events.at(-1)).toEqual({ type: 'end' });
      const got = assemble(c.model, events);
      expect(got.finishReason).toBe('tool_calls');
      expect(got.toolCalls.map((t) => [t.function.name, JSON.parse(t.function.arguments)])).toEqual([
        ['lookup', { q: 'planets' }],
      ]);
      expect(got.usage).toEqual(c.usage.tools);
    });

    it('usage events are cumulative: the last one is the total', () => {
      const events = run(parser(), fixture(c.dir, 'stream.sse'));
      const usages = events.filter((e) => e.type === 'usage');
      expect(usages.length).toBeGreaterThan(0);
      expect(usages.at(-1)).toEqual({ type: 'usage', usage: c.usage.text });
    });

    it('a stream cut before its terminal marker ends in a retryable error, never a success', () => {
      const events = run(parser(), c.cut(fixture(c.dir, 'stream.sse')));
      expect(events.some((e) => e.type === 'end')).toBe(false);
      const last = events.at(-1);
      expect(last?.type).toBe('error');
      if (last?.type === 'error') {
        expect(last.error).toMatchObject({
          code: 'upstream_error',
          retryable: true,
          message: 'stream ended before completion',
        });
      }
    });

    it('an empty body is an error, not a success', () => {
      expect(run(parser(), '')).toMatchObject([{ type: 'error', error: { code: 'upstream_error' } }]);
    });

    it('unknown events and comments are ignored', () => {
      const full = fixture(c.dir, 'stream.sse');
      const cut = full.indexOf('\n\n') + 2;
      const withUnknown = full.slice(0, cut) + c.unknownEvent + full.slice(cut);
      const events = run(parser(), withUnknown, 13);
      expect(events.at(-1)).toEqual({ type: 'end' });
      expect(assemble(c.model, events)).toMatchObject({ content: 'Jupiter', usage: c.usage.text });
    });

    it('an in-band error after the 200 becomes one terminal error event', () => {
      const events = run(parser(), fixture(c.dir, c.streamError.file), 9);
      const errors = events.filter((e) => e.type === 'error');
      expect(errors).toHaveLength(1);
      expect(events.at(-1)).toBe(errors[0]);
      expect(events.some((e) => e.type === 'end')).toBe(false);
      if (errors[0]?.type === 'error') expect(errors[0].error.code).toBe(c.streamError.code);
    });

    it('invalid JSON in a data line is a retryable error', () => {
      const events = run(parser(), 'data: {"choices": [{"delta": \n\n');
      expect(events).toMatchObject([{ type: 'error', error: { code: 'upstream_error', retryable: true } }]);
    });

    it('a huge line yields a bounded error as soon as it passes the limit', () => {
      const p = c.adapter.createStreamParser({ model: c.model, maxLineBytes: 64 * 1024 });
      const piece = 'a'.repeat(8 * 1024);
      let pushed = 0;
      let events = p.push('data: {"x":"');
      while (!events.some((e) => e.type === 'error') && pushed < 1024 * 1024) {
        events = p.push(piece);
        pushed += piece.length;
      }
      expect(events).toMatchObject([{ type: 'error', error: { code: 'upstream_error' } }]);
      expect(pushed).toBeLessThanOrEqual(64 * 1024 + piece.length);
      // Terminal: nothing more comes out, finish() included.
      expect(p.push('"}\n\n')).toEqual([]);
      expect(p.finish()).toEqual([]);
    });

    it('a huge multi-line event is bounded too', () => {
      const p = c.adapter.createStreamParser({ model: c.model, maxLineBytes: 64 * 1024 });
      const line = `data: ${'b'.repeat(1000)}\n`;
      let events: StreamEvent[] = [];
      for (let i = 0; i < 200 && events.length === 0; i++) events = p.push(line);
      expect(events).toMatchObject([{ type: 'error', error: { code: 'upstream_error' } }]);
    });
  });

  describe('errors', () => {
    it('429 → rate_limit_exceeded, retryable, with the provider retry delay', () => {
      expect(classify(c, c.errors.rateLimited)).toMatchObject({
        code: 'rate_limit_exceeded',
        retryable: true,
        retryAfterMs: c.errors.rateLimited.retryAfterMs,
        upstreamStatus: 429,
      });
    });

    it('quota / spend-cap 429 is classified per the provider policy', () => {
      expect(classify(c, c.errors.quota)).toMatchObject({
        code: 'rate_limit_exceeded',
        retryable: c.errors.quota.retryable,
      });
    });

    it('overloaded (503 / 529) → overloaded, retryable', () => {
      expect(classify(c, c.errors.overloaded)).toMatchObject({ code: 'overloaded', retryable: true });
    });

    it('500 → upstream_error retryable; 504 → upstream_timeout; status 0 → upstream_error', () => {
      expect(classify(c, c.errors.server)).toMatchObject({ code: 'upstream_error', retryable: true });
      expect(c.adapter.classifyError(504, new Headers(), '')).toMatchObject({
        code: 'upstream_timeout',
        retryable: true,
      });
      expect(c.adapter.classifyError(0, new Headers(), '')).toMatchObject({
        code: 'upstream_error',
        retryable: true,
      });
    });

    it('context too long → context_length_exceeded, not retryable', () => {
      expect(classify(c, c.errors.contextLength)).toMatchObject({
        code: 'context_length_exceeded',
        retryable: false,
      });
    });

    it('bad credentials → upstream_auth_error, not retryable, nothing of the key echoed', () => {
      const e = classify(c, c.errors.auth);
      expect(e).toMatchObject({ code: 'upstream_auth_error', retryable: false });
      expect(e.message).not.toMatch(/sk-abc|x-api-key|API key not valid/);
    });

    it('404 → model_not_found; other 400 → invalid_request_error; non-JSON bodies are fine', () => {
      expect(c.adapter.classifyError(404, new Headers(), '<html>nope</html>')).toMatchObject({
        code: 'model_not_found',
      });
      expect(c.adapter.classifyError(400, new Headers(), 'garbage')).toMatchObject({
        code: 'invalid_request_error',
        retryable: false,
      });
    });

    it('retry-after in seconds and as an HTTP date are both honoured', () => {
      const s = c.adapter.classifyError(503, new Headers({ 'retry-after': '3' }), '');
      expect(s.retryAfterMs).toBe(3000);
      const date = new Date(Date.now() + 10_000).toUTCString();
      const d = c.adapter.classifyError(503, new Headers({ 'retry-after': date }), '');
      expect(d.retryAfterMs).toBeGreaterThan(8_000);
      expect(d.retryAfterMs).toBeLessThanOrEqual(10_000);
    });
  });

  describe('models', () => {
    it('parses the listing (ids, paging, context window)', () => {
      const r = c.adapter.parseModels(JSON.parse(fixture(c.dir, 'models.json')));
      expect(r.models.map((m) => m.id)).toEqual(c.models.ids);
      expect(r.nextPageToken).toBe(c.models.nextPageToken);
      if (c.models.contextWindow) expect(r.models[0]?.contextWindow).toBe(c.models.contextWindow);
    });

    it('builds a GET with the key in a header and the page token in the query', () => {
      const r = c.adapter.listModelsRequest(c.config, 'sk-conformance-key-0001', 'PAGE2');
      expect(r.method).toBe('GET');
      expect(r.url).not.toContain('sk-conformance-key-0001');
      if (c.models.nextPageToken) expect(r.url).toContain('PAGE2');
    });
  });
});
