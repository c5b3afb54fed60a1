import { z } from 'zod';

/**
 * Known models: list prices (USD per million tokens, as exact decimal strings), context windows
 * and capabilities. These are the providers' public list prices as published on PRICES_TAKEN_AT.
 * They could not be re-checked since (this project is built without network access): verify them
 * against each provider's pricing page, and override them in the routing file (`prices`).
 * Discovery merges in models the providers report.
 */
export const PRICES_TAKEN_AT = '2025-11-01';

/** `embeddings`: an embedding model (served by `/v1/embeddings` only, never routed a chat request). */
export const Capability = z.enum(['tools', 'vision', 'json_schema', 'reasoning', 'streaming', 'embeddings']);
export type Capability = z.infer<typeof Capability>;

/** Decimal string with up to 6 fractional digits: USD per 1M tokens. */
const Usd = z.string().regex(/^\d+(\.\d{1,6})?$/, 'a decimal USD amount like "0.15"');

/** The rates of every token class (USD per 1M tokens). */
const Rates = {
  inputPerM: Usd,
  /** Absent = the input price. */
  cachedInputPerM: Usd.optional(),
  /** 5-minute cache writes (Anthropic's default TTL); absent = the input price. */
  cacheWritePerM: Usd.optional(),
  /** 1-hour cache writes (`cache_control.ttl: "1h"`); absent = twice the input price, Anthropic's rule. */
  cacheWrite1hPerM: Usd.optional(),
  outputPerM: Usd,
};

/**
 * The rates of a call whose prompt (every input token, cached and cache-write ones included) is
 * longer than `abovePromptTokens`: they apply to all of that call's tokens, output included, as
 * Google prices Gemini 2.5 Pro past 200k prompt tokens. Missing cache rates fall back as the base
 * ones do, to this tier's input rate.
 */
export const PriceTier = z.object({ abovePromptTokens: z.number().int().positive(), ...Rates });
export type PriceTier = z.infer<typeof PriceTier>;

/**
 * A model's price: base rates, and optionally tiers by prompt size (a call is priced at the tier
 * with the highest threshold its prompt exceeds, else at the base rates). The routing file's
 * `prices` use this shape: an override is the whole price, so one without `tiers` is flat.
 */
export const ModelPrice = z.object({
  ...Rates,
  tiers: z
    .array(PriceTier)
    .refine((t) => new Set(t.map((x) => x.abovePromptTokens)).size === t.length, {
      message: 'each tier needs its own abovePromptTokens',
    })
    .optional(),
});
export type ModelPrice = z.infer<typeof ModelPrice>;

export const CatalogModel = z.object({
  provider: z.string(),
  /** The provider's own model id. */
  id: z.string(),
  aliases: z.array(z.string()).default([]),
  contextWindow: z.number().int().positive(),
  maxOutputTokens: z.number().int().positive(),
  capabilities: z.array(Capability),
  price: ModelPrice.optional(),
  /** Model list `created` (unix seconds). */
  created: z.number().int().optional(),
  /** An embedding model's vector size, and whether a request's `dimensions` may shorten it. */
  dimensions: z.object({ max: z.number().int().positive(), settable: z.boolean() }).optional(),
  /**
   * Known by its price alone (the routing file prices a model the catalog lacks): its window, output
   * limit and capabilities are placeholders, not the model's, and are held as unknown (directory.ts).
   */
  pricedOnly: z.literal(true).optional(),
});
export type CatalogModel = z.infer<typeof CatalogModel>;

const all: Capability[] = ['tools', 'vision', 'json_schema', 'streaming'];
const m = (
  provider: string,
  id: string,
  contextWindow: number,
  maxOutputTokens: number,
  capabilities: Capability[],
  price: ModelPrice,
  aliases: string[] = [],
): CatalogModel => ({ provider, id, aliases, contextWindow, maxOutputTokens, capabilities, price });

export const BUILTIN_MODELS: CatalogModel[] = [
  // OpenAI
  m('openai', 'gpt-4o-mini', 128_000, 16_384, all, {
    inputPerM: '0.15',
    cachedInputPerM: '0.075',
    outputPerM: '0.60',
  }),
  m('openai', 'gpt-4o', 128_000, 16_384, all, {
    inputPerM: '2.50',
    cachedInputPerM: '1.25',
    outputPerM: '10.00',
  }),
  m('openai', 'gpt-4.1', 1_047_576, 32_768, all, {
    inputPerM: '2.00',
    cachedInputPerM: '0.50',
    outputPerM: '8.00',
  }),
  m('openai', 'gpt-4.1-mini', 1_047_576, 32_768, all, {
    inputPerM: '0.40',
    cachedInputPerM: '0.10',
    outputPerM: '1.60',
  }),
  m('openai', 'gpt-4.1-nano', 1_047_576, 32_768, all, {
    inputPerM: '0.10',
    cachedInputPerM: '0.025',
    outputPerM: '0.40',
  }),
  m('openai', 'gpt-5', 400_000, 128_000, [...all, 'reasoning'], {
    inputPerM: '1.25',
    cachedInputPerM: '0.125',
    outputPerM: '10.00',
  }),
  m('openai', 'gpt-5-mini', 400_000, 128_000, [...all, 'reasoning'], {
    inputPerM: '0.25',
    cachedInputPerM: '0.025',
    outputPerM: '2.00',
  }),
  m('openai', 'gpt-5-nano', 400_000, 128_000, [...all, 'reasoning'], {
    inputPerM: '0.05',
    cachedInputPerM: '0.005',
    outputPerM: '0.40',
  }),
  m('openai', 'o4-mini', 200_000, 100_000, [...all, 'reasoning'], {
    inputPerM: '1.10',
    cachedInputPerM: '0.275',
    outputPerM: '4.40',
  }),
  m('openai', 'o3', 200_000, 100_000, [...all, 'reasoning'], {
    inputPerM: '2.00',
    cachedInputPerM: '0.50',
    outputPerM: '8.00',
  }),
  // Anthropic (cache reads 0.1×, 5-minute cache writes 1.25× input, 1-hour writes 2×). Its long-context
  // prices (prompts over 200k tokens, 2× input, 1.5× output) apply only with the 1M-context beta
  // (`anthropic-beta: context-1m-…`, Sonnet 4 and 4.5), which the gateway does not send: these models
  // take 200k tokens here, so no call reaches that tier and none is listed.
  m(
    'anthropic',
    'claude-sonnet-4-5',
    200_000,
    64_000,
    [...all, 'reasoning'],
    {
      inputPerM: '3.00',
      cachedInputPerM: '0.30',
      cacheWritePerM: '3.75',
      cacheWrite1hPerM: '6.00',
      outputPerM: '15.00',
    },
    ['claude-sonnet'],
  ),
  m(
    'anthropic',
    'claude-haiku-4-5',
    200_000,
    64_000,
    [...all, 'reasoning'],
    {
      inputPerM: '1.00',
      cachedInputPerM: '0.10',
      cacheWritePerM: '1.25',
      cacheWrite1hPerM: '2.00',
      outputPerM: '5.00',
    },
    ['claude-haiku'],
  ),
  m(
    'anthropic',
    'claude-opus-4-5',
    200_000,
    64_000,
    [...all, 'reasoning'],
    {
      inputPerM: '5.00',
      cachedInputPerM: '0.50',
      cacheWritePerM: '6.25',
      cacheWrite1hPerM: '10.00',
      outputPerM: '25.00',
    },
    ['claude-opus'],
  ),
  m('anthropic', 'claude-3-5-haiku-latest', 200_000, 8_192, all, {
    inputPerM: '0.80',
    cachedInputPerM: '0.08',
    cacheWritePerM: '1.00',
    cacheWrite1hPerM: '1.60',
    outputPerM: '4.00',
  }),
  // Google Gemini. 2.5 Pro prices prompts over 200k tokens higher, all of the call's tokens (input
  // 2×, output 1.5×, cache reads 2×); Flash, Flash-Lite and 2.0 Flash are flat.
  m(
    'gemini',
    'gemini-2.5-flash',
    1_048_576,
    65_536,
    [...all, 'reasoning'],
    { inputPerM: '0.30', cachedInputPerM: '0.03', outputPerM: '2.50' },
    ['gemini-flash'],
  ),
  m(
    'gemini',
    'gemini-2.5-pro',
    1_048_576,
    65_536,
    [...all, 'reasoning'],
    {
      inputPerM: '1.25',
      cachedInputPerM: '0.125',
      outputPerM: '10.00',
      tiers: [
        { abovePromptTokens: 200_000, inputPerM: '2.50', cachedInputPerM: '0.25', outputPerM: '15.00' },
      ],
    },
    ['gemini-pro'],
  ),
  m('gemini', 'gemini-2.5-flash-lite', 1_048_576, 65_536, all, {
    inputPerM: '0.10',
    cachedInputPerM: '0.01',
    outputPerM: '0.40',
  }),
  m('gemini', 'gemini-2.0-flash', 1_048_576, 8_192, all, {
    inputPerM: '0.10',
    cachedInputPerM: '0.025',
    outputPerM: '0.40',
  }),
  // Embedding models: input tokens only (contextWindow: the most one input may hold). Checked for
  // #16 against OpenAI's model pages (3-small $0.02, 3-large $0.13 per 1M tokens), its listing of
  // ada-002 ($0.10), and Google's Gemini API price for gemini-embedding-001 ($0.15; LiteLLM's price
  // map agrees). Gemini's text-embedding-004 is not listed: Google shut it down on the Gemini API
  // on 2026-01-14 (gemini-embedding-001 replaces it).
  // Vector sizes: OpenAI's 3rd-generation models shorten to `dimensions`, ada-002 does not take it;
  // gemini-embedding-001 takes outputDimensionality up to 3,072.
  {
    ...m('openai', 'text-embedding-3-small', 8_191, 1, ['embeddings'], {
      inputPerM: '0.02',
      outputPerM: '0',
    }),
    dimensions: { max: 1536, settable: true },
  },
  {
    ...m('openai', 'text-embedding-3-large', 8_191, 1, ['embeddings'], {
      inputPerM: '0.13',
      outputPerM: '0',
    }),
    dimensions: { max: 3072, settable: true },
  },
  {
    ...m('openai', 'text-embedding-ada-002', 8_191, 1, ['embeddings'], {
      inputPerM: '0.10',
      outputPerM: '0',
    }),
    dimensions: { max: 1536, settable: false },
  },
  {
    ...m('gemini', 'gemini-embedding-001', 2_048, 1, ['embeddings'], { inputPerM: '0.15', outputPerM: '0' }),
    dimensions: { max: 3072, settable: true },
  },
  m('llama', 'nomic-embed-text', 8_192, 1, ['embeddings'], { inputPerM: '0', outputPerM: '0' }),
  // Self-hosted Llama (Ollama / vLLM): zero by default, priced by configuration.
  m('llama', 'llama3.2', 131_072, 8_192, ['tools', 'streaming', 'json_schema'], {
    inputPerM: '0',
    outputPerM: '0',
  }),
  m('llama', 'llama3.1:8b', 131_072, 8_192, ['tools', 'streaming', 'json_schema'], {
    inputPerM: '0',
    outputPerM: '0',
  }),
];
