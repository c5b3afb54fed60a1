import type { Embeddings, EmbeddingsRequest } from '@faregate/contracts/embeddings';
import { malformedEmbeddings as malformed } from '../shared/errors.ts';
import { isObj, str } from '../shared/sse.ts';
import type { BuildOptions, UpstreamRequest } from '../types.ts';
import type { OpenAICompatibleQuirks } from './quirks.ts';
import { authHeaders, joinUrl } from './request.ts';

/**
 * `POST /embeddings` (OpenAI, Ollama, vLLM): the caller's fields from an allow-list, always asking
 * for floats (the gateway encodes base64 for the caller itself, so every protocol answers alike).
 */
export function buildEmbeddingsRequest(
  req: EmbeddingsRequest,
  opts: Omit<BuildOptions, 'stream'>,
  q: OpenAICompatibleQuirks,
): UpstreamRequest {
  const body: Record<string, unknown> = { model: opts.model, input: req.input, encoding_format: 'float' };
  if (req.dimensions !== undefined) body.dimensions = req.dimensions;
  if (req.user !== undefined && !(q.drop ?? []).includes('user')) body.user = req.user;
  return {
    method: 'POST',
    url: joinUrl(opts.config.baseUrl, '/embeddings'),
    headers: authHeaders(opts.apiKey, q, opts.config.headers),
    body: JSON.stringify(body),
  };
}

/** `{data:[{index, embedding}], model, usage}` → one vector per input, in input order. */
export function parseEmbeddingsResponse(body: unknown, inputs: number): Embeddings {
  if (!isObj(body) || !Array.isArray(body.data)) throw malformed('no data');
  const vectors: number[][] = new Array(inputs);
  for (const [i, d] of body.data.entries()) {
    if (!isObj(d)) throw malformed('an item is not an object');
    const index = typeof d.index === 'number' ? d.index : i;
    const v = d.embedding;
    if (!Number.isInteger(index) || index < 0 || index >= inputs) throw malformed('index out of range');
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number'))
      throw malformed('embedding is not a float list');
    vectors[index] = v;
  }
  for (let i = 0; i < inputs; i++) if (!vectors[i]) throw malformed(`no embedding for input ${i}`);
  const usage = isObj(body.usage) ? body.usage : undefined;
  const tokens = usage && typeof usage.prompt_tokens === 'number' ? usage.prompt_tokens : undefined;
  return { model: str(body.model) ?? '', vectors, inputTokens: tokens };
}
