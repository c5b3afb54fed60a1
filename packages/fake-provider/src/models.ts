import type { FakeProviderId } from './types.ts';

/** Served ids per provider. Anthropic lists dated ids and accepts the undated alias (and `-latest`). */
export const DEFAULT_MODELS: Readonly<Record<FakeProviderId, readonly string[]>> = {
  openai: [
    'gpt-4o-mini',
    'gpt-4o',
    'gpt-4.1',
    'gpt-4.1-mini',
    'gpt-4.1-nano',
    'gpt-5',
    'gpt-5-mini',
    'gpt-5-nano',
    'o4-mini',
    'o3',
    'text-embedding-3-small',
    'text-embedding-3-large',
  ],
  anthropic: [
    'claude-sonnet-4-5-20250929',
    'claude-haiku-4-5-20251001',
    'claude-opus-4-5-20251101',
    'claude-3-5-haiku-20241022',
  ],
  gemini: [
    'gemini-2.5-flash',
    'gemini-2.5-pro',
    'gemini-2.5-flash-lite',
    'gemini-2.0-flash',
    'gemini-embedding-001',
    'text-embedding-004',
  ],
  llama: ['llama3.2', 'llama3.1:8b', 'nomic-embed-text'],
};

/** Context windows (input) and output caps the listings advertise and the fake enforces. */
const WINDOWS: Record<string, { input: number; output: number }> = {
  'gpt-4o-mini': { input: 128_000, output: 16_384 },
  'gpt-4o': { input: 128_000, output: 16_384 },
  'gpt-4.1': { input: 1_047_576, output: 32_768 },
  'gpt-4.1-mini': { input: 1_047_576, output: 32_768 },
  'gpt-4.1-nano': { input: 1_047_576, output: 32_768 },
  'gpt-5': { input: 400_000, output: 128_000 },
  'gpt-5-mini': { input: 400_000, output: 128_000 },
  'gpt-5-nano': { input: 400_000, output: 128_000 },
  'o4-mini': { input: 200_000, output: 100_000 },
  o3: { input: 200_000, output: 100_000 },
  'claude-opus-4-5-20251101': { input: 200_000, output: 64_000 },
  'claude-sonnet-4-5-20250929': { input: 200_000, output: 64_000 },
  'claude-haiku-4-5-20251001': { input: 200_000, output: 64_000 },
  'claude-3-5-haiku-20241022': { input: 200_000, output: 8_192 },
  'gemini-2.5-flash': { input: 1_048_576, output: 65_536 },
  'gemini-2.5-pro': { input: 1_048_576, output: 65_536 },
  'gemini-2.5-flash-lite': { input: 1_048_576, output: 65_536 },
  'gemini-2.0-flash': { input: 1_048_576, output: 8_192 },
};
const DEFAULT_WINDOW = { input: 128_000, output: 8_192 };

export function modelWindow(id: string): { input: number; output: number } {
  return WINDOWS[id] ?? DEFAULT_WINDOW;
}

const DATE_SUFFIX = /-\d{8}$/;

/**
 * The served id a requested name refers to, or undefined (→ the provider's 404). Anthropic ids may be
 * asked for without their date or as `-latest`; Ollama names without a tag mean `:latest`.
 */
export function resolveModel(provider: FakeProviderId, served: readonly string[], requested: string) {
  for (const id of served) {
    if (id === requested) return id;
    if (provider === 'anthropic' && DATE_SUFFIX.test(id)) {
      const alias = id.replace(DATE_SUFFIX, '');
      if (requested === alias || requested === `${alias}-latest`) return id;
    }
    if (provider === 'llama' && ollamaName(id) === ollamaName(requested)) return id;
  }
  return undefined;
}

/** Ollama's listing name: an untagged model is `name:latest`. */
export function ollamaName(id: string): string {
  return id.includes(':') ? id : `${id}:latest`;
}

/** `claude-sonnet-4-5-20250929` → `Claude Sonnet 4.5`; `gemini-2.5-flash` → `Gemini 2.5 Flash`. */
export function displayName(id: string): string {
  const words = id.replace(DATE_SUFFIX, '').split('-');
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const next = words[i + 1];
    // Anthropic writes versions as separate numeric segments: 4-5 → 4.5.
    if (/^\d+$/.test(w) && next !== undefined && /^\d+$/.test(next)) {
      out.push(`${w}.${next}`);
      i++;
    } else out.push(w.charAt(0).toUpperCase() + w.slice(1));
  }
  return out.join(' ');
}

/** `YYYYMMDD` suffix → RFC 3339 date, for Anthropic's `created_at`. */
export function createdAt(id: string): string {
  const m = /-(\d{4})(\d{2})(\d{2})$/.exec(id);
  return m ? `${m[1]}-${m[2]}-${m[3]}T00:00:00Z` : '2025-01-01T00:00:00Z';
}
