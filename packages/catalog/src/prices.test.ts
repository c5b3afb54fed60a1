import { describe, expect, it } from 'vitest';
import { GatewayConfig, parseGatewayConfig, priceTable } from './gateway-config.ts';
import { BUILTIN_MODELS, type ModelPrice } from './models.ts';
import { callCostMicros, maxCallCostMicros, PriceTable, toMicroPrice } from './prices.ts';

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
    expect(table.resolvePrice('anthropic', 'claude-3-5-haiku-latest')?.model).toBe('claude-3-5-haiku-latest');
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

  it('resolves only names the provider defines: no made-up -latest, :latest off Ollama, no made-up version', () => {
    // `-latest` is a name only where the provider defines it (Anthropic's claude-3-5-haiku-latest).
    for (const [provider, name] of [
      ['openai', 'gpt-4o-latest'],
      ['openai', 'gpt-4o-mini-latest'],
      ['openai', 'o3-latest'],
      ['anthropic', 'claude-opus-4-5-latest'],
      ['anthropic', 'claude-haiku-4-5-latest'],
      ['anthropic', 'claude-haiku-latest'],
      // Ollama's tag, on providers that are not Ollama.
      ['openai', 'gpt-4o-mini:latest'],
      ['anthropic', 'claude-haiku-4-5:latest'],
      ['gemini', 'gemini-2.5-flash:latest'],
      // Gemini's `-NNN` versions are Gemini's only.
      ['openai', 'gpt-4o-mini-001'],
      ['anthropic', 'claude-haiku-4-5-001'],
    ] as const) {
      expect(table.canonicalId(provider, name), `${provider}/${name}`).toBeUndefined();
      expect(table.resolvePrice(provider, name), `${provider}/${name}`).toBeUndefined();
    }
    // Ollama's pools: `name` and `name:latest` are one model.
    expect(table.canonicalId('llama', 'llama3.2:latest')).toBe('llama3.2');
    expect(table.canonicalId('ollama', 'llama3.2:latest')).toBeUndefined();
    expect(
      new PriceTable(BUILTIN_MODELS, { tagged: ['ollama'] }).canonicalId('llama', 'llama3.2:latest'),
    ).toBe(undefined);
  });

  it('pins snapshots: a dated or Gemini -NNN name the catalog does not list answers only when served', () => {
    // Priced as their model when a pool serves them (billing prices the served id)...
    expect(table.canonicalId('gemini', 'gemini-2.0-flash-001')).toBe('gemini-2.0-flash');
    expect(table.canonicalId('gemini', 'gemini-2.5-flash-999')).toBe('gemini-2.5-flash');
    expect(table.canonicalId('anthropic', 'claude-3-5-haiku-20241022')).toBe('claude-3-5-haiku-latest');
    // ...but such a name pins that snapshot: never answered by the undated model.
    for (const [provider, name] of [
      ['gemini', 'gemini-2.0-flash-001'],
      ['gemini', 'gemini-2.5-flash-999'],
      ['gemini', 'gemini-2.5-flash-002'],
      ['gemini', 'gemini-flash-002'],
      ['openai', 'gpt-4o-mini-2024-07-18'],
      ['anthropic', 'claude-haiku-4-5-20990101'],
      ['llama', 'llama3.2-20250101:latest'],
    ] as const)
      expect(table.pinsSnapshot(provider, name), `${provider}/${name}`).toBe(true);
    // Catalog ids and aliases that merely end like a snapshot, and undated names, pin nothing.
    for (const [provider, name] of [
      ['gemini', 'gemini-embedding-001'],
      ['openai', 'text-embedding-ada-002'],
      ['gemini', 'gemini-2.5-flash'],
      ['anthropic', 'claude-3-5-haiku-latest'],
      ['anthropic', 'claude-haiku'],
      ['llama', 'llama3.2:latest'],
      ['openai', 'gpt-4o-latest'],
    ] as const)
      expect(table.pinsSnapshot(provider, name), `${provider}/${name}`).toBe(false);
    // A version the catalog lists (a dated or versioned price of its own) is a name as it is.
    const listed = priceTable(
      GatewayConfig.parse({
        prices: { 'gemini/gemini-2.0-flash-001': { inputPerM: '0.1', outputPerM: '0.4' } },
      }),
    );
    expect(listed.pinsSnapshot('gemini', 'gemini-2.0-flash-001')).toBe(false);
    expect(listed.canonicalId('gemini', 'gemini-2.0-flash-001')).toBe('gemini-2.0-flash-001');
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

describe('price tiers by prompt size', () => {
  const tokens = (inputTokens: number, outputTokens: number, cachedInputTokens = 0) => ({
    inputTokens,
    cachedInputTokens,
    cacheWriteTokens: 0,
    outputTokens,
  });

  it("prices a Gemini 2.5 Pro prompt over 200k tokens at Google's higher tier, every token of the call", () => {
    // The outside probe: 256,428 prompt tokens at $2.50/M and 1,000 output tokens at $15/M.
    expect(table.callCostMicros('gemini', 'gemini-2.5-pro', tokens(256_428, 1_000))).toBe(641_070n + 15_000n);
    // Cached input doubles too ($0.25/M): 156,428 × 2.50 + 100,000 × 0.25 + 1,000 × 15.
    expect(table.callCostMicros('gemini', 'gemini-2.5-pro', tokens(256_428, 1_000, 100_000))).toBe(
      391_070n + 25_000n + 15_000n,
    );
    // 200,000 tokens is not over 200k: $1.25/M and $10/M.
    expect(table.callCostMicros('gemini', 'gemini-2.5-pro', tokens(200_000, 1_000))).toBe(250_000n + 10_000n);
    expect(table.callCostMicros('gemini', 'gemini-2.5-pro', tokens(200_001, 0))).toBe(500_003n);
    // Its alias and a served version are the same price; Flash is flat.
    expect(table.callCostMicros('gemini', 'gemini-pro', tokens(256_428, 1_000))).toBe(656_070n);
    expect(table.callCostMicros('gemini', 'gemini-2.5-flash', tokens(256_428, 1_000))).toBe(76_929n + 2_500n);
  });

  it('holds a call whose prompt bound passes the threshold at the higher tier, and a shorter one at the base', () => {
    const pro = table.resolvePrice('gemini', 'gemini-2.5-pro')!.price;
    expect(maxCallCostMicros(pro, 256_428, 1_000)).toBe(656_070n);
    expect(maxCallCostMicros(pro, 200_000, 1_000)).toBe(260_000n);
    // Tiers apply at the highest threshold passed, whatever order they are written in; a tier cheaper
    // than the base is never what a hold reserves.
    const odd = {
      inputPerM: '1',
      outputPerM: '1',
      tiers: [
        { abovePromptTokens: 1_000, inputPerM: '3', outputPerM: '3' },
        { abovePromptTokens: 100, inputPerM: '0.5', outputPerM: '0.5' },
      ],
    };
    expect(maxCallCostMicros(odd, 500, 0)).toBe(500n);
    expect(maxCallCostMicros(odd, 2_000, 0)).toBe(6_000n);
    expect(callCostMicros(tokens(500, 0), toMicroPrice(odd))).toBe(250n);
    expect(callCostMicros(tokens(2_000, 0), toMicroPrice(odd))).toBe(6_000n);
  });

  it('takes tiers in routing-file overrides; an override without them is flat, as before', () => {
    const t = priceTable(
      parseGatewayConfig(
        JSON.stringify({
          prices: {
            'gemini/gemini-2.5-pro': {
              inputPerM: '1',
              outputPerM: '8',
              tiers: [{ abovePromptTokens: 200000, inputPerM: '2', outputPerM: '12' }],
            },
            'gemini/gemini-pro': { inputPerM: '1', outputPerM: '8' },
            'openai/gpt-4o-mini': { inputPerM: '0.20', outputPerM: '0.80' },
          },
        }),
        {},
      ),
    );
    // The alias override came last: the whole price, flat.
    expect(t.callCostMicros('gemini', 'gemini-2.5-pro', tokens(300_000, 1_000))).toBe(300_000n + 8_000n);
    const tiered = priceTable(
      GatewayConfig.parse({
        prices: {
          'gemini/gemini-2.5-pro': {
            inputPerM: '1',
            outputPerM: '8',
            tiers: [{ abovePromptTokens: 200000, inputPerM: '2', outputPerM: '12' }],
          },
        },
      }),
    );
    expect(tiered.callCostMicros('gemini', 'gemini-2.5-pro', tokens(300_000, 1_000))).toBe(
      600_000n + 12_000n,
    );
    expect(tiered.callCostMicros('gemini', 'gemini-2.5-pro', tokens(100_000, 1_000))).toBe(100_000n + 8_000n);
    expect(t.resolvePrice('openai', 'gpt-4o-mini')?.price).toEqual({ inputPerM: '0.20', outputPerM: '0.80' });
    expect(() =>
      GatewayConfig.parse({
        prices: {
          'gemini/gemini-2.5-pro': {
            inputPerM: '1',
            outputPerM: '8',
            tiers: [
              { abovePromptTokens: 200000, inputPerM: '2', outputPerM: '12' },
              { abovePromptTokens: 200000, inputPerM: '3', outputPerM: '12' },
            ],
          },
        },
      }),
    ).toThrow(/abovePromptTokens/);
  });

  it("reads a stored price (base rates only) with the tiers of the model's listed price when it is that price", () => {
    const stored = (price: ModelPrice) =>
      new PriceTable(BUILTIN_MODELS, {
        history: [{ provider: 'gemini', model: 'gemini-2.5-pro', from: 0, price }],
      });
    // As Postgres returns numeric(20,6): the listed price, synced at start.
    const synced = stored({ inputPerM: '1.250000', cachedInputPerM: '0.125000', outputPerM: '10.000000' });
    expect(synced.callCostMicros('gemini', 'gemini-2.5-pro-001', tokens(256_428, 1_000))).toBe(656_070n);
    expect(synced.microPrice('gemini', 'gemini-2.5-pro')?.tiers).toHaveLength(1);
    // Another stored price (an older one, an override without tiers) is flat, as written.
    const other = stored({ inputPerM: '1.000000', outputPerM: '8.000000' });
    expect(other.callCostMicros('gemini', 'gemini-2.5-pro', tokens(256_428, 1_000))).toBe(256_428n + 8_000n);
  });
});
