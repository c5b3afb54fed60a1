import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { beginCall, type ServeDeps } from './generate.ts';
import { BodyError, readJson, sendJson } from './http.ts';
import { resolveModel } from './models.ts';
import type { ErrorKind, Protocol } from './protocol.ts';

/**
 * Native dimensions of the embedding models the fake serves; `shortenable`: `dimensions` allowed;
 * `rawWhenShortened`: a shortened vector comes back as the first components of the unit vector,
 * not renormalized (gemini-embedding-001: Google normalizes only the full 3072; callers of
 * 768 or 1536 must normalize themselves).
 */
const EMBEDDING_MODELS: Record<string, { dims: number; shortenable: boolean; rawWhenShortened?: boolean }> = {
  'text-embedding-3-small': { dims: 1536, shortenable: true },
  'text-embedding-3-large': { dims: 3072, shortenable: true },
  'text-embedding-ada-002': { dims: 1536, shortenable: false },
  'gemini-embedding-001': { dims: 3072, shortenable: true, rawWhenShortened: true },
  'text-embedding-004': { dims: 768, shortenable: true },
  'nomic-embed-text': { dims: 768, shortenable: true },
};

export const isEmbeddingModel = (id: string): boolean =>
  Object.hasOwn(EMBEDDING_MODELS, id.replace(/:latest$/, ''));

/**
 * A deterministic unit vector for one input (text, or a token array's JSON): the same input and
 * model give the same vector, different inputs give different ones. Components are float32 values
 * (what providers compute), so a base64 round trip is exact. `dims` below the native size is the
 * shortened, renormalized vector, as OpenAI's `dimensions` gives, or for gemini-embedding-001 the
 * shortened vector as it is (Gemini's `outputDimensionality`: not a unit vector).
 */
export function fakeVector(model: string, input: string, dims: number): number[] {
  const spec = EMBEDDING_MODELS[model.replace(/:latest$/, '')];
  const native = spec?.dims ?? dims;
  const seed = createHash('sha256').update(`${model}\u0000${input}`).digest();
  let x = seed.readUInt32LE(0) || 1;
  const raw: number[] = new Array(native);
  for (let i = 0; i < native; i++) {
    // xorshift32
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    raw[i] = x / 0xffffffff - 0.5;
  }
  const v = spec?.rawWhenShortened && dims < native ? raw : raw.slice(0, dims);
  const norm = Math.sqrt(v.reduce((s, c) => s + c * c, 0)) || 1;
  if (v.length > dims) return v.slice(0, dims).map((c) => Math.fround(c / norm));
  return v.map((c) => Math.fround(c / norm));
}

/** Tokens of one input, as the fake counts prompts (chars / 4, rounded up; a token array: its length). */
const tokensOf = (x: string | number[]): number =>
  typeof x === 'string' ? Math.max(1, Math.ceil(x.length / 4)) : x.length;

type Input = string | number[];

/** The inputs of an OpenAI-style body, or an error message in OpenAI's words. */
function openAIInputs(input: unknown): Input[] | string {
  const invalid =
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";
  const isTokens = (a: unknown): a is number[] =>
    Array.isArray(a) && a.length > 0 && a.every((t) => Number.isInteger(t) && t >= 0);
  if (typeof input === 'string') return input === '' ? invalid : [input];
  if (isTokens(input)) return [input];
  if (!Array.isArray(input) || input.length === 0 || input.length > 2048) return invalid;
  if (input.every((s) => typeof s === 'string' && s !== '')) return input as string[];
  if (input.every(isTokens)) return input as number[][];
  return invalid;
}

/** `POST /v1/embeddings` (OpenAI, Ollama) and Gemini's `:embedContent` / `:batchEmbedContents`. */
export async function serveEmbeddings(
  p: Protocol,
  deps: ServeDeps,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  pathModel?: string,
  batch = false,
): Promise<void> {
  const { state } = deps;
  const config = state.config[p.id];
  const limits = state.limits[p.id];
  const rec = beginCall(deps, p, req, url, pathModel);
  const fail = (e: ErrorKind) => {
    const r = p.error(e, rec.requestId);
    rec.status = r.status;
    sendJson(res, r.status, r.body, { ...p.headers(rec.requestId, limits, config), ...r.headers });
  };
  const authError = p.auth(req, url);
  let body: unknown;
  try {
    body = await readJson(req);
  } catch (e) {
    return fail(
      authError ?? { kind: 'bad_request', message: e instanceof BodyError ? e.message : String(e) },
    );
  }
  if (authError) return fail(authError);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return fail({ kind: 'bad_request', message: 'The request body must be a JSON object.' });
  }
  const b = body as Record<string, unknown>;
  const gemini = p.id === 'gemini';
  const model = gemini ? (pathModel ?? '') : typeof b.model === 'string' ? b.model : '';
  rec.model = model;
  if (!gemini && model === '')
    return fail({ kind: 'bad_request', message: 'you must provide a model parameter', param: 'model' });

  let inputs: Input[];
  let dims: unknown;
  if (gemini) {
    const one = (r: unknown): string | undefined => {
      const parts = (r as { content?: { parts?: unknown } } | null)?.content?.parts;
      if (!Array.isArray(parts) || parts.length === 0) return undefined;
      const text = parts.map((x) => (x as { text?: unknown } | null)?.text).join('');
      return text === '' ? undefined : text;
    };
    const requests = batch ? b.requests : [b];
    if (!Array.isArray(requests) || requests.length === 0 || requests.length > 100) {
      return fail({
        kind: 'bad_request',
        message: '* BatchEmbedContentsRequest.requests: between 1 and 100 requests are required',
      });
    }
    const texts = requests.map(one);
    if (texts.some((t) => t === undefined)) {
      return fail({
        kind: 'bad_request',
        message: '* EmbedContentRequest.content: contents must not be empty',
      });
    }
    inputs = texts as string[];
    dims = (requests[0] as { outputDimensionality?: unknown }).outputDimensionality;
  } else {
    const parsed = openAIInputs(b.input);
    if (typeof parsed === 'string') return fail({ kind: 'bad_request', message: parsed, param: 'input' });
    inputs = parsed;
    dims = b.dimensions;
    if (b.encoding_format !== undefined && b.encoding_format !== 'float' && b.encoding_format !== 'base64') {
      return fail({
        kind: 'bad_request',
        message: "'encoding_format' must be 'float' or 'base64'",
        param: 'encoding_format',
      });
    }
  }
  const served = resolveModel(p.id, config.models, model);
  if (!served) return fail({ kind: 'model_not_found', model });
  const info = EMBEDDING_MODELS[served.replace(/:latest$/, '')];
  if (!info)
    return fail({
      kind: 'bad_request',
      message: `The model \`${model}\` does not support embeddings.`,
      param: 'model',
    });
  let size = info.dims;
  if (dims !== undefined) {
    if (
      !Number.isInteger(dims) ||
      (dims as number) < 1 ||
      (dims as number) > info.dims ||
      !info.shortenable
    ) {
      return fail({
        kind: 'bad_request',
        message: info.shortenable
          ? `dimensions must be between 1 and ${info.dims}`
          : 'This model does not support specifying dimensions.',
        param: 'dimensions',
      });
    }
    size = dims as number;
  }
  const waitMs = limits.requests.take(1);
  if (waitMs > 0) return fail({ kind: 'rate_limit', retryAfterMs: waitMs, limit: config.rpm, model: served });
  const fault = state.takeFault(p.id, model, served);
  if (fault) rec.fault = fault.fault;
  if (fault?.fault === '429')
    return fail({
      kind: 'rate_limit',
      retryAfterMs: fault.retryAfterMs ?? 1000,
      limit: config.rpm || 500,
      model: served,
    });
  if (fault?.fault === '500') return fail({ kind: 'server' });
  if (fault?.fault === '503' || fault?.fault === '529') return fail({ kind: 'unavailable' });
  if (fault?.fault === '400')
    return fail({ kind: 'bad_request', message: 'fake: scripted invalid request.', param: 'input' });

  const tokens = inputs.reduce((n, x) => n + tokensOf(x), 0);
  limits.tokens.take(tokens);
  limits.input.take(tokens);
  rec.promptTokens = tokens;
  const vectors = inputs.map((x) => fakeVector(served, typeof x === 'string' ? x : JSON.stringify(x), size));
  const headers = p.headers(rec.requestId, limits, config);
  rec.status = 200;
  if (gemini) {
    // Gemini reports no token usage for embeddings.
    const out = batch
      ? { embeddings: vectors.map((values) => ({ values })) }
      : { embedding: { values: vectors[0] } };
    return sendJson(res, 200, JSON.stringify(out), headers);
  }
  const base64 = b.encoding_format === 'base64';
  const data = vectors.map((v, index) => ({
    object: 'embedding',
    index,
    embedding: base64 ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v,
  }));
  const out = {
    object: 'list',
    data,
    model: p.reportedModel(model, served),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
  return sendJson(res, 200, JSON.stringify(out), headers);
}
