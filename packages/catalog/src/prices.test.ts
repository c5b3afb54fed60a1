import { describe, expect, it } from 'vitest';
import { GatewayConfig, parseGatewayConfig, priceTable } from './gateway-config.ts';
import { BUILTIN_MODELS } from './models.ts';
import { maxCallCostMicros, PriceTable } from './prices.ts';

const table = new PriceTable(BUILTIN_MODELS);
const priceOf = (provider: string, model: string, at?: number) =>
  table.resolvePrice(provider, model, at)?.price;
const PROTOTYPE_NAMES = [
  'constructor',
  '__proto__',
  'toString',
  'valueOf',
  'hasOwnProperty',
  'isPrototypeOf',
];

describe('embedding prices (checked against the providers, #16)', () => {
  it.each([
    ['openai', 'text-embedding-3-small', '0.02'],
    ['openai', 'text-embedding-3-large', '0.13'],
    ['openai', 'text-embedding-ada-002', '0.10'],
    ['gemini', 'gemini-embedding-001', '0.15'],
  ])('%s/%s: $%s per 1M input tokens, no output', (provider, model, perM) => {
    expect(priceOf(provider, model)).toEqual({ inputPerM: perM, outputPerM: '0' });
  });

  it('a retired model is not listed (text-embedding-004: shut down on the Gemini API)', () => {
    expect(BUILTIN_MODELS.find((m) => m.id === 'text-embedding-004')).toBeUndefined();
  });
});

describe('PriceTable.resolvePrice', () => {
  it('prices a dated snapshot at its listed undated price', () => {
    expect(table.resolvePrice('anthropic', 'claude-haiku-4-5-20251001')).toEqual({
      provider: 'anthropic',
      model: 'claude-haiku-4-5',
      price: {
        inputPerM: '1.00',
        cachedInputPerM: '0.10',
        cacheWritePerM: '1.25',
        cacheWrite1hPerM: '2.00',
        outputPerM: '5.00',
      },
      selfHosted: false,
    });
    expect(priceOf('openai', 'gpt-4o-mini-2024-07-18')?.inputPerM).toBe('0.15');
    expect(priceOf('gemini', 'gemini-2.0-flash-001')?.outputPerM).toBe('0.40');
  });

  it('resolves aliases, -latest and :latest names', () => {
    expect(table.resolvePrice('anthropic', 'claude-haiku')?.model).toBe('claude-haiku-4-5');
    expect(table.resolvePrice('anthropic', 'claude-haiku-4-5-latest')?.model).toBe('claude-haiku-4-5');
    // Anthropic's dated snapshot of a model the catalog lists under its `-latest` name.
    expect(table.resolvePrice('anthropic', 'claude-3-5-haiku-20241022')?.model).toBe(
      'claude-3-5-haiku-latest',
    );
    expect(table.resolvePrice('llama', 'llama3.2:latest')).toMatchObject({
      model: 'llama3.2',
      selfHosted: true,
    });
    expect(table.resolvePrice('llama', 'llama3.1:8b')?.model).toBe('llama3.1:8b');
  });

  it('prices self-hosted models at zero on purpose, and leaves unknown hosted models unpriced', () => {
    expect(table.resolvePrice('llama', 'qwen2.5:7b')).toEqual({
      provider: 'llama',
      model: 'qwen2.5:7b',
      price: { inputPerM: '0', outputPerM: '0' },
      selfHosted: true,
    });
    expect(table.resolvePrice('openai', 'gpt-9-preview')).toBeUndefined();
    // A name is resolved on its own provider only.
    expect(table.resolvePrice('openai', 'claude-haiku-4-5')).toBeUndefined();
  });

  it('answers a name the same however often, and past the bound of remembered names', () => {
    const t = new PriceTable();
    const asked = () => [
      t.canonicalId('openai', 'gpt-4o-mini-2024-07-18'),
      t.canonicalId('anthropic', 'claude-haiku-4-5-20251001'),
      t.canonicalId('openai', 'gpt-9-preview'),
      t.canonicalId('llama', 'llama3.2:latest'),
    ];
    const first = asked();
    expect(first).toEqual(['gpt-4o-mini', 'claude-haiku-4-5', undefined, 'llama3.2']);
    expect(asked()).toEqual(first);
    // Callers' names beyond the memo's bound (it starts over): the answers do not change.
    for (let i = 0; i < 10_000; i++) expect(t.canonicalId('openai', `no-such-model-${i}`)).toBeUndefined();
    expect(asked()).toEqual(first);
    expect(t.resolvePrice('openai', 'gpt-4o-mini-2024-07-18')?.model).toBe('gpt-4o-mini');
  });

  it('finds nothing for names of Object.prototype members', () => {
    for (const name of PROTOTYPE_NAMES) {
      expect(table.resolvePrice('openai', name)).toBeUndefined();
      expect(table.resolvePrice(name, 'gpt-4o-mini')).toBeUndefined();
      expect(table.canonicalId('anthropic', `${name}-20251001`)).toBeUndefined();
      expect(table.model('openai', name)).toBeUndefined();
    }
  });

  it('applies routing-file overrides: on a catalog id, an alias, or a dated id of its own', () => {
    const t = priceTable(
      GatewayConfig.parse({
        prices: {
          'openai/gpt-4o-mini': { inputPerM: '0.20', outputPerM: '0.80' },
          'anthropic/claude-sonnet': { inputPerM: '4', outputPerM: '20' },
          'anthropic/claude-haiku-4-5-20251001': { inputPerM: '2', outputPerM: '6' },
          'llama/llama3.2': { inputPerM: '0.01', outputPerM: '0.02' },
          'openai/gpt-9-preview': { inputPerM: '9', outputPerM: '9' },
        },
      }),
    );
    expect(t.resolvePrice('openai', 'gpt-4o-mini-2024-07-18')?.price.inputPerM).toBe('0.20');
    expect(t.resolvePrice('anthropic', 'claude-sonnet-4-5-20250929')?.price.inputPerM).toBe('4');
    // The dated override wins for that snapshot; other names keep the list price.
    expect(t.resolvePrice('anthropic', 'claude-haiku-4-5-20251001')?.price.inputPerM).toBe('2');
    expect(t.resolvePrice('anthropic', 'claude-haiku-4-5')?.price.inputPerM).toBe('1.00');
    expect(t.resolvePrice('llama', 'llama3.2:latest')?.price.inputPerM).toBe('0.01');
    expect(t.resolvePrice('openai', 'gpt-9-preview')?.price.outputPerM).toBe('9');
  });

  it('takes the dated price in force at the instant of the call', () => {
    const day = (d: string) => new Date(d).getTime();
    const t = new PriceTable(BUILTIN_MODELS, {
      history: [
        {
          provider: 'openai',
          model: 'gpt-4o-mini',
          from: day('2026-02-01'),
          price: { inputPerM: '0.3', outputPerM: '1' },
        },
        {
          provider: 'openai',
          model: 'gpt-4o-mini',
          from: day('2026-01-01'),
          price: { inputPerM: '0.2', outputPerM: '1' },
        },
      ],
    });
    expect(t.resolvePrice('openai', 'gpt-4o-mini-2024-07-18', day('2026-01-15'))?.price.inputPerM).toBe(
      '0.2',
    );
    expect(t.resolvePrice('openai', 'gpt-4o-mini', day('2026-03-01'))?.price.inputPerM).toBe('0.3');
    // Before every dated price: the earliest (the catalog date is when prices were taken).
    expect(t.resolvePrice('openai', 'gpt-4o-mini', day('2025-01-01'))?.price.inputPerM).toBe('0.2');
    // A model only the history knows (an override) is resolved too.
    const only = new PriceTable([], {
      history: [{ provider: 'x', model: 'm', from: 0, price: { inputPerM: '1', outputPerM: '1' } }],
    });
    expect(only.resolvePrice('x', 'm-20250101')?.model).toBe('m');
  });
});

describe('routing file tables', () => {
  it('never answer a lookup with an inherited property', () => {
    const c = parseGatewayConfig(
      JSON.stringify({ aliases: { fast: 'openai/gpt-4o-mini' }, fallbacks: {}, prices: {} }),
      {},
    );
    for (const name of PROTOTYPE_NAMES) {
      expect(c.aliases[name]).toBeUndefined();
      expect(c.fallbacks[name]).toBeUndefined();
      expect(c.prices[name]).toBeUndefined();
      expect(c.providers[name]).toBeUndefined();
    }
    expect(c.aliases.fast).toBe('openai/gpt-4o-mini');
  });
});

describe('maxCallCostMicros', () => {
  it('charges every prompt token at the dearest input class and rounds up', () => {
    // claude-haiku-4-5: 1-hour cache writes (2.00) cost more than 5-minute ones (1.25) and input (1.00).
    const haiku = {
      inputPerM: '1.00',
      cachedInputPerM: '0.10',
      cacheWritePerM: '1.25',
      cacheWrite1hPerM: '2.00',
      outputPerM: '5.00',
    };
    expect(maxCallCostMicros(haiku, 1000, 100)).toBe(2000n + 500n);
    // A model with a cache-write price but no 1-hour one: its 1-hour writes cost twice the input.
    expect(maxCallCostMicros({ ...haiku, cacheWrite1hPerM: undefined }, 1000, 100)).toBe(2000n + 500n);
    // A model without cache writes (OpenAI's) is never held at the 1-hour fallback.
    expect(
      maxCallCostMicros({ inputPerM: '1.00', cachedInputPerM: '0.50', outputPerM: '5.00' }, 1000, 100),
    ).toBe(1000n + 500n);
    // gpt-4o-mini: 3 × 0.15 + 1 × 0.6 = 1.05 µUSD → 2 (a hold never rounds below the cost).
    expect(maxCallCostMicros({ inputPerM: '0.15', outputPerM: '0.60' }, 3, 1)).toBe(2n);
    expect(maxCallCostMicros({ inputPerM: '0', outputPerM: '0' }, 1_000_000, 1_000_000)).toBe(0n);
  });
});
