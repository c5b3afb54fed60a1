import type { GatewayError } from '@faregate/contracts/errors';
import { intHeader, parseGoDuration, retryAfterMs } from '../shared/durations.ts';
import { classifyStatus } from '../shared/errors.ts';
import { isObj, str } from '../shared/sse.ts';
import type { RateLimitInfo, HeaderReader } from '../types.ts';

interface ErrorFacts {
  message?: string;
  type?: string;
  code?: string;
}

/**
 * Every OpenAI-style error body seen in the wild: `{error:{message,type,code}}` (code a string, or an
 * integer on vLLM), flat `{object:"error",message,type,code}`, `{error:"Unauthorized"}`, FastAPI `{detail}`.
 */
export function readOpenAIErrorBody(bodyText: string): ErrorFacts {
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    return {};
  }
  if (!isObj(body)) return {};
  const e = isObj(body.error) ? body.error : body;
  if (typeof body.error === 'string') return { message: body.error };
  const code = e.code;
  return {
    message: str(e.message) ?? str(body.detail),
    type: str(e.type),
    code: typeof code === 'string' ? code : typeof code === 'number' ? String(code) : undefined,
  };
}

const CONTEXT =
  /maximum context length|context length|context_length_exceeded|too many tokens|prompt is too long/i;

export function classifyOpenAIError(status: number, headers: HeaderReader, bodyText: string): GatewayError {
  const f = readOpenAIErrorBody(bodyText);
  return classifyStatus(status, {
    message: f.message,
    retryAfterMs: retryAfterMs(headers),
    contextLength:
      f.code === 'context_length_exceeded' ||
      ((status === 400 || status === 413) && CONTEXT.test(f.message ?? '')),
    quota: f.code === 'insufficient_quota' || f.type === 'insufficient_quota',
    // A 429's `type` names the limit hit ("requests", "tokens"), when its text does not say more.
    ...(status === 429 && (f.type === 'requests' || f.type === 'tokens') ? { limit: f.type } : {}),
  });
}

/** `x-ratelimit-*` (OpenAI, Groq, Together, …): resets are Go durations. */
export function readOpenAIRateLimits(headers: HeaderReader): RateLimitInfo {
  const info: RateLimitInfo = {};
  const set = <K extends keyof RateLimitInfo>(k: K, v: number | undefined) => {
    if (v !== undefined) info[k] = v;
  };
  set('limitRequests', intHeader(headers, 'x-ratelimit-limit-requests'));
  set('remainingRequests', intHeader(headers, 'x-ratelimit-remaining-requests'));
  set('resetRequestsMs', parseGoDuration(headers.get('x-ratelimit-reset-requests')));
  set('limitTokens', intHeader(headers, 'x-ratelimit-limit-tokens'));
  set('remainingTokens', intHeader(headers, 'x-ratelimit-remaining-tokens'));
  set('resetTokensMs', parseGoDuration(headers.get('x-ratelimit-reset-tokens')));
  set('retryAfterMs', retryAfterMs(headers));
  return info;
}
