import { openAICompatible } from '../openai-compatible/index.ts';
import type { ProviderAdapter } from '../types.ts';

/** OpenAI Chat Completions: the reference wire format, so the factory with OpenAI's own settings. */
export const openaiAdapter: ProviderAdapter = openAICompatible({
  kind: 'openai',
  quirks: {
    // Reasoning (o-series, gpt-5) models reject max_tokens.
    maxTokensField: 'max_completion_tokens',
    openAIAccountFields: true,
    errorShape: 'openai',
  },
});
