import type { OpenAICompatibleQuirks } from './openai-compatible/quirks.ts';

/** An OpenAI-compatible host as configuration: where it lives, which env vars configure it, how it differs. */
export interface ProviderPreset {
  /** Pool / queue name. */
  id: string;
  displayName: string;
  /** Includes the version segment, like OPENAI_BASE_URL. */
  baseUrl: string;
  /** Env var holding the key(s), comma-separated for rotation. */
  keyEnv: string;
  /** Env var overriding the base URL. */
  baseUrlEnv: string;
  quirks: OpenAICompatibleQuirks;
  /** Static headers the host asks for (never from tenants). */
  headers?: Record<string, string>;
}

/** Fields OpenAI-compatible hosts commonly do not implement; refusing beats silently ignoring. */
const NO_LOGIT_BIAS = ['logit_bias'] as const;
/** One choice per request, no log probabilities (`n`, `logprobs`, `top_logprobs`). */
const ONE_CHOICE = ['n', 'logprobs', 'top_logprobs'] as const;

export const PRESETS: readonly ProviderPreset[] = [
  {
    // Ollama's /v1: no tool_choice, no remote images, no logit_bias, n or logprobs (providers.md §4.1),
    // embeddings as floats only.
    id: 'ollama',
    displayName: 'Ollama',
    baseUrl: 'http://localhost:11434/v1',
    keyEnv: 'OLLAMA_API_KEY',
    baseUrlEnv: 'OLLAMA_BASE_URL',
    quirks: {
      noToolChoice: true,
      dataUrlImagesOnly: true,
      noDeveloperRole: true,
      unsupported: [...NO_LOGIT_BIAS, ...ONE_CHOICE],
      placeholderKey: 'ollama',
      errorShape: 'openai',
      floatEmbeddings: true,
    },
  },
  {
    // vLLM: integer error codes; older releases answer 400 to unknown fields (§4.2).
    id: 'vllm',
    displayName: 'vLLM',
    baseUrl: 'http://localhost:8000/v1',
    keyEnv: 'VLLM_API_KEY',
    baseUrlEnv: 'VLLM_BASE_URL',
    quirks: { noDeveloperRole: true, drop: ['user'], errorShape: 'integer-code' },
  },
  {
    id: 'groq',
    displayName: 'Groq',
    baseUrl: 'https://api.groq.com/openai/v1',
    keyEnv: 'GROQ_API_KEY',
    baseUrlEnv: 'GROQ_BASE_URL',
    // Groq: n must be 1, logprobs not supported.
    quirks: {
      maxTokensField: 'max_completion_tokens',
      unsupported: [...NO_LOGIT_BIAS, ...ONE_CHOICE],
      errorShape: 'openai',
    },
  },
  {
    id: 'together',
    displayName: 'Together AI',
    baseUrl: 'https://api.together.xyz/v1',
    keyEnv: 'TOGETHER_API_KEY',
    baseUrlEnv: 'TOGETHER_BASE_URL',
    // Together's logprobs is a count, not OpenAI's boolean: refused rather than mistranslated.
    quirks: { noDeveloperRole: true, unsupported: ['logprobs', 'top_logprobs'], errorShape: 'openai' },
  },
  {
    id: 'deepseek',
    displayName: 'DeepSeek',
    baseUrl: 'https://api.deepseek.com/v1',
    keyEnv: 'DEEPSEEK_API_KEY',
    baseUrlEnv: 'DEEPSEEK_BASE_URL',
    // DeepSeek: no n (logprobs are taken).
    quirks: { noDeveloperRole: true, unsupported: ['logit_bias', 'seed', 'n'], errorShape: 'openai' },
  },
  {
    // Mistral validates strictly (422 on unknown fields) and calls the seed `random_seed`.
    id: 'mistral',
    displayName: 'Mistral',
    baseUrl: 'https://api.mistral.ai/v1',
    keyEnv: 'MISTRAL_API_KEY',
    baseUrlEnv: 'MISTRAL_BASE_URL',
    quirks: {
      noDeveloperRole: true,
      // n is taken; log probabilities are not.
      unsupported: ['logit_bias', 'seed', 'logprobs', 'top_logprobs'],
      drop: ['user'],
      errorShape: 'flat',
    },
  },
  {
    id: 'openrouter',
    displayName: 'OpenRouter',
    baseUrl: 'https://openrouter.ai/api/v1',
    keyEnv: 'OPENROUTER_API_KEY',
    baseUrlEnv: 'OPENROUTER_BASE_URL',
    // One choice per request; logprobs only where the routed-to model has them: refused.
    quirks: { unsupported: ONE_CHOICE, errorShape: 'integer-code' },
    headers: { 'X-Title': 'Faregate' },
  },
  {
    id: 'fireworks',
    displayName: 'Fireworks AI',
    baseUrl: 'https://api.fireworks.ai/inference/v1',
    keyEnv: 'FIREWORKS_API_KEY',
    baseUrlEnv: 'FIREWORKS_BASE_URL',
    quirks: { noDeveloperRole: true, errorShape: 'openai' },
  },
  {
    id: 'xai',
    displayName: 'xAI',
    baseUrl: 'https://api.x.ai/v1',
    keyEnv: 'XAI_API_KEY',
    baseUrlEnv: 'XAI_BASE_URL',
    quirks: { unsupported: NO_LOGIT_BIAS, errorShape: 'openai' },
  },
];

export function presetById(id: string | undefined): ProviderPreset | undefined {
  return id === undefined ? undefined : PRESETS.find((p) => p.id === id);
}
