import { isObj, num, str } from '../shared/sse.ts';
import type { DiscoveredModel, ProviderAdapter, ProviderKind } from '../types.ts';
import type { OpenAICompatibleQuirks } from './quirks.ts';
import { authHeaders, buildChatRequest, joinUrl } from './request.ts';
import { parseOpenAIResponse } from './response.ts';
import { classifyOpenAIError, readOpenAIRateLimits } from './errors.ts';
import { createOpenAIStreamParser } from './stream.ts';
import { buildEmbeddingsRequest, parseEmbeddingsResponse } from './embeddings.ts';

export type { OpenAICompatibleQuirks } from './quirks.ts';

export interface OpenAICompatibleOptions {
  kind?: ProviderKind;
  quirks?: OpenAICompatibleQuirks;
}

/**
 * The adapter for anything speaking OpenAI Chat Completions: OpenAI itself, Ollama, vLLM and hosted
 * OpenAI-compatible APIs. Differences are data (`quirks`), never a copy of this code.
 */
export function openAICompatible(options: OpenAICompatibleOptions = {}): ProviderAdapter {
  const quirks = options.quirks ?? {};
  return {
    kind: options.kind ?? 'openai-compatible',
    // A host that ignores tool_choice cannot force a tool call: published, so routing knows it.
    unsupported: [...(quirks.unsupported ?? []), ...(quirks.noToolChoice ? ['tool_choice'] : [])],
    buildRequest: (req, opts) => buildChatRequest(req, opts, quirks),
    parseResponse: (body) => parseOpenAIResponse(body, ''),
    createStreamParser: (opts) => createOpenAIStreamParser(opts),
    classifyError: classifyOpenAIError,
    readRateLimits: (headers) => readOpenAIRateLimits(headers),
    listModelsRequest(config, apiKey) {
      // No pagination on /models for OpenAI, Ollama or vLLM.
      const headers = authHeaders(apiKey, quirks, config.headers);
      delete headers['content-type'];
      return { method: 'GET', url: joinUrl(config.baseUrl, '/models'), headers };
    },
    parseModels(body) {
      const data = isObj(body) && Array.isArray(body.data) ? body.data : [];
      const models: DiscoveredModel[] = [];
      for (const m of data) {
        if (!isObj(m)) continue;
        const id = str(m.id);
        if (!id) continue;
        const created = num(m.created);
        // vLLM: max_model_len is the context window; others (OpenRouter) say context_length.
        const ctx = num(m.max_model_len) || num(m.context_length) || num(m.context_window);
        models.push({
          id,
          ...(created ? { created } : {}),
          ...(ctx ? { contextWindow: ctx } : {}),
          ...(str(m.owned_by) ? { ownedBy: str(m.owned_by) } : {}),
        });
      }
      return { models };
    },
    embeddings: {
      buildRequest: (req, opts) => buildEmbeddingsRequest(req, opts, quirks),
      parseResponse: parseEmbeddingsResponse,
    },
  };
}
