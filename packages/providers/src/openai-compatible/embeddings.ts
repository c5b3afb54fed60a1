import { type Embeddings, type EmbeddingsRequest, embeddingInputs } from '@faregate/contracts/embeddings';
import { embeddingsAnswerBytes, float32FromBase64 } from '../shared/embeddings.ts';
import { malformedEmbeddings as malformed } from '../shared/errors.ts';
import { isObj, str } from '../shared/sse.ts';
import type { BuildOptions, UpstreamRequest } from '../types.ts';
import type { OpenAICompatibleQuirks } from './quirks.ts';
import { authHeaders, joinUrl } from './request.ts';

/**
 * `POST /embeddings` (OpenAI, Ollama, vLLM): the caller's fields from an allow-list, asking for
 * base64 whatever the caller asked (the float32 bytes: a quarter of the JSON floats' size, the same
 * values) unless the host has only floats. The worker gives the caller the encoding it asked for.
 */
export function buildEmbeddingsRequest(
  req: EmbeddingsRequest,
  opts: Omit<BuildOptions, 'stream'>,
  q: OpenAICompatibleQuirks,
): UpstreamRequest {
  const encoding = q.floatEmbeddings ? 'float' : 'base64';
  const body: Record<string, unknown> = { model: opts.model, input: req.input, encoding_format: encoding };
  if (req.dimensions !== undefined) body.dimensions = req.dimensions;
  if (req.user !== undefined && !(q.drop ?? []).includes('user')) body.user = req.user;
  return {
    method: 'POST',
    url: joinUrl(opts.config.baseUrl, '/embeddings'),
    headers: authHeaders(opts.apiKey, q, opts.config.headers),
    body: JSON.stringify(body),
    maxResponseBytes: embeddingsAnswerBytes(embeddingInputs(req).length, req.dimensions, encoding),
  };
}

/**
 * `{data:[{index, embedding}], model, usage}` → one vector per input, in input order. `embedding` is
 * a float list, or base64 float32 bytes (what was asked for; a host that ignores the field sends floats).
 */
export function parseEmbeddingsResponse(body: unknown, inputs: number): Embeddings {
  if (!isObj(body) || !Array.isArray(body.data)) throw malformed('no data');
  const vectors: number[][] = new Array(inputs);
  for (const [i, d] of body.data.entries()) {
    if (!isObj(d)) throw malformed('an item is not an object');
    const index = typeof d.index === 'number' ? d.index : i;
    const v = typeof d.embedding === 'string' ? float32FromBase64(d.embedding) : d.embedding;
    if (!Number.isInteger(index) || index < 0 || index >= inputs) throw malformed('index out of range');
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number'))
      throw malformed('embedding is neither a float list nor base64 float32');
    vectors[index] = v;
  }
  for (let i = 0; i < inputs; i++) if (!vectors[i]) throw malformed(`no embedding for input ${i}`);
  const usage = isObj(body.usage) ? body.usage : undefined;
  const tokens = usage && typeof usage.prompt_tokens === 'number' ? usage.prompt_tokens : undefined;
  return { model: str(body.model) ?? '', vectors, inputTokens: tokens };
}
