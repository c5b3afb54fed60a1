import { type Usage, servedModelName, zeroUsage } from '@faregate/contracts/chat';
import {
  type Embeddings,
  type EmbeddingsList,
  type EmbeddingsRequest,
  embeddingInputs,
} from '@faregate/contracts/embeddings';
import type { JobData, RouteCandidate } from '@faregate/contracts/jobs';
import { countTokens, estimateTokens } from './limits/estimate.ts';

/** Input tokens of an embeddings request counted here (o200k): for limits, and for a provider that reports none. */
export function embeddingsTokens(req: EmbeddingsRequest): number {
  let n = 0;
  for (const x of embeddingInputs(req)) n += typeof x === 'string' ? countTokens(x) : x.length;
  return n;
}

/** Tokens a job may use, for the pool's token-per-minute limit (chat: prompt + output budget). */
export const jobTokenEstimate = (data: JobData): number =>
  data.op === 'embeddings' ? embeddingsTokens(data.request) : estimateTokens(data.request, 1024);

/**
 * The call's usage: the input tokens the provider reports, or our count when it reports none
 * (Gemini) or its answer could not be read (`undefined`: it billed the call all the same).
 */
export function embeddingsUsage(
  req: EmbeddingsRequest,
  inputTokens: Embeddings['inputTokens'],
): { usage: Usage; estimated: boolean } {
  const reported = inputTokens !== undefined && inputTokens > 0;
  return {
    usage: { ...zeroUsage(), inputTokens: reported ? inputTokens : embeddingsTokens(req) },
    estimated: !reported,
  };
}

/** A float vector as OpenAI's base64: the little-endian float32 bytes. */
export function float32Base64(v: readonly number[]): string {
  const buf = Buffer.allocUnsafe(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i] ?? 0, i * 4);
  return buf.toString('base64');
}

/** The HTTP embeddings answer (the terminal frame's result), in the encoding the caller asked for. */
export function toEmbeddingsList(
  served: RouteCandidate,
  req: EmbeddingsRequest,
  e: Embeddings,
  usage: Usage,
  costMicros: bigint,
): EmbeddingsList {
  const base64 = req.encoding_format === 'base64';
  return {
    object: 'list',
    data: e.vectors.map((v, index) => ({
      object: 'embedding',
      index,
      embedding: base64 ? float32Base64(v) : v,
    })),
    model: servedModelName(served.provider, served.model),
    usage: {
      prompt_tokens: usage.inputTokens,
      total_tokens: usage.inputTokens,
      cost: Number(costMicros) / 1_000_000,
    },
    provider: served.provider,
  };
}
