import type { GatewayError } from '@faregate/contracts/errors';
import { intHeader, retryAfterMs, untilTimestamp } from '../shared/durations.ts';
import { classifyStatus } from '../shared/errors.ts';
import { isObj, num, str } from '../shared/sse.ts';
import type { DiscoveredModel, ProviderAdapter, RateLimitInfo, HeaderReader } from '../types.ts';
import { anthropicHeaders, anthropicUrl, buildAnthropicRequest } from './request.ts';
import { parseAnthropicResponse } from './response.ts';
import { createAnthropicStreamParser } from './stream.ts';

/** `{type:"error", error:{type, message}, request_id}` → the shared status policy. */
export function classifyAnthropicError(
  status: number,
  headers: HeaderReader,
  bodyText: string,
): GatewayError {
  let type: string | undefined;
  let message: string | undefined;
  try {
    const body: unknown = JSON.parse(bodyText);
    if (isObj(body) && isObj(body.error)) {
      type = str(body.error.type);
      message = str(body.error.message);
    }
  } catch {
    // not JSON: a proxy page; the status decides
  }
  return classifyStatus(status, {
    message,
    retryAfterMs: retryAfterMs(headers),
    contextLength: status === 400 && /prompt is too long|context window/i.test(message ?? ''),
    overloaded: type === 'overloaded_error',
    // A 429 with no retry-after may be a spend cap, but it may also be a plain limit: the policy is to
    // retry it without a hint (the pool backs off), so no `quota` here.
  });
}

/** `anthropic-ratelimit-*`: integer limits and RFC 3339 resets (turned into ms from now). */
export function readAnthropicRateLimits(headers: HeaderReader): RateLimitInfo {
  const info: RateLimitInfo = {};
  const set = <K extends keyof RateLimitInfo>(k: K, v: number | undefined) => {
    if (v !== undefined) info[k] = v;
  };
  const p = 'anthropic-ratelimit-';
  set('limitRequests', intHeader(headers, `${p}requests-limit`));
  set('remainingRequests', intHeader(headers, `${p}requests-remaining`));
  set('resetRequestsMs', untilTimestamp(headers.get(`${p}requests-reset`)));
  set('limitTokens', intHeader(headers, `${p}tokens-limit`));
  set('remainingTokens', intHeader(headers, `${p}tokens-remaining`));
  set('resetTokensMs', untilTimestamp(headers.get(`${p}tokens-reset`)));
  set('limitInputTokens', intHeader(headers, `${p}input-tokens-limit`));
  set('remainingInputTokens', intHeader(headers, `${p}input-tokens-remaining`));
  set('resetInputTokensMs', untilTimestamp(headers.get(`${p}input-tokens-reset`)));
  set('limitOutputTokens', intHeader(headers, `${p}output-tokens-limit`));
  set('remainingOutputTokens', intHeader(headers, `${p}output-tokens-remaining`));
  set('resetOutputTokensMs', untilTimestamp(headers.get(`${p}output-tokens-reset`)));
  set('retryAfterMs', retryAfterMs(headers));
  return info;
}

export const anthropicAdapter: ProviderAdapter = {
  kind: 'anthropic',
  buildRequest: buildAnthropicRequest,
  parseResponse: parseAnthropicResponse,
  createStreamParser: createAnthropicStreamParser,
  classifyError: classifyAnthropicError,
  readRateLimits: (headers) => readAnthropicRateLimits(headers),
  listModelsRequest(config, apiKey, pageToken) {
    const headers = anthropicHeaders(apiKey, config.headers);
    delete headers['content-type'];
    const q = new URLSearchParams({ limit: '1000' });
    if (pageToken) q.set('after_id', pageToken);
    return { method: 'GET', url: anthropicUrl(config.baseUrl, `/v1/models?${q}`), headers };
  },
  parseModels(body) {
    const models: DiscoveredModel[] = [];
    if (!isObj(body)) return { models };
    for (const m of Array.isArray(body.data) ? body.data : []) {
      if (!isObj(m) || !str(m.id)) continue;
      const created = str(m.created_at) ? Math.floor(Date.parse(m.created_at as string) / 1000) : NaN;
      models.push({
        id: m.id as string,
        ...(str(m.display_name) ? { displayName: m.display_name as string } : {}),
        ...(Number.isFinite(created) ? { created } : {}),
        ...(num(m.max_input_tokens) ? { contextWindow: num(m.max_input_tokens) } : {}),
        ...(num(m.max_tokens) ? { maxOutputTokens: num(m.max_tokens) } : {}),
        ownedBy: 'anthropic',
      });
    }
    const next = body.has_more === true ? str(body.last_id) : undefined;
    return next ? { models, nextPageToken: next } : { models };
  },
};
