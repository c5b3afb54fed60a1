import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ChatRequest } from '@faregate/contracts/chat';
import type { GatewayError } from '@faregate/contracts/errors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callProvider, closeHttp } from './call.ts';
import { openaiAdapter } from './openai/index.ts';
import type { ProviderConfig, StreamEvent } from './types.ts';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

let server: Server;
let base = '';
let handler: Handler = (_req, res) => res.end();
let connections = 0;
const seen: Array<{ url: string; headers: IncomingMessage['headers']; body: string }> = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      seen.push({ url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await closeHttp();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const config = (): ProviderConfig => ({
  id: 'openai',
  kind: 'openai',
  baseUrl: `${base}/v1`,
  apiKeys: ['sk-test-123'],
});
const request: ChatRequest = {
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Largest planet?' }],
};
const call = (extra: Partial<Parameters<typeof callProvider>[0]> = {}) =>
  callProvider({
    adapter: openaiAdapter,
    config: config(),
    apiKey: 'sk-test-123',
    request,
    model: 'gpt-4o-mini',
    stream: true,
    ...extra,
  });

const chunk = (delta: unknown, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-1', model: 'gpt-4o-mini-2024', choices: [{ index: 0, delta, finish_reason: finish }], usage: null })}\n\n`;
const usageChunk = `data: ${JSON.stringify({ id: 'chatcmpl-1', choices: [], usage: { prompt_tokens: 31, completion_tokens: 2, total_tokens: 33, prompt_tokens_details: { cached_tokens: 5 }, completion_tokens_details: { reasoning_tokens: 1 } } })}\n\n`;

function sse(res: ServerResponse, parts: string[], end = true) {
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'x-request-id': 'req_abc',
    'x-ratelimit-remaining-requests': '4999',
    'x-ratelimit-reset-tokens': '6m0s',
  });
  for (const p of parts) res.write(p);
  if (end) res.end();
}

async function rejection(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (e) {
    return e as GatewayError;
  }
  throw new Error('expected the call to fail');
}

describe('callProvider', () => {
  it('streams events as parsed and assembles the completion, usage and rate limits', async () => {
    handler = (_req, res) =>
      sse(res, [
        chunk({ role: 'assistant', content: '' }),
        chunk({ content: 'Jupi' }),
        chunk({ content: 'ter' }),
        chunk({}, 'stop'),
        usageChunk,
        'data: [DONE]\n\n',
      ]);
    const events: StreamEvent[] = [];
    let status = 0;
    const r = await call({ onEvent: (e) => events.push(e), onHeaders: (s) => (status = s) });
    expect(r.completion).toMatchObject({
      content: 'Jupiter',
      finishReason: 'stop',
      upstreamId: 'chatcmpl-1',
      model: 'gpt-4o-mini-2024',
    });
    expect(r.completion.usage).toEqual({
      inputTokens: 31,
      cachedInputTokens: 5,
      cacheWriteTokens: 0,
      outputTokens: 2,
      reasoningTokens: 1,
    });
    expect(events.map((e) => e.type)).toEqual(['start', 'text', 'text', 'finish', 'usage', 'end']);
    expect(status).toBe(200);
    expect(r.upstreamRequestId).toBe('req_abc');
    expect(r.rateLimits).toMatchObject({ remainingRequests: 4999, resetTokensMs: 360_000 });
    expect(r.firstTokenMs).toBeGreaterThanOrEqual(0);
    const sent = seen.at(-1)!;
    expect(sent.url).toBe('/v1/chat/completions');
    expect(sent.headers.authorization).toBe('Bearer sk-test-123');
    expect(JSON.parse(sent.body)).toMatchObject({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('reuses the keep-alive connection across calls', async () => {
    handler = (_req, res) => sse(res, [chunk({ content: 'a' }, 'stop'), 'data: [DONE]\n\n']);
    await call();
    const before = connections;
    await call();
    await call();
    expect(connections).toBe(before);
  });

  it('a stream cut before [DONE] is a retryable error, never a success', async () => {
    handler = (_req, res) => sse(res, [chunk({ content: 'Jupi' })]);
    const e = await rejection(call());
    expect(e).toMatchObject({
      code: 'upstream_error',
      retryable: true,
      message: 'stream ended before completion',
    });
  });

  it('a body that breaks after a burst: complete events count, the unterminated last one too', async () => {
    // One write, then the connection drops: the last event's blank line never came.
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        `${chunk({ content: 'a' })}${chunk({ content: ' b' })}${chunk({ content: ' c' }).slice(0, -1)}`,
        () => res.socket?.destroy(),
      );
    };
    const events: StreamEvent[] = [];
    const e = await rejection(call({ onEvent: (x) => events.push(x) }));
    expect(e).toMatchObject({ code: 'upstream_error', retryable: true });
    expect(events.flatMap((x) => (x.type === 'text' ? [x.text] : []))).toEqual(['a', ' b', ' c']);
  });

  it('a body that breaks half-way through an event: the half is dropped, the events before it count', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`${chunk({ content: 'a' })}${chunk({ content: ' b' }).slice(0, 30)}`, () =>
        res.socket?.destroy(),
      );
    };
    const events: StreamEvent[] = [];
    const e = await rejection(call({ onEvent: (x) => events.push(x) }));
    expect(e).toMatchObject({ code: 'upstream_error', retryable: true });
    expect(events.flatMap((x) => (x.type === 'text' ? [x.text] : []))).toEqual(['a']);
    expect(events.some((x) => x.type === 'end')).toBe(false);
  });

  it('a body that breaks after the terminal event arrived whole is a success', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`${chunk({ content: 'done' }, 'stop')}${usageChunk}data: [DONE]\n`, () =>
        res.socket?.destroy(),
      );
    };
    const r = await call();
    expect(r.completion).toMatchObject({ content: 'done', finishReason: 'stop' });
    expect(r.completion.usage.outputTokens).toBe(2);
  });

  it('classifies a 429 with its retry delay, reading a bounded body', async () => {
    handler = (_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after-ms': '20' });
      res.end(
        JSON.stringify({
          error: { message: 'Rate limit reached', type: 'tokens', param: null, code: 'rate_limit_exceeded' },
        }),
      );
    };
    const e = await rejection(call());
    expect(e).toMatchObject({
      code: 'rate_limit_exceeded',
      retryable: true,
      retryAfterMs: 20,
      upstreamStatus: 429,
    });
  });

  it("a 429's message names the model, the limit and the retry, never the operator's organization or figures", async () => {
    handler = (_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after-ms': '7000' });
      res.end(
        JSON.stringify({
          error: {
            message:
              'Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 7s. Visit https://platform.openai.com/account/rate-limits to learn more.',
            type: 'requests',
            param: null,
            code: 'rate_limit_exceeded',
          },
        }),
      );
    };
    const e = await rejection(call());
    expect(e).toMatchObject({ code: 'rate_limit_exceeded', upstreamStatus: 429, retryAfterMs: 7000 });
    expect(e.message).toBe(
      "provider's rate limit (requests per minute) for gpt-4o-mini was reached; retry in 7s",
    );
  });

  it('non-streaming: a 200 whose body is cut midway names HTTP 200 and the cut, not "unreachable"', async () => {
    const whole = JSON.stringify({
      id: 'c9',
      model: 'gpt-4o-mini',
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'Jupiter' } }],
      usage: { prompt_tokens: 3, completion_tokens: 1 },
    });
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(whole.slice(0, whole.length / 2), () => res.socket?.destroy());
    };
    const e = await rejection(call({ stream: false }));
    expect(e).toMatchObject({ code: 'upstream_error', retryable: true, upstreamStatus: 200 });
    expect(e.message).toMatch(/cut off/);
    expect(e.message).not.toMatch(/unreachable/);
  });

  it('streaming: a 200 stream reset midway names HTTP 200 and the cut, not "unreachable"', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunk({ content: 'Jupi' }), () => res.socket?.destroy());
    };
    const e = await rejection(call());
    expect(e).toMatchObject({ code: 'upstream_error', retryable: true, upstreamStatus: 200 });
    expect(e.message).toMatch(/cut off/);
  });

  it('a 200 that cannot be read (invalid JSON, a stream ended early) names HTTP 200', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"id":"c9","choices":[');
    };
    expect(await rejection(call({ stream: false }))).toMatchObject({
      code: 'upstream_error',
      retryable: true,
      upstreamStatus: 200,
      message: 'provider returned invalid JSON',
    });
    handler = (_req, res) => sse(res, [chunk({ content: 'Jupi' })]);
    expect(await rejection(call())).toMatchObject({
      upstreamStatus: 200,
      message: 'stream ended before completion',
    });
  });

  it('an error answer whose body is cut is still classified by its status', async () => {
    handler = (_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.write('{"error":{"message":"The server had', () => res.socket?.destroy());
    };
    const e = await rejection(call({ stream: false }));
    expect(e).toMatchObject({ code: 'upstream_error', retryable: true, upstreamStatus: 500 });
    expect(e.message).not.toMatch(/unreachable/);
  });

  it('non-streaming: parses the JSON body', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'c2',
          model: 'gpt-4o-mini',
          choices: [{ index: 0, finish_reason: 'length', message: { role: 'assistant', content: 'Jup' } }],
          usage: { prompt_tokens: 3, completion_tokens: 1 },
        }),
      );
    };
    const r = await call({ stream: false });
    expect(r.completion).toMatchObject({
      content: 'Jup',
      finishReason: 'length',
      usage: { inputTokens: 3, outputTokens: 1 },
    });
    expect(JSON.parse(seen.at(-1)!.body).stream).toBeUndefined();
  });

  it('a host that ignores stream:true and answers JSON is relayed as events', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'c3',
          model: 'm',
          choices: [{ index: 0, finish_reason: 'stop', message: { content: 'hi' } }],
          usage: { prompt_tokens: 1, completion_tokens: 1 },
        }),
      );
    };
    const events: StreamEvent[] = [];
    const r = await call({ onEvent: (e) => events.push(e) });
    expect(r.completion.content).toBe('hi');
    expect(events.map((e) => e.type)).toEqual(['start', 'text', 'usage', 'finish', 'end']);
  });

  it('abort via signal → cancelled', async () => {
    handler = (_req, res) => sse(res, [chunk({ content: 'a' })], false);
    const ac = new AbortController();
    const p = call({ signal: ac.signal, onEvent: (e) => e.type === 'text' && ac.abort() });
    const e = await rejection(p);
    expect(e).toMatchObject({ code: 'cancelled', retryable: false });
  });

  it('a signal aborted before the call → cancelled, and no request reaches the provider', async () => {
    const before = seen.length;
    const ac = new AbortController();
    ac.abort();
    const e = await rejection(call({ signal: ac.signal }));
    expect(e).toMatchObject({ code: 'cancelled', retryable: false });
    expect(seen.length).toBe(before);
  });

  it('idle stream → upstream_timeout (retryable)', async () => {
    handler = (_req, res) => sse(res, [chunk({ content: 'a' })], false);
    const e = await rejection(call({ timeouts: { idleMs: 150 } }));
    expect(e).toMatchObject({ code: 'upstream_timeout', retryable: true });
  });

  it('no response headers in time → upstream_timeout', async () => {
    handler = () => {};
    const e = await rejection(call({ timeouts: { firstByteMs: 150 } }));
    expect(e).toMatchObject({ code: 'upstream_timeout', retryable: true });
  });

  it('a whole answer (not a stream) may take longer than firstByteMs to start: only the total bounds it', async () => {
    handler = (_req, res) => {
      const t = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            id: 'chatcmpl-1',
            object: 'chat.completion',
            model: 'o3',
            choices: [{ index: 0, message: { role: 'assistant', content: 'done' }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 5, completion_tokens: 900, total_tokens: 905 },
          }),
        );
      }, 300);
      res.on('close', () => clearTimeout(t));
    };
    const r = await call({ stream: false, timeouts: { firstByteMs: 100, totalMs: 5_000 } });
    expect(r.completion.content).toBe('done');
    expect(r.completion.usage.outputTokens).toBe(900);
    // The total still bounds it.
    const e = await rejection(call({ stream: false, timeouts: { firstByteMs: 100, totalMs: 200 } }));
    expect(e).toMatchObject({ code: 'upstream_timeout' });
  });

  it('total timeout → upstream_timeout', async () => {
    handler = (_req, res) => {
      sse(res, [], false);
      const t = setInterval(() => res.write(': keep-alive\n\n'), 20);
      res.on('close', () => clearInterval(t));
    };
    const e = await rejection(call({ timeouts: { totalMs: 200 } }));
    expect(e).toMatchObject({ code: 'upstream_timeout', retryable: true });
  });

  it('connection refused → retryable upstream_error without internals', async () => {
    const cfg = { ...config(), id: 'dead', baseUrl: 'http://127.0.0.1:1/v1' };
    const e = await rejection(call({ config: cfg }));
    expect(e).toMatchObject({ code: 'upstream_error', retryable: true });
    // Not reached: no status (the route names the call by its code, `dead:upstream_error`), never 0.
    expect(e.upstreamStatus).toBeUndefined();
    expect(e.message).not.toContain('127.0.0.1');
  });

  it('a throwing onEvent callback is an internal_error, not a provider failure', async () => {
    handler = (_req, res) => sse(res, [chunk({ content: 'a' }, 'stop'), 'data: [DONE]\n\n']);
    const e = await rejection(
      call({
        onEvent: () => {
          throw new TypeError('bug');
        },
      }),
    );
    expect(e).toMatchObject({ code: 'internal_error', retryable: false });
  });

  it('translation errors are thrown before any I/O', async () => {
    const before = seen.length;
    const e = await rejection(call({ request: { ...request, top_k: 5 } }));
    expect(e).toMatchObject({ code: 'invalid_request_error', param: 'top_k' });
    expect(seen.length).toBe(before);
  });
});
