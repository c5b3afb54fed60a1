import { catalogWithOverrides, GatewayConfig } from '@faregate/catalog/gateway-config';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import { createDb, type Db } from '@faregate/db/client';
import { runMigrations } from '@faregate/db/migrate';
import { syncPrices } from '@faregate/db/prices';
import { freshDatabase } from '@faregate/testing/env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PriceBook, type UnpricedLog } from './price-book.ts';
import { priceEvents } from './pricing.ts';
import { usageEvent } from './test-harness.ts';

let db: Db;
let close: () => Promise<void>;
let drop: () => Promise<void>;

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
  await runMigrations(fresh.url);
  ({ db, close } = createDb(fresh.url, { max: 2 }));
  // What the services sync at start: the catalog with the routing file's overrides.
  const gateway = GatewayConfig.parse({
    prices: { 'openai/gpt-9-preview': { inputPerM: '2', outputPerM: '4' } },
  });
  await syncPrices(db, catalogWithOverrides(BUILTIN_MODELS, gateway), '2025-11-01');
});
afterAll(async () => {
  await close?.();
  await drop?.();
});

function recorder(): UnpricedLog & { lines: Array<{ level: string; obj: object }> } {
  const lines: Array<{ level: string; obj: object }> = [];
  return {
    lines,
    error: (obj) => lines.push({ level: 'error', obj }),
    warn: (obj) => lines.push({ level: 'warn', obj }),
  };
}

const who = { account: 'acct_x', key: 'key_x' };

describe('PriceBook', () => {
  it('prices the ids workers report (dated, -latest, :latest) at the listed price', async () => {
    const book = new PriceBook(db);
    await book.load();
    const now = Date.now();
    expect(book.lookup('anthropic', 'claude-haiku-4-5-20251001', now)).toEqual({
      input: 1_000_000n,
      cachedInput: 100_000n,
      cacheWrite: 1_250_000n,
      cacheWrite1h: 2_000_000n,
      output: 5_000_000n,
    });
    expect(book.lookup('anthropic', 'claude-3-5-haiku-20241022', now)?.input).toBe(800_000n);
    expect(book.lookup('openai', 'gpt-9-preview', now)?.output).toBe(4_000_000n);
    expect(book.resolve('llama', 'llama3.2:latest', now)).toMatchObject({
      model: 'llama3.2',
      selfHosted: true,
    });
    expect(book.lookup('openai', 'gpt-10', now)).toBeUndefined();
    expect(book.lookup('openai', 'constructor', now)).toBeUndefined();
  });

  it('settles a dated snapshot at its price, never at zero', async () => {
    const book = new PriceBook(db);
    await book.load();
    const e = usageEvent({
      requestId: 'req_dated',
      ...who,
      provider: 'anthropic',
      model: 'claude-haiku-4-5-20251001',
      inputTokens: 1000,
      outputTokens: 100,
    });
    const [p] = await priceEvents(book, [e]);
    // 1000 × $1/M + 100 × $5/M = 1000 + 500 µUSD.
    expect(p).toMatchObject({ costMicros: 1500n, unpriced: false });
  });

  it('reports a served call without a price loudly: an error, or a warning when unpriced models are allowed', async () => {
    const log = recorder();
    const book = new PriceBook(db, { log });
    await book.load();
    const unknown = (requestId: string, tokens: number) =>
      usageEvent({ requestId, ...who, model: 'gpt-10', inputTokens: tokens, outputTokens: tokens });
    const priced = await priceEvents(book, [
      unknown('req_u1', 10),
      unknown('req_u2', 10),
      unknown('req_u3', 0),
    ]);
    expect(priced.map((p) => p.unpriced)).toEqual([true, true, true]);
    expect(priced.map((p) => p.costMicros)).toEqual([0n, 0n, 0n]);
    // Once per model per minute, not once per event.
    expect(log.lines).toEqual([
      { level: 'error', obj: { provider: 'openai', model: 'gpt-10', requestId: 'req_u1' } },
    ]);

    const allowed = recorder();
    const lenient = new PriceBook(db, { log: allowed, allowUnpriced: true });
    await lenient.load();
    await priceEvents(lenient, [unknown('req_u4', 5)]);
    expect(allowed.lines.map((l) => l.level)).toEqual(['warn']);
  });
});
