import { catalogWithOverrides, GatewayConfig, priceTable } from '@faregate/catalog/gateway-config';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import { createDb, type Db } from '@faregate/db/client';
import { runMigrations } from '@faregate/db/migrate';
import { syncPrices } from '@faregate/db/prices';
import { freshDatabase } from '@faregate/testing/env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PriceBook, type UnpricedLog } from './price-book.ts';
import { priceEvents } from './pricing.ts';
import { usageEvent } from './test-harness.ts';

// The routing file: an override of a model the catalog lacks, and one with price tiers.
const gateway = GatewayConfig.parse({
  prices: {
    'openai/gpt-9-preview': { inputPerM: '2', outputPerM: '4' },
    'gemini/gemini-2.5-flash-lite': {
      inputPerM: '0.10',
      outputPerM: '0.40',
      tiers: [{ abovePromptTokens: 200000, inputPerM: '0.20', outputPerM: '0.60' }],
    },
  },
});

let db: Db;
let close: () => Promise<void>;
let drop: () => Promise<void>;

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
  await runMigrations(fresh.url);
  ({ db, close } = createDb(fresh.url, { max: 2 }));
  // What the services sync at start: the catalog with the routing file's overrides.
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

  it("settles a Gemini 2.5 Pro call past 200k prompt tokens at Google's higher tier, as the worker reported it", async () => {
    const book = new PriceBook(db);
    await book.load();
    const call = (requestId: string, inputTokens: number) =>
      usageEvent({
        requestId,
        ...who,
        provider: 'gemini',
        model: 'gemini-2.5-pro',
        inputTokens,
        outputTokens: 1000,
      });
    const [long, short] = await priceEvents(book, [call('req_long', 256_428), call('req_short', 200_000)]);
    // The outside probe's call: 256,428 × $2.50/M + 1,000 × $15/M (it was settled at $1.25 and $10).
    expect(long).toMatchObject({ costMicros: 641_070n + 15_000n, unpriced: false });
    expect(short).toMatchObject({ costMicros: 250_000n + 10_000n, unpriced: false });
    // The one cost function: what the worker reports as usage.cost is what billing settled.
    expect(priceTable(gateway).callCostMicros('gemini', 'gemini-2.5-pro', long!.event, long!.event.at)).toBe(
      long!.costMicros,
    );
  });

  it("settles at the routing file's price tiers when built with the deployment's catalog (main.ts)", async () => {
    const book = new PriceBook(db, { models: catalogWithOverrides(BUILTIN_MODELS, gateway) });
    await book.load();
    const [p] = await priceEvents(book, [
      usageEvent({
        requestId: 'req_tier_override',
        ...who,
        provider: 'gemini',
        model: 'gemini-2.5-flash-lite',
        inputTokens: 300_000,
        outputTokens: 1000,
      }),
    ]);
    expect(p).toMatchObject({ costMicros: 60_000n + 600n, unpriced: false });
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
