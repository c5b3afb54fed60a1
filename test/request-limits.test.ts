import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { runCli } from '../packages/sdk/src/cli/faregate.ts';
import { jobApi } from './support/jobs.ts';
import { freePort, type Stack, startStack } from './support/stack.ts';

/**
 * Per-key and per-account request limits (README, API: keys): requests and tokens per minute,
 * global across every ingress process, answered with 429, retry-after and OpenAI's x-ratelimit-*
 * headers; set through the admin API and the CLI. And a key's own patience with a rate-limited
 * provider.
 */

let stack: Stack;
let otherUrl: string;

beforeAll(async () => {
  stack = await startStack({ providers: ['openai'] });
  const port = await freePort();
  await stack.start('ingress', { PORT: String(port) });
  otherUrl = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${otherUrl}/readyz`).catch(() => undefined))?.ok, {
    timeoutMs: 30_000,
    what: 'second ingress ready',
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const json = { 'content-type': 'application/json' };
async function admin(method: string, path: string, body?: unknown, token = stack.adminToken) {
  const r = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : json) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** The CLI against the real gateway; its output lines. */
async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli([...argv, '--url', stack.url, '--admin-token', stack.adminToken], {
    env: {},
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    fetch,
  });
  return { code, out, err };
}

async function account(limits: Record<string, number> = {}): Promise<string> {
  const acc = await admin('POST', '/admin/v1/accounts', { name: 'limited', ...limits });
  expect(acc.status).toBe(201);
  const id = acc.body.id as string;
  await admin('POST', '/admin/v1/credits', { account_id: id, amount_usd: '5' });
  return id;
}
async function key(accountId: string, extra: Record<string, unknown> = {}) {
  const k = await admin('POST', '/admin/v1/keys', { account_id: accountId, name: 'k', ...extra });
  expect(k.status).toBe(201);
  return { id: k.body.id as string, key: k.body.key as string, body: k.body };
}

async function chat(base: string, apiKey: string, content = 'hi') {
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, ...json },
    body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content }] }),
  });
  const body = (await r.json()) as { error?: { code: string; type: string; message: string } };
  const h = (n: string) => r.headers.get(n);
  return {
    status: r.status,
    body,
    retryAfter: h('retry-after'),
    limit: h('x-ratelimit-limit-requests'),
    remaining: h('x-ratelimit-remaining-requests'),
    reset: h('x-ratelimit-reset-requests'),
    tokensLimit: h('x-ratelimit-limit-tokens'),
    tokensRemaining: h('x-ratelimit-remaining-tokens'),
  };
}

describe('per-key request limits', () => {
  it('a key limit set with the CLI holds across two ingress processes: 429 with retry-after and x-ratelimit-* on every response', async () => {
    const acct = await account();
    const k = await key(acct);
    const set = await cli('keys', 'limits', k.id, '--rpm', '4');
    expect(set).toMatchObject({ code: 0, out: [`key ${k.id}: rpm 4, tpm none, patience default`] });
    const answers = [];
    // Alternating between the two processes: one limit for both.
    for (let i = 0; i < 5; i++) answers.push(await chat(i % 2 === 0 ? stack.url : otherUrl, k.key, `n${i}`));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 429]);
    expect(answers.map((a) => a.remaining)).toEqual(['3', '2', '1', '0', '0']);
    for (const a of answers) {
      expect(a.limit).toBe('4');
      expect(a.reset).toMatch(/^\d+(\.\d+)?(ms|s)$|^\dm[\d.]+s$/);
      // No tokens limit set: no tokens headers.
      expect(a.tokensLimit).toBeNull();
    }
    const refused = answers[4]!;
    expect(refused.body.error).toMatchObject({ code: 'rate_limit_exceeded', type: 'rate_limit_error' });
    expect(refused.body.error?.message).toMatch(/requests per minute of this API key: limit 4/);
    // One request refills in 15 s, less what has refilled since the first of the four.
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(refused.retryAfter)).toBeLessThanOrEqual(15);
    // The official SDK sees its own RateLimitError with the headers.
    const sdk = new OpenAI({ apiKey: k.key, baseURL: `${otherUrl}/v1`, maxRetries: 0 });
    const err = await sdk.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'sdk' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(
      (err as InstanceType<typeof OpenAI.RateLimitError>).headers?.get('x-ratelimit-limit-requests'),
    ).toBe('4');
    // An unlimited key's responses carry no such headers, and are not slowed by anyone else's limit.
    const free = await chat(stack.url, stack.apiKey);
    expect(free.status).toBe(200);
    expect(free.limit).toBeNull();
    // Removing the limit takes effect in every process within the key cache's lifetime.
    expect(await cli('keys', 'limits', k.id, '--rpm', 'none')).toMatchObject({
      code: 0,
      out: [`key ${k.id}: rpm none, tpm none, patience default`],
    });
    // Each process on its own key cache: each is awaited (one may still hold the limit for a moment
    // after the other has dropped it), within the cache's lifetime and then some.
    for (const url of [otherUrl, stack.url])
      await until(
        async () => {
          const a = await chat(url, k.key);
          return a.status === 200 && a.limit === null;
        },
        { timeoutMs: 5_000, what: `${url} admitting the key again, with no limit headers` },
      );
  });

  it('an account limit is shared by all its keys; tokens per minute count the prompt and max_tokens', async () => {
    const acct = await account({ tpm_limit: 1_000 });
    const a = await key(acct);
    const b = await key(acct, { tpm_limit: 100_000 });
    expect(b.body).toMatchObject({ tpm_limit: 100_000, rpm_limit: null, patience_ms: null });
    const big = async (apiKey: string, base: string) => {
      const r = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, ...json },
        body: JSON.stringify({
          model: 'openai/gpt-4o-mini',
          max_tokens: 400,
          messages: [{ role: 'user', content: 'tokens' }],
        }),
      });
      await r.body?.cancel();
      return { status: r.status, remaining: Number(r.headers.get('x-ratelimit-remaining-tokens')) };
    };
    const first = await big(a.key, stack.url);
    expect(first.status).toBe(200);
    // 400 max_tokens plus the prompt's estimate (about a quarter of its bytes).
    expect(first.remaining).toBeLessThan(600);
    expect(first.remaining).toBeGreaterThan(500);
    expect((await big(b.key, otherUrl)).status).toBe(200);
    // The account's 1,000 are spent by the two keys together, whatever each key's own limit.
    const third = await big(b.key, stack.url);
    expect(third.status).toBe(429);
    expect((await chat(otherUrl, a.key)).status).toBe(200); // a small one still fits
    // The account's limit is changed with the CLI too.
    expect((await cli('accounts', 'limits', acct, '--tpm', 'none')).code).toBe(0);
    await until(async () => (await big(b.key, otherUrl)).status === 200, {
      timeoutMs: 5_000,
      what: 'the account limit lifted',
    });
  });

  it('tokens a request used beyond its admission estimate (no max_tokens) count too: the next request waits', async () => {
    const acct = await account();
    const k = await key(acct, { tpm_limit: 1_000 });
    // Admitted on its prompt's estimate (no max_tokens), it answers with 3,000 tokens.
    const long = await chat(stack.url, k.key, 'a long answer [[fake:{"tokens":3000}]]');
    expect(long.status).toBe(200);
    expect(Number(long.tokensRemaining)).toBeGreaterThan(900);
    // The worker charges what the answer used beyond that: the bucket is in debt, the next one waits.
    const refused = await until(
      async () => {
        const r = await chat(stack.url, k.key);
        return r.status === 429 ? r : undefined;
      },
      { what: 'the key refused for the tokens it used' },
    );
    expect(refused.body.error?.code).toBe('rate_limit_exceeded');
    expect(refused.body.error?.message).toMatch(/tokens per minute of this API key/);
    // About two minutes of refill for 2,000 tokens of debt on a limit of 1,000 a minute.
    expect(Number(refused.retryAfter)).toBeGreaterThan(60);
    expect(refused.tokensRemaining).toBe('0');
  });

  it('a request larger than a tokens limit: 429 without retry-after (waiting cannot help); as a job batch member it fails', async () => {
    const acct = await account();
    const k = await key(acct, { tpm_limit: 100 });
    const body = { model: 'openai/gpt-4o-mini', max_tokens: 500, messages: [{ role: 'user', content: 'x' }] };
    const r = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${k.key}`, ...json },
      body: JSON.stringify(body),
    });
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBeNull();
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/Request too large/);
    // The same request as a job batch member: failed with that error, not fed again forever.
    const api = jobApi(stack.url);
    const created = await api.call(k.key, 'POST', '/v1/jobs', { requests: [body] });
    expect(created.status).toBe(202);
    const member = (created.body.jobs as { id: string }[])[0]!.id;
    const done = await api.finished(k.key, member);
    expect(done.status).toBe('failed');
    expect(JSON.stringify(done.error)).toMatch(/Request too large/);
  });

  it('a streamed answer carries the x-ratelimit-* headers too, on every door', async () => {
    const acct = await account();
    const k = await key(acct, { rpm_limit: 100 });
    for (const [path, body] of [
      [
        '/v1/chat/completions',
        { model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'x' }] },
      ],
      [
        '/v1/messages',
        {
          model: 'openai/gpt-4o-mini',
          max_tokens: 8,
          stream: true,
          messages: [{ role: 'user', content: 'x' }],
        },
      ],
      ['/v1/responses', { model: 'openai/gpt-4o-mini', stream: true, input: 'x' }],
    ] as const) {
      const r = await fetch(`${stack.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${k.key}`, 'anthropic-version': '2023-06-01', ...json },
        body: JSON.stringify(body),
      });
      expect(r.headers.get('content-type'), path).toMatch(/event-stream/);
      expect(r.headers.get('x-ratelimit-limit-requests'), path).toBe('100');
      expect(Number(r.headers.get('x-ratelimit-remaining-requests')), path).toBeLessThan(100);
      await r.text();
    }
  });

  it('a request refused for its cost (402) gives back what it took from the limits', async () => {
    const acc = await admin('POST', '/admin/v1/accounts', { name: 'broke' });
    const k = await key(acc.body.id as string, { rpm_limit: 100 });
    for (let i = 0; i < 3; i++) {
      const r = await chat(stack.url, k.key);
      expect(r.status).toBe(402);
      expect(r.remaining).toBe('100');
    }
  });

  it('refuses bad limits, unknown ids and callers without the admin token', async () => {
    const acct = await account();
    const k = await key(acct);
    for (const body of [
      { rpm_limit: -1 },
      { rpm_limit: 1.5 },
      { tpm_limit: '100' },
      { patience_ms: 600_001 },
      { __proto__: { rpm_limit: 1 }, rpm_limit: 'x' },
      { constructor: 1 },
      { nope: 1 },
    ]) {
      const r = await admin('PATCH', `/admin/v1/keys/${k.id}`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect((r.body.error as { type: string }).type).toBe('invalid_request_error');
    }
    expect((await admin('PATCH', `/admin/v1/accounts/${acct}`, { patience_ms: 5 })).status).toBe(400);
    // A PATCH answers with the account as stored: every limit, not only those sent.
    const limited = await account({ rpm_limit: 7, tpm_limit: 9000 });
    expect((await admin('PATCH', `/admin/v1/accounts/${limited}`, { rpm_limit: 8 })).body).toEqual({
      object: 'account',
      id: limited,
      name: 'limited',
      rpm_limit: 8,
      tpm_limit: 9000,
    });
    expect((await admin('PATCH', `/admin/v1/accounts/${limited}`, {})).body).toMatchObject({
      rpm_limit: 8,
      tpm_limit: 9000,
    });
    expect((await admin('PATCH', '/admin/v1/keys/key_nope', { rpm_limit: 5 })).status).toBe(404);
    expect((await admin('PATCH', '/admin/v1/accounts/acct_nope', { rpm_limit: 5 })).status).toBe(404);
    expect((await admin('PATCH', `/admin/v1/keys/${k.id}`, { rpm_limit: 5 }, 'not-the-token')).status).toBe(
      401,
    );
    const asTenant = await fetch(`${stack.url}/admin/v1/keys/${k.id}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${k.key}`, ...json },
      body: JSON.stringify({ rpm_limit: 1_000_000 }),
    });
    expect(asTenant.status).toBe(401);
    // Nothing changed: the key has no limit.
    expect((await chat(stack.url, k.key)).limit).toBeNull();
  });
});

describe('a key with its own patience', () => {
  it('gets the 429 after one upstream call when its patience is 0, where the default waits the 429 out', async () => {
    const acct = await account();
    const impatient = await key(acct, { patience_ms: 0 });
    expect(impatient.body.patience_ms).toBe(0);
    const calls = () => stack.fake.calls().filter((c) => c.provider === 'openai' && c.model !== null);
    stack.fake.script(
      'openai',
      Array.from({ length: 3 }, () => ({ fault: '429' as const, retryAfterMs: 200 })),
    );
    stack.fake.clearCalls();
    const r = await chat(stack.url, impatient.key, 'no patience');
    expect(r.status).toBe(429);
    expect(calls()).toHaveLength(1);
    // Per request, the header still wins over the key's setting.
    stack.fake.clearCalls();
    const patient = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${impatient.key}`, 'x-faregate-patience-ms': '5000', ...json },
      body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'wait' }] }),
    });
    expect(patient.status).toBe(200);
    expect(calls()).toHaveLength(3);
    stack.fake.reset();
  });
});
