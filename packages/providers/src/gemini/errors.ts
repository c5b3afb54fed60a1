import { GatewayError } from '@faregate/contracts/errors';
import { parseProtoDuration, retryAfterMs } from '../shared/durations.ts';
import { classifyStatus, safeMessage } from '../shared/errors.ts';
import { isObj, type Json, str } from '../shared/sse.ts';
import type { RateLimitInfo, HeaderReader } from '../types.ts';

const detailsOf = (e: Json): Json[] => (Array.isArray(e.details) ? e.details.filter(isObj) : []);
const isType = (d: Json, t: string) => typeof d['@type'] === 'string' && (d['@type'] as string).endsWith(t);

/** google.rpc.RetryInfo.retryDelay, in ms. */
export function retryDelayOf(e: Json): number | undefined {
  for (const d of detailsOf(e))
    if (isType(d, 'google.rpc.RetryInfo')) return parseProtoDuration(d.retryDelay);
  return undefined;
}

/** A daily quota (quotaId …PerDay…) resets at midnight Pacific: retrying within seconds is pointless. */
function isDailyQuota(e: Json): boolean {
  for (const d of detailsOf(e)) {
    if (!isType(d, 'google.rpc.QuotaFailure') || !Array.isArray(d.violations)) continue;
    for (const v of d.violations) if (isObj(v) && str(v.quotaId)?.includes('PerDay')) return true;
  }
  return false;
}

/**
 * The model and the kind of limit a 429's QuotaFailure names (quotaDimensions.model; quotaId
 * `GenerateRequestsPerMinutePerProjectPerModel-FreeTier` → "requests per minute"). Nothing else of
 * it: the metric, the project and the quota's value are the operator's.
 */
function quotaFacts(e: Json): { model?: string; limit?: string } {
  for (const d of detailsOf(e)) {
    if (!isType(d, 'google.rpc.QuotaFailure') || !Array.isArray(d.violations)) continue;
    for (const v of d.violations) {
      if (!isObj(v)) continue;
      const model = isObj(v.quotaDimensions) ? str(v.quotaDimensions.model) : undefined;
      const id = str(v.quotaId) ?? '';
      const what = /InputTokens/i.test(id)
        ? 'input tokens'
        : /OutputTokens/i.test(id)
          ? 'output tokens'
          : /Tokens/i.test(id)
            ? 'tokens'
            : /Requests/i.test(id)
              ? 'requests'
              : undefined;
      const per = /PerDay/i.test(id)
        ? 'day'
        : /PerHour/i.test(id)
          ? 'hour'
          : /PerMinute/i.test(id)
            ? 'minute'
            : undefined;
      const limit = what && per ? `${what} per ${per}` : what;
      return { ...(model ? { model } : {}), ...(limit ? { limit } : {}) };
    }
  }
  return {};
}

function isBadKey(e: Json): boolean {
  for (const d of detailsOf(e))
    if (isType(d, 'google.rpc.ErrorInfo') && d.reason === 'API_KEY_INVALID') return true;
  return /API key not valid/i.test(str(e.message) ?? '');
}

/** Google RPC error object `{code, message, status, details}` → GatewayError. */
export function classifyGeminiErrorObject(status: number, e: Json, headers?: HeaderReader): GatewayError {
  const message = str(e.message);
  if (e.status === 'FAILED_PRECONDITION') {
    // Free tier unavailable in the region or billing required: the provider cannot serve us at all.
    return new GatewayError({
      code: 'provider_unavailable',
      message: safeMessage(message, 'provider precondition failed'),
      upstreamStatus: status,
      retryable: false,
    });
  }
  return classifyStatus(status, {
    message,
    retryAfterMs: retryDelayOf(e) ?? (headers ? retryAfterMs(headers) : undefined),
    contextLength: /exceeds the maximum number of tokens/i.test(message ?? ''),
    quota: status === 429 && isDailyQuota(e),
    badKey: isBadKey(e),
    ...(status === 429 ? quotaFacts(e) : {}),
  });
}

function errorObject(bodyText: string | undefined): Json | undefined {
  if (!bodyText) return undefined;
  try {
    const body: unknown = JSON.parse(bodyText);
    // Non-streaming errors are an object; some proxies wrap them in an array like a stream.
    const first = Array.isArray(body) ? body[0] : body;
    return isObj(first) && isObj(first.error) ? first.error : undefined;
  } catch {
    return undefined;
  }
}

export function classifyGeminiError(status: number, headers: HeaderReader, bodyText: string): GatewayError {
  return classifyGeminiErrorObject(status, errorObject(bodyText) ?? {}, headers);
}

/** Gemini sends no rate-limit headers; the only hint is RetryInfo in a 429 body (or a proxy's retry-after). */
export function readGeminiRateLimits(headers: HeaderReader, bodyText?: string): RateLimitInfo {
  const e = errorObject(bodyText);
  const ms = (e && retryDelayOf(e)) ?? retryAfterMs(headers);
  return ms === undefined ? {} : { retryAfterMs: ms };
}
