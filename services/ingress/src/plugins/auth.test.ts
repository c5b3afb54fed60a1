import { connect } from 'node:net';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '@faregate/contracts/errors';
import { hashApiKey } from '@faregate/db/api-keys';
import { defaultAuth, registerAuth } from './auth.ts';
import { registerErrorHandling } from './errors.ts';

const KEY = 'fg_live_unit_test_key';
const opts = {
  adminToken: 'admin-token',
  authenticateHash: async (hash: string) => {
    if (hash !== hashApiKey(KEY)) throw new GatewayError({ code: 'invalid_api_key', message: 'no' });
    return { accountId: 'acct_1', keyId: 'key_1', scopes: ['usage'], allowedModels: null };
  },
};

describe('route-level auth', () => {
  it('refuses to start while any route declares no auth policy', async () => {
    const app = Fastify();
    registerAuth(app, opts);
    app.get('/declared', { config: { auth: 'none' } }, async () => 'ok');
    app.get('/forgotten', async () => 'open');
    await expect(app.ready()).rejects.toThrow(/GET \/forgotten/);
  });

  it("enforces each route's own policy, including the plugin's default and a scope", async () => {
    const app = Fastify();
    registerErrorHandling(app);
    registerAuth(app, opts);
    app.get('/open', { config: { auth: 'none' } }, async () => 'ok');
    await app.register(async (p) => {
      defaultAuth(p, 'admin');
      p.get('/ops', async () => 'ops');
    });
    await app.register(async (p) => {
      defaultAuth(p, 'key');
      p.get('/mine', async (req) => req.principal?.accountId);
      p.get('/chat', { config: { scope: 'chat' } }, async () => 'chat');
    });
    const call = (url: string, auth?: string) =>
      app.inject({ url, headers: auth ? { authorization: `Bearer ${auth}` } : {} });
    expect((await call('/open')).statusCode).toBe(200);
    expect((await call('/ops')).statusCode).toBe(401);
    expect((await call('/ops', KEY)).statusCode).toBe(401);
    expect((await call('/ops', 'admin-token')).statusCode).toBe(200);
    expect((await call('/%6fps')).statusCode).toBe(401);
    expect((await call('/mine')).statusCode).toBe(401);
    expect((await call('/mine', 'admin-token')).statusCode).toBe(401);
    expect((await call('/mine', KEY)).body).toBe('acct_1');
    expect((await call('/chat', KEY)).statusCode).toBe(403);
    await app.close();
  });
});

describe('the key from x-api-key when Authorization carries none', () => {
  it('a proxy’s Basic header, an empty or a bare Bearer does not hide a valid x-api-key; alone, they are named', async () => {
    const app = Fastify();
    registerErrorHandling(app);
    registerAuth(app, opts);
    await app.register(async (p) => {
      defaultAuth(p, 'key');
      p.get('/mine', async (req) => req.principal?.accountId);
    });
    for (const authorization of ['Basic Zm9vOmJhcg==', '', 'Bearer', 'Bearer   ']) {
      const withKey = await app.inject({ url: '/mine', headers: { authorization, 'x-api-key': KEY } });
      expect(withKey.body, authorization).toBe('acct_1');
    }
    const basic = await app.inject({ url: '/mine', headers: { authorization: 'Basic Zm9vOmJhcg==' } });
    expect(basic.statusCode).toBe(401);
    expect(basic.json().error.message).toMatch(/^The Authorization header holds no Bearer token/);
    // A Bearer token wins over x-api-key (the OpenAI SDK's header is the key).
    const both = await app.inject({
      url: '/mine',
      headers: { authorization: 'Bearer nope', 'x-api-key': KEY },
    });
    expect(both.statusCode).toBe(401);
    await app.close();
  });
});

describe('one Authorization header', () => {
  it('refuses a request carrying two (Node keeps the first, a proxy may read the other): a real socket', async () => {
    const app = Fastify();
    registerErrorHandling(app);
    registerAuth(app, opts);
    app.get('/open', { config: { auth: 'none' } }, async () => 'ok');
    await app.register(async (p) => {
      defaultAuth(p, 'key');
      p.get('/mine', async (req) => req.principal?.accountId);
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = new URL(url);
    const raw = (headers: string[]) =>
      new Promise<string>((resolve, reject) => {
        const sock = connect(Number(port), '127.0.0.1', () => {
          sock.end(
            `GET /mine HTTP/1.1\r\nhost: x\r\n${headers.map((h) => `${h}\r\n`).join('')}connection: close\r\n\r\n`,
          );
        });
        let out = '';
        sock.on('data', (d) => {
          out += d;
        });
        sock.on('end', () => resolve(out));
        sock.on('error', reject);
      });
    try {
      const two = await raw([`Authorization: Bearer ${KEY}`, 'authorization: Bearer someone-else']);
      expect(two).toMatch(/^HTTP\/1\.1 400/);
      expect(two).toContain('more than one Authorization header');
      const reversed = await raw(['authorization: Bearer someone-else', `Authorization: Bearer ${KEY}`]);
      expect(reversed).toMatch(/^HTTP\/1\.1 400/);
      const keys = await raw([`x-api-key: ${KEY}`, 'x-api-key: someone-else']);
      expect(keys).toMatch(/^HTTP\/1\.1 400/);
      expect(keys).toContain('more than one x-api-key header');
      const one = await raw([`Authorization: Bearer ${KEY}`]);
      expect(one).toMatch(/^HTTP\/1\.1 200/);
      expect(one).toContain('acct_1');
    } finally {
      await app.close();
    }
  });
});

describe("errors in the Anthropic door's terms", () => {
  it('no key names x-api-key, and a 529 has its status line (a real server, not inject)', async () => {
    const app = Fastify();
    registerErrorHandling(app);
    registerAuth(app, opts);
    await app.register(async (p) => {
      defaultAuth(p, 'key');
      p.get('/openai', async () => 'ok');
      p.get('/anthropic', { config: { errorShape: 'anthropic' } }, async () => 'ok');
    });
    app.get('/busy', { config: { auth: 'none', errorShape: 'anthropic' } }, async () => {
      throw new GatewayError({ code: 'overloaded', message: 'busy', retryable: true });
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const openai = (await (await fetch(`${url}/openai`)).json()) as { error: { message: string } };
      expect(openai.error.message).toContain('Authorization: Bearer');
      const anthropic = (await (await fetch(`${url}/anthropic`)).json()) as { error: { message: string } };
      expect(anthropic.error.message).toContain('x-api-key');
      const busy = await fetch(`${url}/busy`);
      expect(busy.status).toBe(529);
      expect(busy.statusText).toBe('Overloaded');
      expect(busy.headers.get('retry-after')).toBe('1');
      const body = (await busy.json()) as { request_id?: string };
      expect(body).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
      // Anthropic's SDKs quote an error by its request-id header.
      expect(busy.headers.get('request-id')).toMatch(/^req_/);
      expect(body.request_id).toBe(busy.headers.get('request-id'));
    } finally {
      await app.close();
    }
  });
});
