import { isObj, num, str } from '../shared/sse.ts';
import type { DiscoveredModel, ProviderAdapter } from '../types.ts';
import { classifyGeminiError, readGeminiRateLimits } from './errors.ts';
import { buildGeminiRequest, geminiHeaders, geminiUrl } from './request.ts';
import { parseGeminiResponse } from './response.ts';
import { createGeminiStreamParser } from './stream.ts';
import { buildGeminiEmbeddingsRequest, parseGeminiEmbeddingsResponse } from './embeddings.ts';

export const geminiAdapter: ProviderAdapter = {
  kind: 'gemini',
  buildRequest: buildGeminiRequest,
  parseResponse: parseGeminiResponse,
  createStreamParser: createGeminiStreamParser,
  classifyError: classifyGeminiError,
  readRateLimits: readGeminiRateLimits,
  listModelsRequest(config, apiKey, pageToken) {
    const headers = geminiHeaders(apiKey, config.headers);
    delete headers['content-type'];
    const q = new URLSearchParams({ pageSize: '1000' });
    if (pageToken) q.set('pageToken', pageToken);
    return { method: 'GET', url: geminiUrl(config.baseUrl, `/v1beta/models?${q}`), headers };
  },
  parseModels(body) {
    const models: DiscoveredModel[] = [];
    if (!isObj(body)) return { models };
    for (const m of Array.isArray(body.models) ? body.models : []) {
      if (!isObj(m) || !str(m.name)) continue;
      const methods = Array.isArray(m.supportedGenerationMethods) ? m.supportedGenerationMethods : [];
      // Chat models list generateContent, embedding models embedContent (the catalog tells them apart).
      if (!methods.includes('generateContent') && !methods.includes('embedContent')) continue;
      models.push({
        id: (m.name as string).replace(/^models\//, ''),
        ...(str(m.displayName) ? { displayName: m.displayName as string } : {}),
        ...(num(m.inputTokenLimit) ? { contextWindow: num(m.inputTokenLimit) } : {}),
        ...(num(m.outputTokenLimit) ? { maxOutputTokens: num(m.outputTokenLimit) } : {}),
        ownedBy: 'google',
      });
    }
    const next = str(body.nextPageToken);
    return next ? { models, nextPageToken: next } : { models };
  },
  embeddings: { buildRequest: buildGeminiEmbeddingsRequest, parseResponse: parseGeminiEmbeddingsResponse },
};
