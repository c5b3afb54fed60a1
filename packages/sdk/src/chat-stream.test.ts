import { describe, expect, it } from 'vitest';
import { ChatStream } from './chat-stream.ts';
import { FaregateConnectionError, FaregateError } from './errors.ts';
import type { ChatCompletionChunk } from './types.ts';

/** A streamed response delivered in awkward pieces, as TCP may split it. */
function sse(text: string, pieceSize = 7): ChatStream {
  const bytes = new TextEncoder().encode(text);
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < bytes.length; i += pieceSize) c.enqueue(bytes.slice(i, i + pieceSize));
      c.close();
    },
  });
  const res = new Response(body, {
    headers: { 'content-type': 'text/event-stream', 'x-request-id': 'req_1' },
  });
  return new ChatStream(res, new AbortController());
}

const chunk = (content: string) =>
  `data: ${JSON.stringify({ id: 'req_1', object: 'chat.completion.chunk', created: 1, model: 'm', system_fingerprint: null, choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }] })}\n\n`;

async function drain(s: ChatStream): Promise<ChatCompletionChunk[]> {
  const out: ChatCompletionChunk[] = [];
  for await (const c of s) out.push(c);
  return out;
}

describe('ChatStream', () => {
  it('parses chunks split anywhere and stops at [DONE]', async () => {
    const s = sse(
      `${chunk('Hel')}${chunk('lo, ')}: keep-alive comment\n\n${chunk('wörld')}data: [DONE]\n\n`,
      5,
    );
    expect(s.requestId).toBe('req_1');
    const text = (await drain(s)).map((c) => c.choices[0]?.delta.content).join('');
    expect(text).toBe('Hello, wörld');
  });

  it('throws an in-band error event as a FaregateError, after the chunks before it', async () => {
    const s = sse(
      `${chunk('partial')}data: {"error":{"message":"provider failed","type":"server_error","param":null,"code":"upstream_error"}}\n\n`,
    );
    const seen: string[] = [];
    const err = await (async () => {
      for await (const c of s) seen.push(c.choices[0]?.delta.content ?? '');
    })().catch((e) => e);
    expect(seen).toEqual(['partial']);
    expect(err).toBeInstanceOf(FaregateError);
    expect(err).toMatchObject({
      message: 'provider failed',
      code: 'upstream_error',
      type: 'server_error',
      requestId: 'req_1',
    });
  });

  it('refuses to pass a truncated stream off as complete', async () => {
    await expect(drain(sse(chunk('cut'), 3))).rejects.toBeInstanceOf(FaregateConnectionError);
  });
});
