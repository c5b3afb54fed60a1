import Anthropic from '@anthropic-ai/sdk';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { adminCall } from './support/calls.ts';
import { contentOf, jobApi } from './support/jobs.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * A request whose candidates' circuits are open is refused without a provider call, and still says
 * what it tried, as any failed request does: each skipped candidate in `error.attempts` (code
 * `circuit_open`) and in the `x-faregate-*` headers, on the chat door and on `/v1/messages`.
 */

let stack: Stack;
let client: OpenAI;
const ask = (content: string) => [{ role: 'user' as const, content }];
const HAIKU = 'claude-haiku-4-5-20251001';
const failures = (n: number) => Array.from({ length: n }, () => ({ fault: '500' as const }));
type APIError = InstanceType<typeof OpenAI.APIError>;

beforeAll(async () => {
  const configPath = join(tmpdir(), `fg-circuit-open-${process.pid}-${Date.now()}.json`);
  // Two failures open a circuit, which then stays open for the whole file.
  const circuit = { minSamples: 2, windowMs: 60_000, openMs: 60_000, failureRatio: 0.5 };
  writeFileSync(
    configPath,
    JSON.stringify({
      fallbacks: { 'openai/gpt-4o-mini': ['anthropic/claude-haiku-4-5'] },
      // Gemini's opens for 3 s: its half-open probe is tested below.
      providers: {
        openai: { circuit },
        anthropic: { circuit },
        gemini: { circuit: { ...circuit, openMs: 3_000 } },
      },
    }),
  );
  stack = await startStack({
    providers: ['openai', 'anthropic', 'gemini'],
    env: { FAREGATE_CONFIG: configPath, WORKER_ATTEMPTS: '1' },
  });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

async function circuitOf(provider: string): Promise<unknown> {
  const r = await adminCall(stack, 'GET', '/admin/v1/providers');
  return (r.data as { id: string; circuit: unknown }[]).find((p) => p.id === provider)?.circuit;
}

/** Sends `request` until `provider`'s circuit is open (its failures are counted after each answer). */
async function openCircuit(provider: string, request: () => Promise<unknown>): Promise<void> {
  await until(
    async () => {
      await request();
      return (await circuitOf(provider)) === 'open';
    },
    { timeoutMs: 20_000, intervalMs: 50, what: `${provider}'s circuit to open` },
  );
}

/** Opens Gemini's circuit (3 s) with faults asked in the prompt (a scripted one would wait for the next request, whichever it is). */
const openGemini = () =>
  openCircuit('gemini', () =>
    client.chat.completions
      .create({ model: 'gemini/gemini-2.5-flash', messages: ask('open [[fake:{"fault":"500"}]]') })
      .catch(() => undefined),
  );

describe('candidates skipped on an open circuit', () => {
  it('are named with the calls made, then alone once every circuit is open, on both doors', async () => {
    stack.fake.script('openai', failures(40));
    await openCircuit('openai', () =>
      client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask('open openai') }),
    );

    // openai skipped, the fallback called and failing: both named, in plan order.
    stack.fake.script('anthropic', failures(1));
    const mixed = (await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask('skip then fail') })
      .catch((e: unknown) => e)) as APIError;
    expect(mixed).toBeInstanceOf(OpenAI.APIError);
    expect((mixed.error as { attempts?: unknown }).attempts).toEqual([
      { provider: 'openai', model: 'gpt-4o-mini', status: null, code: 'circuit_open' },
      { provider: 'anthropic', model: HAIKU, status: 500, code: 'upstream_error' },
    ]);
    expect(mixed.headers?.get('x-faregate-attempts')).toBe('openai:circuit_open,anthropic:500');
    expect(mixed.headers?.get('x-faregate-model')).toBe(`anthropic/${HAIKU}`);

    // openai skipped, the fallback answering: the answer names the skip too, before the call that
    // answered (non-streamed and streamed: the stream's headers go out before its answer is known).
    for (const stream of [false, true]) {
      const { response } = await client.chat.completions
        .create({ model: 'openai/gpt-4o-mini', messages: ask(`skip then answer ${stream}`), stream })
        .withResponse();
      expect(response.status).toBe(200);
      expect(response.headers.get('x-faregate-attempts')).toBe('openai:circuit_open,anthropic:ok');
      expect(response.headers.get('x-faregate-model')).toBe(`anthropic/${HAIKU}`);
    }

    stack.fake.script('anthropic', failures(40));
    await openCircuit('anthropic', () =>
      client.chat.completions
        .create({ model: 'anthropic/claude-haiku-4-5', messages: ask('open anthropic') })
        .catch(() => undefined),
    );
    const calls = stack.fake.calls().filter((c) => !c.path.endsWith('/models')).length;

    // Every circuit open: no call is made, and the 503 still names each candidate skipped.
    const skipped = [
      { provider: 'openai', model: 'gpt-4o-mini', status: null, code: 'circuit_open' },
      { provider: 'anthropic', model: HAIKU, status: null, code: 'circuit_open' },
    ];
    for (const stream of [false, true]) {
      const err = (await client.chat.completions
        .create({ model: 'openai/gpt-4o-mini', messages: ask(`all open ${stream}`), stream })
        .catch((e: unknown) => e)) as APIError;
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect(err.status).toBe(503);
      expect(err.code).toBe('provider_unavailable');
      expect(err.message).toContain('openai/gpt-4o-mini');
      expect(err.message).toContain(`anthropic/${HAIKU}`);
      expect((err.error as { attempts?: unknown }).attempts).toEqual(skipped);
      expect(err.headers?.get('x-faregate-attempts')).toBe('openai:circuit_open,anthropic:circuit_open');
      expect(err.headers?.get('x-faregate-provider')).toBe('anthropic');
      expect(err.headers?.get('x-faregate-model')).toBe(`anthropic/${HAIKU}`);
      expect(Number(err.headers?.get('retry-after'))).toBeGreaterThan(0);
    }

    // One candidate: named in the message too.
    const one = (await client.chat.completions
      .create({ model: 'anthropic/claude-haiku-4-5', messages: ask('one candidate') })
      .catch((e: unknown) => e)) as APIError;
    expect(one.status).toBe(503);
    expect(one.message).toContain(`attempt: anthropic/${HAIKU}: circuit_open`);
    expect((one.error as { attempts?: unknown }).attempts).toEqual([skipped[1]]);
    expect(one.headers?.get('x-faregate-attempts')).toBe('anthropic:circuit_open');

    // The Messages door answers the same refusal in Anthropic's shape, with the same headers.
    const anthropic = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
    const m = (await anthropic.messages
      .create({ model: 'openai/gpt-4o-mini', max_tokens: 16, messages: ask('messages door') })
      .catch((e: unknown) => e)) as InstanceType<typeof Anthropic.APIError>;
    expect(m).toBeInstanceOf(Anthropic.APIError);
    expect(m.status).toBe(503);
    expect((m.error as { error?: { type?: string } }).error?.type).toBe('overloaded_error');
    expect(m.message).toContain('circuit_open');
    expect(m.headers?.get('x-faregate-attempts')).toBe('openai:circuit_open,anthropic:circuit_open');
    expect(m.headers?.get('x-faregate-model')).toBe(`anthropic/${HAIKU}`);

    // None of the refused requests reached a provider.
    expect(stack.fake.calls().filter((c) => !c.path.endsWith('/models')).length).toBe(calls);
  }, 60_000);
});

describe('the half-open probe', () => {
  it('answered with a 4xx (the provider is up) closes the circuit: the next request is served, not refused for openMs', async () => {
    await openGemini();
    // After openMs the first request through is the probe; the provider refuses it (too long a prompt).
    await until(
      async () => {
        const e = (await client.chat.completions
          .create({
            model: 'gemini/gemini-2.5-flash',
            messages: ask('the probe [[fake:{"fault":"context_length"}]]'),
          })
          .catch((err: unknown) => err)) as APIError;
        return e.status === 400 && e.code === 'context_length_exceeded';
      },
      { timeoutMs: 20_000, intervalMs: 100, what: 'the probe to reach gemini' },
    );
    // At once: before, every request was refused (503 circuit_open) until the probe's openMs passed.
    const r = await client.chat.completions.create({
      model: 'gemini/gemini-2.5-flash',
      messages: ask('after'),
    });
    expect(r.choices[0]?.message.content).toBeTruthy();
    expect(await circuitOf('gemini')).toBe('closed');
  }, 60_000);
});

describe('a job nobody waits on', () => {
  it('whose only candidate is behind an open circuit waits for the probe instead of failing; an interactive request is still refused at once', async () => {
    await openGemini();
    const jobs = jobApi(stack.url);
    const id = await jobs.submit(stack.apiKey, 'an async question', 'gemini/gemini-2.5-flash');
    // The pool is not paused for it: a caller waiting on an answer still hears the 503 at once.
    const refused = (await client.chat.completions
      .create({ model: 'gemini/gemini-2.5-flash', messages: ask('interactive') })
      .catch((e: unknown) => e)) as APIError;
    expect(refused.status).toBe(503);
    expect(refused.code).toBe('provider_unavailable');
    // Before: the job failed at once with provider_unavailable. Now it runs once the circuit lets a
    // probe through (openMs 3 s), and is answered.
    const done = await jobs.finished(stack.apiKey, id, 30_000);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    expect(contentOf(done)).toBeTruthy();
    expect(await circuitOf('gemini')).toBe('closed');
  }, 60_000);
});
