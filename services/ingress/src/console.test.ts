import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { CONSOLE_CSP, registerConsole } from './console.ts';
import { registerErrorHandling } from './plugins/errors.ts';

async function app(dist: string) {
  const a = Fastify();
  registerErrorHandling(a);
  await registerConsole(a, dist);
  await a.ready();
  return a;
}

function builtDist(): string {
  const root = mkdtempSync(join(tmpdir(), 'fg-console-'));
  const dist = join(root, 'dist');
  mkdirSync(dist);
  writeFileSync(join(dist, 'index.html'), '<!doctype html><script type="module" src="app.js"></script>');
  writeFileSync(join(dist, 'app.js'), 'console.log(1)');
  // Beside dist/, never served.
  writeFileSync(join(root, 'secret.txt'), 'not for the web');
  return dist;
}

describe('the console files', () => {
  it('serves the built page and script with a strict CSP, and /console leads there', async () => {
    const a = await app(builtDist());
    const page = await a.inject('/admin/console/');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).not.toMatch(/unsafe-(inline|eval)/);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    const js = await a.inject('/admin/console/app.js');
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    const go = await a.inject('/console');
    expect(go.statusCode).toBe(302);
    expect(go.headers.location).toBe('/admin/console/');
    expect((await a.inject('/admin/console')).statusCode).toBeGreaterThanOrEqual(300);
    await a.close();
  });

  it('serves nothing but the built files, however the path is spelled', async () => {
    const a = await app(builtDist());
    for (const path of [
      '/admin/console/../secret.txt',
      '/admin/console/%2e%2e/secret.txt',
      '/admin/console/..%2fsecret.txt',
      '/admin/console/missing.js',
      '/admin/console/.env',
    ]) {
      const r = await a.inject(path);
      expect(r.statusCode, path).toBe(404);
      expect(r.body, path).not.toContain('not for the web');
    }
    await a.close();
  });

  it('says how to build it when it was not built', async () => {
    const a = await app(join(mkdtempSync(join(tmpdir(), 'fg-console-')), 'dist'));
    const r = await a.inject('/admin/console/');
    expect(r.statusCode).toBe(503);
    expect(r.json()).toMatchObject({
      error: { message: expect.stringContaining('@faregate/console build') },
    });
    await a.close();
  });
});
