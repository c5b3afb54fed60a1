import { describe, expect, it } from 'vitest';
import { runCli } from './faregate.ts';

function io(env: Record<string, string> = {}, status = 200, body: unknown = {}) {
  const calls: Array<{ url: string; init: RequestInit }> = [];
  const out: string[] = [];
  const err: string[] = [];
  const fetch = (async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return new Response(JSON.stringify(body), { status });
  }) as unknown as typeof globalThis.fetch;
  return {
    io: { env, out: (s: string) => out.push(s), err: (s: string) => err.push(s), fetch },
    calls,
    out,
    err,
  };
}

describe('faregate CLI', () => {
  it('creates a key with a spend limit and model list, authenticated with the admin token', async () => {
    const t = io({ FAREGATE_URL: 'http://gw:9000/', FAREGATE_ADMIN_TOKEN: 'tok' }, 201, {
      id: 'key_1',
      key: 'fg_live_x',
      account_id: 'acct_1',
    });
    const code = await runCli(
      ['keys', 'create', '--account', 'acct_1', '--name', 'ci', '--spend-limit-usd', '5', '--models', 'a, b'],
      t.io,
    );
    expect(code).toBe(0);
    expect(t.calls[0]!.url).toBe('http://gw:9000/admin/v1/keys');
    expect((t.calls[0]!.init.headers as Record<string, string>).authorization).toBe('Bearer tok');
    expect(JSON.parse(String(t.calls[0]!.init.body))).toEqual({
      account_id: 'acct_1',
      name: 'ci',
      spend_limit_usd: '5',
      allowed_models: ['a', 'b'],
    });
    expect(t.out.join('\n')).toContain('fg_live_x');
  });

  it('maps every command to its admin route', async () => {
    const cases: Array<[string[], string, string]> = [
      [['accounts', 'create', '--name', 'n'], 'POST', '/admin/v1/accounts'],
      [['keys', 'revoke', 'key_9'], 'POST', '/admin/v1/keys/key_9/revoke'],
      [['credit', 'add', '--account', 'acct_1', '--usd', '10.5'], 'POST', '/admin/v1/credits'],
      [['balances'], 'GET', '/admin/v1/balances'],
      [['keys', 'limits', 'key_9', '--rpm', '60'], 'PATCH', '/admin/v1/keys/key_9'],
      [['accounts', 'limits', 'acct/1', '--tpm', 'none'], 'PATCH', '/admin/v1/accounts/acct%2F1'],
    ];
    for (const [argv, method, path] of cases) {
      const t = io({}, 200, { data: [] });
      expect(await runCli([...argv, '--url', 'http://x', '--admin-token', 't'], t.io)).toBe(0);
      expect(t.calls[0]!.init.method).toBe(method);
      expect(t.calls[0]!.url).toBe(`http://x${path}`);
    }
  });

  it('sets request limits and patience: a number sets one, none removes it, anything else is refused', async () => {
    const t = io({}, 200, { id: 'key_9', rpm_limit: 60, tpm_limit: null, patience_ms: 2000 });
    const argv = ['keys', 'limits', 'key_9', '--rpm', '60', '--tpm', 'none', '--patience-ms', '2000'];
    expect(await runCli([...argv, '--url', 'http://x', '--admin-token', 't'], t.io)).toBe(0);
    expect(JSON.parse(String(t.calls[0]!.init.body))).toEqual({
      rpm_limit: 60,
      tpm_limit: null,
      patience_ms: 2000,
    });
    expect(t.out.join('\n')).toBe('key key_9: rpm 60, tpm none, patience 2000 ms');
    const create = io({}, 201, { id: 'key_1', key: 'fg_live_x', account_id: 'a' });
    const createArgv = [
      'keys',
      'create',
      '--account',
      'a',
      '--name',
      'n',
      '--rpm',
      '10',
      '--patience-ms',
      '0',
    ];
    expect(await runCli([...createArgv, '--url', 'http://x', '--admin-token', 't'], create.io)).toBe(0);
    expect(JSON.parse(String(create.calls[0]!.init.body))).toMatchObject({ rpm_limit: 10, patience_ms: 0 });
    for (const bad of [
      ['--rpm', '-1'],
      ['--tpm', '1e3'],
      ['--rpm', '__proto__'],
      ['--patience-ms', ''],
    ]) {
      const b = io();
      expect(
        await runCli(['keys', 'limits', 'key_9', ...bad, '--url', 'http://x', '--admin-token', 't'], b.io),
      ).toBe(2);
      expect(b.calls).toHaveLength(0);
    }
    // Accounts have no patience of their own.
    const acct = io();
    expect(await runCli(['accounts', 'limits', '--rpm', '5', '--admin-token', 't'], acct.io)).toBe(2);
    expect(acct.err.join('')).toContain('missing account id');
  });

  it('fails clearly without a token, on missing flags, and on API errors', async () => {
    const noTok = io();
    expect(await runCli(['balances'], noTok.io)).toBe(2);
    expect(noTok.calls).toHaveLength(0);
    const missing = io({ FAREGATE_ADMIN_TOKEN: 't' });
    expect(await runCli(['credit', 'add', '--account', 'acct_1'], missing.io)).toBe(2);
    expect(missing.err.join('')).toContain('--usd');
    const apiErr = io({ FAREGATE_ADMIN_TOKEN: 't' }, 404, { error: { message: 'No account' } });
    expect(await runCli(['credit', 'add', '--account', 'a', '--usd', '1'], apiErr.io)).toBe(1);
    expect(apiErr.err.join('')).toContain('No account');
  });
});
