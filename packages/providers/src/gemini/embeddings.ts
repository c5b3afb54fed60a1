import { type Embeddings, type EmbeddingsRequest, embeddingInputs } from '@faregate/contracts/embeddings';
import { embeddingsAnswerBytes } from '../shared/embeddings.ts';
import { invalidParam, malformedEmbeddings as malformed } from '../shared/errors.ts';
import { isObj } from '../shared/sse.ts';
import type { BuildOptions, UpstreamRequest } from '../types.ts';
import { geminiHeaders, geminiUrl } from './request.ts';

/** Gemini's cap on `batchEmbedContents` requests. */
export const GEMINI_MAX_EMBEDDING_INPUTS = 100;

/**
 * One text → `:embedContent`; a list → `:batchEmbedContents` (one request per text, in order).
 * `dimensions` is `outputDimensionality`. Gemini embeds text only (token arrays are a 400), and has
 * no end-user field (`user` is refused at the ingress, see capabilities.ts).
 */
export function buildGeminiEmbeddingsRequest(
  req: EmbeddingsRequest,
  opts: Omit<BuildOptions, 'stream'>,
): UpstreamRequest {
  const inputs = embeddingInputs(req);
  if (inputs.some((x) => typeof x !== 'string')) {
    throw invalidParam('input', 'gemini embeds text only: token arrays are not supported by gemini');
  }
  if (inputs.length > GEMINI_MAX_EMBEDDING_INPUTS) {
    throw invalidParam('input', `gemini embeds at most ${GEMINI_MAX_EMBEDDING_INPUTS} inputs per request`);
  }
  const id = opts.model.replace(/^models\//, '');
  const model = encodeURIComponent(id);
  const one = (text: string) => ({
    content: { parts: [{ text }] },
    ...(req.dimensions !== undefined ? { outputDimensionality: req.dimensions } : {}),
  });
  const single = typeof req.input === 'string';
  const body = single
    ? one(req.input as string)
    : { requests: (inputs as string[]).map((t) => ({ model: `models/${id}`, ...one(t) })) };
  return {
    method: 'POST',
    url: geminiUrl(
      opts.config.baseUrl,
      `/v1beta/models/${model}:${single ? 'embedContent' : 'batchEmbedContents'}`,
    ),
    headers: geminiHeaders(opts.apiKey, opts.config.headers),
    body: JSON.stringify(body),
    // Gemini answers floats only.
    maxResponseBytes: embeddingsAnswerBytes(inputs.length, req.dimensions, 'float'),
  };
}

const valuesOf = (e: unknown): number[] => {
  const v = isObj(e) ? e.values : undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number'))
    throw malformed('values is not a float list');
  return v;
};

/**
 * A unit vector, as OpenAI's embeddings always are (`dimensions` included): gemini-embedding-001
 * normalizes only its full 3072 dimensions, and a shortened one (`outputDimensionality`) comes back
 * as it is, which breaks the dot-product similarity of callers switching models. One already of
 * unit length is left as it came.
 */
export function unitVector(v: number[]): number[] {
  let sum = 0;
  for (const c of v) sum += c * c;
  const norm = Math.sqrt(sum);
  if (norm === 0 || Math.abs(norm - 1) < 1e-6) return v;
  return v.map((c) => c / norm);
}

/** `{embedding:{values}}` or `{embeddings:[{values}]}`. Gemini reports no token usage: the worker estimates it. */
export function parseGeminiEmbeddingsResponse(body: unknown, inputs: number): Embeddings {
  if (!isObj(body)) throw malformed('not an object');
  const list = Array.isArray(body.embeddings)
    ? body.embeddings.map(valuesOf)
    : body.embedding
      ? [valuesOf(body.embedding)]
      : [];
  if (list.length !== inputs) throw malformed(`${list.length} embeddings for ${inputs} inputs`);
  return { model: '', vectors: list.map(unitVector), inputTokens: undefined };
}
