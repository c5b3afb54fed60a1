import { anthropicAdapter } from './anthropic/index.ts';
import { geminiAdapter } from './gemini/index.ts';
import { openaiAdapter } from './openai/index.ts';
import { openAICompatible } from './openai-compatible/index.ts';
import { PRESETS, presetById } from './presets.ts';
import type { ProviderAdapter, ProviderConfig, ProviderKind, Timeouts } from './types.ts';

const genericCompatible = openAICompatible();
/** Adapters are stateless translation objects: one per preset, built once. */
const presetAdapters = new Map<string, ProviderAdapter>(
  PRESETS.map((p) => [p.id, openAICompatible({ quirks: p.quirks })]),
);

/** The adapter for a wire protocol; `preset` selects an OpenAI-compatible host's quirks. */
export function adapterFor(kind: ProviderKind, preset?: string): ProviderAdapter {
  switch (kind) {
    case 'openai':
      return openaiAdapter;
    case 'anthropic':
      return anthropicAdapter;
    case 'gemini':
      return geminiAdapter;
    case 'openai-compatible':
      return (preset !== undefined && presetAdapters.get(preset)) || genericCompatible;
  }
}

export const adapterForConfig = (config: ProviderConfig): ProviderAdapter =>
  adapterFor(config.kind, config.preset);

type Env = Record<string, string | undefined>;

const val = (env: Env, name: string): string | undefined => {
  const v = env[name]?.trim();
  return v ? v : undefined;
};

/** `KEY1,KEY2` → rotation list. */
export const splitKeys = (v: string | undefined): string[] =>
  (v ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k !== '');

const FAKE_KEY = 'fake-key';

interface Builtin {
  id: string;
  kind: ProviderKind;
  keyEnv: string;
  baseUrlEnv: string;
  defaultBaseUrl: string;
  fakePath: string;
}

const BUILTINS: Builtin[] = [
  {
    id: 'openai',
    kind: 'openai',
    keyEnv: 'OPENAI_API_KEY',
    baseUrlEnv: 'OPENAI_BASE_URL',
    defaultBaseUrl: 'https://api.openai.com/v1',
    fakePath: '/openai/v1',
  },
  {
    id: 'anthropic',
    kind: 'anthropic',
    keyEnv: 'ANTHROPIC_API_KEY',
    baseUrlEnv: 'ANTHROPIC_BASE_URL',
    defaultBaseUrl: 'https://api.anthropic.com',
    fakePath: '/anthropic',
  },
  {
    id: 'gemini',
    kind: 'gemini',
    keyEnv: 'GEMINI_API_KEY',
    baseUrlEnv: 'GEMINI_BASE_URL',
    defaultBaseUrl: 'https://generativelanguage.googleapis.com',
    fakePath: '/gemini',
  },
];

/**
 * Provider configs from the environment (passed in; this never reads process.env).
 * - openai / anthropic / gemini: configured when their key is set (base URL from `*_BASE_URL` or the
 *   public default), or keyless when only `*_BASE_URL` is set (a local stand-in).
 * - llama (OpenAI-compatible): configured when `LLAMA_BASE_URL` is set; `LLAMA_PRESET` (`ollama`
 *   default, or `vllm`) picks the host's quirks.
 * - presets (`presets.ts`): configured when their key env var is set.
 * - `FAKE_PROVIDER_URL`: a built-in or llama left unconfigured points at the fake with `fake: true`.
 */
export function providersFromEnv(env: Env): ProviderConfig[] {
  const fake = val(env, 'FAKE_PROVIDER_URL')?.replace(/\/+$/, '');
  const out: ProviderConfig[] = [];
  for (const b of BUILTINS) {
    const keys = splitKeys(env[b.keyEnv]);
    const baseUrl = val(env, b.baseUrlEnv);
    if (keys.length > 0 || baseUrl) {
      out.push({ id: b.id, kind: b.kind, baseUrl: baseUrl ?? b.defaultBaseUrl, apiKeys: keys });
    } else if (fake) {
      out.push({ id: b.id, kind: b.kind, baseUrl: fake + b.fakePath, apiKeys: [FAKE_KEY], fake: true });
    }
  }
  const llamaUrl = val(env, 'LLAMA_BASE_URL');
  const llamaPreset = val(env, 'LLAMA_PRESET') === 'vllm' ? 'vllm' : 'ollama';
  if (llamaUrl) {
    out.push({
      id: 'llama',
      kind: 'openai-compatible',
      baseUrl: llamaUrl,
      apiKeys: splitKeys(env.LLAMA_API_KEY),
      preset: llamaPreset,
    });
  } else if (fake) {
    out.push({
      id: 'llama',
      kind: 'openai-compatible',
      baseUrl: `${fake}/llama/v1`,
      apiKeys: [FAKE_KEY],
      preset: llamaPreset,
      fake: true,
    });
  }
  for (const p of PRESETS) {
    const keys = splitKeys(env[p.keyEnv]);
    if (keys.length === 0) continue;
    out.push({
      id: p.id,
      kind: 'openai-compatible',
      baseUrl: val(env, p.baseUrlEnv) ?? p.baseUrl,
      apiKeys: keys,
      preset: p.id,
      ...(p.headers ? { headers: { ...p.headers } } : {}),
    });
  }
  const timeouts = timeoutsFromEnv(env);
  return timeouts ? out.map((c) => ({ ...c, timeouts })) : out;
}

/**
 * Every provider call's timeouts, from `UPSTREAM_CONNECT_MS`, `UPSTREAM_FIRST_BYTE_MS`,
 * `UPSTREAM_IDLE_MS` and `UPSTREAM_TOTAL_MS` (call.ts's defaults for those not set). A whole
 * (non-streamed) answer sends its headers only once it is done, so it is bounded by the larger of
 * first byte and total: lowering the total makes a provider that hangs on one fail (retryable, then
 * the fallback) sooner, and cuts a call longer than that. Throws on a value that is not a positive integer.
 */
export function timeoutsFromEnv(env: Env): Partial<Timeouts> | undefined {
  const names = {
    connectMs: 'UPSTREAM_CONNECT_MS',
    firstByteMs: 'UPSTREAM_FIRST_BYTE_MS',
    idleMs: 'UPSTREAM_IDLE_MS',
    totalMs: 'UPSTREAM_TOTAL_MS',
  } as const;
  const t: Partial<Timeouts> = {};
  for (const [field, name] of Object.entries(names) as [keyof Timeouts, string][]) {
    const v = val(env, name);
    if (v === undefined) continue;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new Error(`${name} must be a positive integer of ms, got ${JSON.stringify(v)}`);
    t[field] = n;
  }
  return Object.keys(t).length > 0 ? t : undefined;
}

export { presetById };

/** Masks every configured key in `text` (log lines, error messages). */
export function redact(text: string, config: ProviderConfig | readonly ProviderConfig[]): string {
  const configs = Array.isArray(config) ? config : [config as ProviderConfig];
  let s = text;
  for (const c of configs) {
    for (const key of c.apiKeys) {
      if (key.length > 0 && s.includes(key)) s = s.split(key).join('[redacted]');
    }
  }
  return s;
}
