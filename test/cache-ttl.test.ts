import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalUsage } from './support/calls.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Anthropic prices a 1-hour cache write (`cache_control.ttl: "1h"`) at twice the input price, a
 * 5-minute one at 1.25×. An outside probe found both billed as 5-minute writes (37.5 % under cost
 * on the write). Through both doors, with the official SDKs: the split reaches the ledger, each
 * write is billed at its own price, and the Messages door reports Anthropic's `cache_creation`.
 */
let stack: Stack;
let anthropic: Anthropic;
let openai: OpenAI;
beforeAll(async () => {
  stack = await startStack({ providers: ['anthropic'] });
  anthropic = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
  openai = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

async function row(requestId: string) {
  await finalUsage(stack, requestId);
  const r = await stack.sql.query(
    `SELECT input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
            cost_micros::text AS cost FROM usage_events WHERE request_id = $1 AND final`,
    [requestId],
  );
  return r.rows[0] as Record<string, number | string>;
}

// claude-haiku-4-5 per 1M tokens: input $1, 5-minute write $1.25, 1-hour write $2, read $0.10, output $5.
const cost = (plain: number, write5m: number, write1h: number, read: number, output: number) =>
  Math.ceil(plain * 1 + write5m * 1.25 + write1h * 2 + read * 0.1 + output * 5 - 1e-9);

describe('1-hour prompt-cache writes', () => {
  it('the Messages door: written for an hour, billed at 2× input, reported split as Anthropic does', async () => {
    const handbook = `Handbook ${Date.now()}: ${'the one-hour handbook says many things. '.repeat(200)}`;
    const ask = (question: string) =>
      anthropic.messages
        .create({
          model: 'anthropic/claude-haiku-4-5',
          max_tokens: 8,
          system: [{ type: 'text', text: handbook, cache_control: { type: 'ephemeral', ttl: '1h' } }],
          messages: [{ role: 'user', content: question }],
        })
        .withResponse();
    const first = await ask('What does it say?');
    const u = first.data.usage;
    const written = u.cache_creation_input_tokens ?? 0;
    expect(written).toBeGreaterThan(1024);
    expect(u.cache_creation).toEqual({ ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: written });
    const r = await row(first.response.headers.get('x-request-id')!);
    expect(r).toMatchObject({
      cache_write_tokens: written,
      cache_write_1h_tokens: written,
      cached_input_tokens: 0,
    });
    expect(Number(r.cost)).toBe(cost(u.input_tokens, 0, written, 0, u.output_tokens));

    // The read that follows is priced as any read; nothing is written.
    const second = await ask('What else?');
    expect(second.data.usage.cache_read_input_tokens).toBe(written);
    const r2 = await row(second.response.headers.get('x-request-id')!);
    expect(r2).toMatchObject({ cache_write_tokens: 0, cache_write_1h_tokens: 0 });
    expect(Number(r2.cost)).toBe(
      cost(second.data.usage.input_tokens, 0, 0, written, second.data.usage.output_tokens),
    );
  });

  it('the chat door (a content part with cache_control), streamed: the same split and price; 5-minute writes unchanged', async () => {
    const run = async (ttl: '1h' | '5m') => {
      const text = `Manual ${ttl} ${Date.now()}: ${'a long manual with many sections. '.repeat(220)}`;
      const stream = await openai.chat.completions
        .create({
          model: 'anthropic/claude-haiku-4-5',
          max_tokens: 8,
          stream: true,
          stream_options: { include_usage: true },
          messages: [
            {
              role: 'system',
              content: [{ type: 'text', text, cache_control: { type: 'ephemeral', ttl } }] as never,
            },
            { role: 'user', content: 'Summarise.' },
          ],
        })
        .withResponse();
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream.data) if (chunk.usage) usage = chunk.usage;
      const details = usage?.prompt_tokens_details as { cache_write_tokens?: number } | undefined;
      const written = details?.cache_write_tokens ?? 0;
      expect(written).toBeGreaterThan(1024);
      const r = await row(stream.response.headers.get('x-request-id')!);
      const plain = usage!.prompt_tokens - written;
      const oneHour = ttl === '1h' ? written : 0;
      expect(r).toMatchObject({ cache_write_tokens: written, cache_write_1h_tokens: oneHour });
      expect(Number(r.cost)).toBe(cost(plain, written - oneHour, oneHour, 0, usage!.completion_tokens));
      return Number(r.cost);
    };
    const hour = await run('1h');
    const minutes = await run('5m');
    expect(hour).toBeGreaterThan(minutes);
  });

  it('/v1/usage reports the 1-hour writes apart', async () => {
    const r = await fetch(`${stack.url}/v1/usage`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { totals: Record<string, number> };
    expect(body.totals.cache_write_1h_tokens).toBeGreaterThan(2048);
    expect(body.totals.cache_write_tokens).toBeGreaterThan(body.totals.cache_write_1h_tokens!);
  });
});
