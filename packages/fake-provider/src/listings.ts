import type { IncomingMessage, ServerResponse } from 'node:http';
import { beginCall, type ServeDeps } from './generate.ts';
import { drain, sendJson } from './http.ts';
import { createdAt, displayName, modelWindow, ollamaName, resolveModel } from './models.ts';
import type { ErrorKind, Protocol } from './protocol.ts';
import { isEmbeddingModel } from './embeddings.ts';
import type { FakeProviderId } from './types.ts';

/** Unix seconds reported as `created` for every OpenAI-style model (stable across runs). */
const CREATED = 1_735_689_600;

/** Serves `GET …/models` and `GET …/models/{id}` in the provider's real shape. */
export function serveModels(
  p: Protocol,
  deps: ServeDeps,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  id: string | undefined,
) {
  drain(req);
  const { state } = deps;
  const config = state.config[p.id];
  const rec = beginCall(deps, p, req, url, id);
  const { requestId } = rec;
  const headers = p.headers(requestId, state.limits[p.id], config);
  const send = (status: number, body: unknown) => {
    rec.status = status;
    sendJson(res, status, JSON.stringify(body), headers);
  };
  const fail = (e: ErrorKind) => {
    const r = p.error(e, requestId);
    rec.status = r.status;
    sendJson(res, r.status, r.body, { ...headers, ...r.headers });
  };
  const authError = p.auth(req, url);
  if (authError) return fail(authError);

  const served = config.models;
  if (id !== undefined) {
    const hit = resolveModel(p.id, served, id);
    if (!hit) return fail({ kind: 'model_not_found', model: id });
    return send(200, describe(p.id, hit));
  }
  if (p.id === 'anthropic') return send(200, anthropicPage(served, url));
  if (p.id === 'gemini') {
    const page = geminiPage(served, url);
    if (!page) return fail({ kind: 'bad_request', message: 'Invalid page token.' });
    return send(200, page);
  }
  send(200, { object: 'list', data: served.map((m) => describe(p.id, m)) });
}

function describe(provider: FakeProviderId, id: string): unknown {
  const w = modelWindow(id);
  switch (provider) {
    case 'openai':
      return { id, object: 'model', created: CREATED, owned_by: 'system' };
    case 'llama':
      return { id: ollamaName(id), object: 'model', created: CREATED, owned_by: 'library' };
    case 'anthropic':
      return {
        type: 'model',
        id,
        display_name: displayName(id),
        created_at: createdAt(id),
        max_input_tokens: w.input,
        max_tokens: w.output,
        capabilities: null,
      };
    case 'gemini':
      return {
        name: `models/${id}`,
        version: '001',
        displayName: displayName(id),
        description: `Fake ${displayName(id)}`,
        inputTokenLimit: w.input,
        outputTokenLimit: w.output,
        // Embedding models list embedContent instead of generateContent, as Gemini's listing does.
        supportedGenerationMethods: isEmbeddingModel(id)
          ? ['embedContent', 'countTextTokens', 'countTokens', 'asyncBatchEmbedContent']
          : ['generateContent', 'countTokens', 'createCachedContent', 'batchGenerateContent'],
        temperature: 1,
        maxTemperature: 2,
        topP: 0.95,
        topK: 64,
        thinking: id.startsWith('gemini-2.5'),
      };
  }
}

/** Anthropic pagination: `limit` (1–1000, default 20), `after_id` / `before_id`. */
function anthropicPage(served: string[], url: URL) {
  const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get('limit') ?? 20) || 20));
  const after = url.searchParams.get('after_id');
  const before = url.searchParams.get('before_id');
  let start = 0;
  let end = served.length;
  if (after) start = served.indexOf(after) + 1;
  if (before) {
    end = Math.max(0, served.indexOf(before));
    start = Math.max(0, end - limit);
  }
  const slice = served.slice(start, Math.min(end, start + limit));
  const hasMore = before ? start > 0 : start + slice.length < end;
  return {
    data: slice.map((id) => describe('anthropic', id)),
    has_more: hasMore,
    first_id: slice[0] ?? null,
    last_id: slice[slice.length - 1] ?? null,
  };
}

/** Gemini pagination: `pageSize` (default 50, capped at 1000) and an opaque `pageToken`. */
function geminiPage(served: string[], url: URL) {
  const size = Math.min(1000, Math.max(1, Number(url.searchParams.get('pageSize') ?? 50) || 50));
  const token = url.searchParams.get('pageToken');
  let start = 0;
  if (token) {
    start = Number(
      Buffer.from(token, 'base64url')
        .toString('utf8')
        .replace(/^offset:/, ''),
    );
    if (!Number.isInteger(start) || start < 0) return undefined;
  }
  const slice = served.slice(start, start + size);
  const next = start + slice.length;
  return {
    models: slice.map((id) => describe('gemini', id)),
    ...(next < served.length ? { nextPageToken: Buffer.from(`offset:${next}`).toString('base64url') } : {}),
  };
}
