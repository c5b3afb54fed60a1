import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConsole } from '@faregate/console/build';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

/**
 * The web console in a real browser: headless Chromium (Debian's `chromium`, driven by
 * playwright-core) against a real stack. Sign in, pools and queue depth, spend after requests, a key
 * created, used, revoked (and refused after), credit added; and the console's security: no token in a
 * URL or in storage, a strict CSP that the page runs under without a violation, writes refused from
 * another origin. Screenshots go to test/artifacts/console/ (ignored by git).
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('./artifacts/console/', import.meta.url));
const MODEL = 'openai/gpt-4o-mini';

let stack: Stack;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Console messages and page errors of the whole run (a CSP violation is reported there). */
const consoleProblems: string[] = [];

async function shot(name: string): Promise<void> {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
}

/** What the test reads of a canvas in the page (the test is type-checked without the DOM's types). */
type Canvas = {
  width: number;
  height: number;
  getContext(
    kind: '2d',
  ): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } | null;
};

const chat = (key: string, content = 'hello console') =>
  fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content }] }),
  });

const adminGet = async (path: string) => {
  const r = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${stack.adminToken}` } });
  expect(r.status).toBe(200);
  return r.json();
};

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  // A clean checkout has no build: this test builds what the ingress serves.
  await buildConsole();
  // One provider call at a time, so a few slow jobs make a visible queue.
  stack = await startStack({ env: { WORKER_CONCURRENCY: '1' } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning')
      consoleProblems.push(`${m.type()}: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => consoleProblems.push(`pageerror: ${e.message}`));
  console.log(`console screenshots: ${ARTIFACTS}`);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe('web console (headless Chromium)', () => {
  it('sends a visitor without a session to sign in, refuses a wrong token, signs in with the admin token', async () => {
    const first = await page.goto(`${stack.url}/console`);
    // The console's own page came first (a strict CSP on it), then its script found no session.
    expect(first?.url()).toBe(`${stack.url}/admin/console/`);
    const csp = first?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    await page.waitForURL(/\/admin\/login\?next=/);
    await shot('01-sign-in');

    await page.fill('#token', 'not-the-admin-token');
    await page.click('button[type=submit]');
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toContain('not the admin token');

    await page.fill('#token', stack.adminToken);
    await page.click('button[type=submit]');
    await page.waitForURL(`${stack.url}/admin/console/`);
    await page.getByRole('heading', { name: 'Pools' }).waitFor();

    // The token is in no URL, no storage; the session is an HttpOnly, SameSite=Strict cookie.
    expect(page.url()).not.toContain(stack.adminToken);
    // (Browser code as a string: the test is type-checked for Node, without the DOM's types.)
    const storage = await page.evaluate(
      '({ local: localStorage.length, session: sessionStorage.length, cookies: document.cookie })',
    );
    expect(storage).toEqual({ local: 0, session: 0, cookies: '' });
    const cookies = await context.cookies();
    expect(cookies.map((c) => c.name)).toEqual(['fg_admin']);
    expect(cookies[0]).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/admin' });
    expect(cookies[0]?.value).not.toContain(stack.adminToken);
  });

  it('shows each pool with its workers, queue depth, oldest job, in-flight and circuit', async () => {
    const row = page.locator('tr[data-pool="openai"]');
    await row.waitFor();
    await until(async () => Number(await row.locator('[data-col=workers]').textContent()) >= 1, {
      timeoutMs: 10_000,
      what: 'a worker shown in the openai pool',
    });
    expect(await row.locator('[data-col=circuit]').textContent()).toBe('closed');

    // Slow replies and one call at a time: async jobs queue up behind the one running.
    stack.fake.configure({ provider: 'openai', firstByteMs: 1_500 });
    const ids: string[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`${stack.url}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `queued ${i}` }] }),
        });
        expect(r.status).toBe(202);
        ids.push(((await r.json()) as { id: string }).id);
      }
      // The page refreshes on its own: the queue shows up without a reload.
      await until(
        async () =>
          Number(await row.locator('[data-col=queued]').textContent()) >= 1 &&
          Number(await row.locator('[data-col=in-flight]').textContent()) === 1 &&
          (await row.locator('[data-col=oldest]').textContent()) !== '—',
        { timeoutMs: 10_000, what: 'queued jobs, one in flight and an oldest age on the pools page' },
      );
      await shot('02-pools-queue');
    } finally {
      stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
    }
    // Every job ran (nothing lost), and the queue empties on the page too.
    await until(
      async () => {
        const states = await Promise.all(
          ids.map(async (id) => {
            const r = await fetch(`${stack.url}/v1/jobs/${id}`, {
              headers: { authorization: `Bearer ${stack.apiKey}` },
            });
            return ((await r.json()) as { status: string }).status;
          }),
        );
        return states.every((s) => s === 'completed');
      },
      { timeoutMs: 30_000, what: 'the queued jobs completed' },
    );
    await until(async () => (await row.locator('[data-col=queued]').textContent()) === '0', {
      timeoutMs: 10_000,
      what: 'the queue shown empty',
    });
  });

  it('charts spend by model and by key after a few requests, equal to the ledger', async () => {
    for (let i = 0; i < 3; i++) expect((await chat(stack.apiKey, `spend ${i}`)).status).toBe(200);
    // Settled by billing (the page shows what settlement recorded).
    // Settled, and settling no more (earlier tests' requests may still be settling): the same count
    // on two reads half a second apart.
    let micros = 0n;
    let last = '';
    await until(
      async () => {
        const r = await stack.sql.query<{ n: string; cost: string }>(
          'SELECT count(*)::text AS n, coalesce(sum(cost_micros), 0)::text AS cost FROM usage_events',
        );
        micros = BigInt(r.rows[0]?.cost ?? '0');
        const now = `${r.rows[0]?.n}/${micros}`;
        const stable = now === last;
        last = now;
        return Number(r.rows[0]?.n) >= 7 && micros > 0n && stable;
      },
      { timeoutMs: 20_000, intervalMs: 500, what: 'usage settled' },
    );
    await page.click('a[href="#/spend"]');
    await page.getByRole('heading', { name: 'Spend' }).waitFor();
    await page.getByRole('radio', { name: 'Model' }).check();
    const row = page.locator('tr[data-group="openai/gpt-4o-mini"]');
    await row.waitFor();
    const shown = (await row.locator('[data-col=cost]').textContent()) ?? '';
    const usd = Number(micros) / 1e6;
    expect(shown).toBe(`$${usd.toFixed(micros < 10_000n ? 6 : 2)}`);
    // The chart drew (a canvas with pixels, Chart.js ran under the CSP).
    const drawn = await page.locator('.chart canvas').evaluate((c: Canvas) => {
      const d = c.getContext('2d')?.getImageData(0, 0, c.width, c.height).data;
      return d ? Array.prototype.some.call(d, (v: number) => v !== 0) : false;
    });
    expect(drawn).toBe(true);
    await shot('03-spend-by-model');

    await page.getByRole('radio', { name: 'Key' }).check();
    const keyRows = page.locator('table.spend-totals tbody tr[data-group]');
    // The table re-renders once the per-key totals arrive: until then it still shows the models.
    await page.locator('table.spend-totals tbody tr[data-group]', { hasText: 'bootstrap' }).first().waitFor();
    expect(await keyRows.count()).toBe(1);
    expect(await keyRows.first().locator('th').textContent()).toContain('bootstrap');
    await shot('04-spend-by-key');

    // The API the page reads: the same sum, in SQL, per day.
    const api = (await adminGet('/admin/v1/spend?group=model&days=7')) as {
      data: { group: string; cost_micros: string }[];
    };
    expect(api.data.reduce((s, r) => s + BigInt(r.cost_micros), 0n)).toBe(micros);
  });

  it('creates a key that works, then revokes it and the gateway refuses it', async () => {
    await page.click('a[href="#/accounts"]');
    await page.getByRole('heading', { name: 'API keys' }).waitFor();
    const form = page.getByRole('form', { name: 'New key' });
    await form.locator('select[name=account_id] option').first().waitFor({ state: 'attached' });
    await form.locator('input[name=name]').fill('console-e2e');
    await form.locator('input[name=rpm_limit]').fill('600');
    await form.getByRole('button', { name: 'Create key' }).click();
    const output = page.locator('output[name=new-key]');
    await output.waitFor();
    const key = ((await output.textContent()) ?? '').trim();
    expect(key).toMatch(/^fg_live_/);
    await shot('05-key-created');

    expect((await chat(key)).status).toBe(200);

    const list = (await adminGet('/admin/v1/keys')) as {
      data: { id: string; name: string; rpm_limit: number }[];
    };
    const created = list.data.find((k) => k.name === 'console-e2e');
    expect(created?.rpm_limit).toBe(600);
    const row = page.locator(`tr[data-key="${created?.id}"]`);
    await row.waitFor();
    await row.getByRole('button', { name: 'Revoke' }).click();
    await row.getByRole('button', { name: 'Confirm revoke' }).click();
    await row.locator('.badge.down', { hasText: 'revoked' }).waitFor();
    await shot('06-key-revoked');

    const refused = await chat(key);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
  });

  it('adds credit to an account and shows the new balance', async () => {
    const before = (await adminGet('/admin/v1/balances')) as {
      data: { account_id: string; balance_micros: string }[];
    };
    const account = before.data[0];
    if (!account) throw new Error('no account');
    const form = page.getByRole('form', { name: 'Add credit' });
    await form.locator('select[name=account_id]').selectOption(account.account_id);
    await form.locator('input[name=amount_usd]').fill('5.25');
    await form.locator('input[name=reference]').fill('console test');
    await form.getByRole('button', { name: 'Add credit' }).click();
    await form.getByRole('status').waitFor();
    const want = BigInt(account.balance_micros) + 5_250_000n;
    expect(await form.getByRole('status').textContent()).toContain('Credited $5.25');
    const after = (await adminGet('/admin/v1/balances')) as {
      data: { account_id: string; balance_micros: string; balance_usd: string }[];
    };
    const now = after.data.find((a) => a.account_id === account.account_id);
    expect(now?.balance_micros).toBe(String(want));
    // The table shows it too (the form reloads the balances).
    const cell = page.locator(`tr[data-account="${account.account_id}"] [data-col=balance]`);
    await until(async () => (await cell.textContent()) === `$${now?.balance_usd}`, {
      timeoutMs: 5_000,
      what: 'the new balance in the accounts table',
    });
    // Exactly one credit for one click.
    const credits = await stack.sql.query(
      "SELECT 1 FROM credit_commands WHERE idempotency_key LIKE 'console:%' AND status = 'applied'",
    );
    expect(credits.rowCount).toBe(1);
    await shot('07-credit-added');
  });

  it('shows a batch of the Batch API with its progress until it completes', async () => {
    const lines = ['a', 'b', 'c']
      .map((id) =>
        JSON.stringify({
          custom_id: id,
          method: 'POST',
          url: '/v1/chat/completions',
          body: { model: MODEL, messages: [{ role: 'user', content: `batch ${id}` }] },
        }),
      )
      .join('\n');
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([lines]), 'batch.jsonl');
    const auth = { authorization: `Bearer ${stack.apiKey}` };
    const file = await fetch(`${stack.url}/v1/files`, { method: 'POST', headers: auth, body: form });
    expect(file.status).toBe(200);
    const created = await fetch(`${stack.url}/v1/batches`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        input_file_id: ((await file.json()) as { id: string }).id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      }),
    });
    expect(created.status).toBe(200);
    const batchId = ((await created.json()) as { id: string }).id;

    await page.click('a[href="#/batches"]');
    await page.getByRole('heading', { name: 'Batches' }).waitFor();
    const row = page.locator(`tr[data-batch="${batchId}"]`);
    await row.waitFor();
    await until(async () => (await row.locator('[data-col=done]').textContent()) === '3/3', {
      timeoutMs: 30_000,
      what: 'the batch shown done (3/3)',
    });
    await until(async () => (await row.locator('[data-col=status]').textContent()) === 'completed', {
      timeoutMs: 30_000,
      what: 'the batch shown completed',
    });
    await shot('08-batches');
  });

  it('refuses an admin write sent from another origin with the session cookie', async () => {
    const victim = (await adminGet('/admin/v1/keys')) as { data: { id: string; revoked: boolean }[] };
    const key = victim.data.find((k) => !k.revoked);
    if (!key) throw new Error('no live key');
    // Another origin on the same site (another port of 127.0.0.1): SameSite does not stop the cookie,
    // the origin check must.
    const evil = await context.newPage();
    await evil.goto(`${stack.fake.url}/`).catch(() => undefined);
    const target = `${stack.url}/admin/v1/keys/${key.id}/revoke`;
    const answered = evil.waitForResponse(target);
    await evil.evaluate(
      (url) => fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include' }).catch(() => undefined),
      target,
    );
    expect((await answered).status()).toBe(403);
    await evil.close();
    const after = (await adminGet('/admin/v1/keys')) as { data: { id: string; revoked: boolean }[] };
    expect(after.data.find((k) => k.id === key.id)?.revoked).toBe(false);
  });

  it('ran without a CSP violation or a script error', () => {
    // Expected: the first look without a session (401, then sign-in), the wrong token's 401, and
    // the sign-in page's favicon.
    const expected = (m: string) =>
      (m.includes('status of 401') && /\/admin\/(v1\/|login)/.test(m)) || m.includes('/favicon.ico');
    expect(consoleProblems.filter((m) => !expected(m))).toEqual([]);
    expect(consoleProblems.length).toBeLessThan(10);
  });
});

describe('the admin views the console reads', () => {
  const get = (path: string, auth = `Bearer ${stack.adminToken}`) =>
    fetch(`${stack.url}${path}`, { headers: { authorization: auth } });

  it('refuses a tenant key and no credentials', async () => {
    for (const path of ['/admin/v1/pools', '/admin/v1/spend', '/admin/v1/keys', '/admin/v1/batches']) {
      expect((await get(path, `Bearer ${stack.apiKey}`)).status).toBe(401);
      expect((await fetch(`${stack.url}${path}`)).status).toBe(401);
    }
  });

  it('answers a bad query with a 400 naming it, prototype-named values included', async () => {
    for (const q of [
      'group=__proto__',
      'group=constructor',
      'group=account&days=0',
      'days=367',
      'days=abc',
      'group=model&__proto__=1',
      'group=day&days=1.5',
    ]) {
      const r = await get(`/admin/v1/spend?${q}`);
      expect(r.status, q).toBe(400);
      const body = (await r.json()) as { error: { type: string; message: string } };
      expect(body.error.type, q).toBe('invalid_request_error');
    }
    expect((await get('/admin/v1/keys?limit=0')).status).toBe(400);
    expect((await get('/admin/v1/keys?limit=5000')).status).toBe(400);
    expect((await get('/admin/v1/batches?limit=-1')).status).toBe(400);
    expect((await get('/admin/v1/batches?constructor=1')).status).toBe(400);
  });

  it('lists keys without their secret or hash, or only those of one account', async () => {
    const all = (await (await get('/admin/v1/keys')).json()) as { data: Record<string, unknown>[] };
    expect(all.data.length).toBeGreaterThanOrEqual(2);
    const text = JSON.stringify(all);
    expect(text).not.toContain(stack.apiKey);
    const hashes = await stack.sql.query<{ hash: string }>('SELECT hash FROM api_keys');
    for (const { hash } of hashes.rows) expect(text).not.toContain(hash);
    // The bootstrap key is the operator's own string: an eighth of it at most is shown (it was 12
    // characters, a short key whole), and the column holds no more.
    const boot = all.data.find((k) => k.name === 'bootstrap');
    const shown = Math.min(4, Math.floor(stack.apiKey.length / 8));
    expect(boot?.prefix).toBe(`${stack.apiKey.slice(0, shown)}…`);
    const prefixes = await stack.sql.query<{ prefix: string }>('SELECT prefix FROM api_keys');
    for (const { prefix } of prefixes.rows) expect(prefix.length).toBeLessThanOrEqual(12);
    // A key's model list is shown as given (null: every model).
    expect(boot?.allowed_models).toBeNull();
    const made = await fetch(`${stack.url}/admin/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        account_id: boot?.account_id,
        name: 'listed-models',
        allowed_models: ['gpt-4o-mini'],
      }),
    });
    expect(made.status).toBe(201);
    const listed = (await (await get('/admin/v1/keys')).json()) as { data: Record<string, unknown>[] };
    expect(listed.data.find((k) => k.name === 'listed-models')?.allowed_models).toEqual(['gpt-4o-mini']);
    const one = all.data[0];
    const r = (await (await get(`/admin/v1/keys?account_id=${String(one?.account_id)}`)).json()) as {
      data: { account_id: string }[];
    };
    expect(r.data.every((k) => k.account_id === one?.account_id)).toBe(true);
    const none = (await (await get('/admin/v1/keys?account_id=acct_nobody')).json()) as { data: unknown[] };
    expect(none.data).toEqual([]);
  });

  it('sums spend per day and account equal to the usage events, counting calls and requests as /v1/usage does', async () => {
    // A request the provider refuses (400) is settled too, with no tokens: not a call, not a request
    // served (before, the spend report counted it and the tenant's own usage did not).
    const before = await stack.sql.query('SELECT 1 FROM usage_events');
    stack.fake.script('openai', [{ fault: '400' }]);
    const refused = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'refused' }] }),
    });
    expect(refused.status).toBe(400);
    await until(
      async () =>
        ((await stack.sql.query('SELECT 1 FROM usage_events')).rowCount ?? 0) > (before.rowCount ?? 0),
      {
        what: 'the refused request settled',
      },
    );
    const r = (await (await get('/admin/v1/spend?group=account&days=1')).json()) as {
      group: string;
      data: {
        day: string;
        group: string;
        label: string;
        cost_micros: string;
        calls: number;
        requests: number;
      }[];
    };
    expect(r.group).toBe('account');
    const sql = await stack.sql.query<{
      account_id: string;
      cost: string;
      calls: string;
      n: string;
      all: string;
    }>(
      `SELECT account_id, sum(cost_micros)::text AS cost,
              count(*) FILTER (WHERE input_tokens + output_tokens > 0)::text AS calls,
              count(DISTINCT request_id) FILTER (WHERE input_tokens + output_tokens > 0)::text AS n,
              count(DISTINCT request_id)::text AS all
         FROM usage_events GROUP BY account_id`,
    );
    expect(r.data.map((d) => [d.group, d.cost_micros, d.calls, d.requests]).sort()).toEqual(
      sql.rows.map((s) => [s.account_id, s.cost, Number(s.calls), Number(s.n)]).sort(),
    );
    const mine = r.data.find((d) => d.label === 'bootstrap');
    const row = sql.rows.find((x) => x.account_id === mine?.group);
    expect(Number(row?.all)).toBeGreaterThan(Number(row?.n));
    // The tenant's own report of the same day says the same.
    const own = (await (await get('/v1/usage?group_by=day', `Bearer ${stack.apiKey}`)).json()) as {
      data: { day: string; calls: number; requests: number }[];
    };
    const today = own.data.find((d) => d.day === mine?.day);
    expect([today?.calls, today?.requests]).toEqual([mine?.calls, mine?.requests]);
    expect(r.data[0]?.label).toBe('bootstrap');
    expect(r.data[0]?.day).toBe(new Date().toISOString().slice(0, 10));
  });
});
