import { GatewayError } from '@faregate/contracts/errors';

/** Longest provider message we carry: enough to act on, too short to echo a prompt back. */
const MAX_MESSAGE = 300;

/** A provider message made safe to show: bounded, single line, credentials masked. */
export function safeMessage(value: unknown, fallback: string): string {
  if (typeof value !== 'string' || value.trim() === '') return fallback;
  let s = value.replace(/\s+/g, ' ').trim();
  // Providers echo partial keys ("Incorrect API key provided: sk-abc***xyz"): mask anything key-like.
  s = s.replace(/\b(sk|key|AIza|gsk|xai|pk)[-_A-Za-z0-9*]{8,}/g, '[redacted]');
  return s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE)}…` : s;
}

/** The caller sent something this provider cannot do: a 400 naming the parameter. */
export function invalidParam(param: string, message: string): GatewayError {
  return new GatewayError({ code: 'invalid_request_error', message, param, retryable: false });
}

/** An embeddings answer that is not what the protocol promises (retryable: a glitch, not the caller). */
export const malformedEmbeddings = (what: string): GatewayError =>
  new GatewayError({
    code: 'upstream_error',
    message: `provider sent a malformed embeddings answer: ${what}`,
    retryable: true,
  });

/** The stream body ended without the provider's terminal marker: never a success. */
export function streamIncomplete(): GatewayError {
  return new GatewayError({
    code: 'upstream_error',
    message: 'stream ended before completion',
    retryable: true,
  });
}

export function invalidStreamJson(): GatewayError {
  return new GatewayError({
    code: 'upstream_error',
    message: 'provider sent invalid JSON in its stream',
    retryable: true,
  });
}

export function lineTooLong(max: number): GatewayError {
  return new GatewayError({
    code: 'upstream_error',
    message: `provider stream line or event exceeded ${max} characters`,
    retryable: true,
  });
}

export interface Classified {
  /** Provider's error message (unsafe; passed through safeMessage). */
  message?: unknown;
  retryAfterMs?: number;
  /** The provider said the prompt is over the context window. */
  contextLength?: boolean;
  /** A 429 that retrying cannot fix (spend cap, daily quota, no credit). */
  quota?: boolean;
  /** A 400 that is really a bad credential (Gemini API_KEY_INVALID). */
  badKey?: boolean;
  /** Anthropic 529 and friends: the provider is overloaded as a whole. */
  overloaded?: boolean;
}

/**
 * The one status → code policy every adapter shares (providers.md §0.3). Adapters only extract
 * the facts (`Classified`) from their own error bodies.
 */
export function classifyStatus(status: number, c: Classified): GatewayError {
  const base = { upstreamStatus: status, retryAfterMs: c.retryAfterMs };
  const msg = (fallback: string) => safeMessage(c.message, fallback);
  if (status === 0) {
    return new GatewayError({
      ...base,
      code: 'upstream_error',
      message: msg('provider unreachable'),
      retryable: true,
    });
  }
  if (status === 401 || status === 403 || c.badKey) {
    // Never echo the provider's text here: it can quote the key.
    return new GatewayError({
      ...base,
      code: 'upstream_auth_error',
      message: `provider rejected the gateway's credentials (HTTP ${status})`,
      retryable: false,
    });
  }
  if (c.overloaded || status === 503 || status === 529) {
    return new GatewayError({
      ...base,
      code: 'overloaded',
      message: msg('provider overloaded'),
      retryable: true,
    });
  }
  if (status === 429) {
    if (c.quota) {
      return new GatewayError({
        ...base,
        code: 'rate_limit_exceeded',
        message: `provider quota exhausted: ${msg('quota exceeded')}`,
        retryable: false,
      });
    }
    return new GatewayError({
      ...base,
      code: 'rate_limit_exceeded',
      message: msg('provider rate limit reached'),
      retryable: true,
    });
  }
  if (status === 402) {
    return new GatewayError({
      ...base,
      code: 'provider_unavailable',
      message: 'provider refused the call for billing reasons',
      retryable: false,
    });
  }
  if (c.contextLength) {
    return new GatewayError({
      ...base,
      code: 'context_length_exceeded',
      message: msg('prompt exceeds the model context window'),
      param: 'messages',
      retryable: false,
    });
  }
  if (status === 404) {
    return new GatewayError({
      ...base,
      code: 'model_not_found',
      message: msg('model not found at provider'),
    });
  }
  if (status === 413) {
    return new GatewayError({
      ...base,
      code: 'payload_too_large',
      message: msg('request too large for provider'),
    });
  }
  if (status === 408 || status === 504) {
    return new GatewayError({
      ...base,
      code: 'upstream_timeout',
      message: msg('provider timed out'),
      retryable: true,
    });
  }
  if (status === 409 || status >= 500) {
    return new GatewayError({
      ...base,
      code: 'upstream_error',
      message: msg('provider error'),
      retryable: true,
    });
  }
  return new GatewayError({
    ...base,
    code: 'invalid_request_error',
    message: msg(`provider rejected the request (HTTP ${status})`),
    retryable: false,
  });
}

/**
 * An error that arrived inside a 200 stream, classified by the provider's error type string.
 * Generation restarts elsewhere are safe (nothing was billed), so server-side kinds are retryable.
 */
export function classifyInBand(kind: string | undefined, message: unknown): GatewayError {
  const k = (kind ?? '').toLowerCase();
  if (k.includes('overloaded') || k === 'unavailable' || k === '503' || k === '529') {
    return classifyStatus(503, { message });
  }
  if (
    k.includes('rate_limit') ||
    k === 'resource_exhausted' ||
    k === 'tokens' ||
    k === 'requests' ||
    k === '429'
  ) {
    return classifyStatus(429, { message });
  }
  if (k.includes('context_length')) return classifyStatus(400, { message, contextLength: true });
  if (k.includes('invalid_request') || k === 'invalid_argument' || k === 'badrequesterror' || k === '400') {
    return classifyStatus(400, { message });
  }
  if (k.includes('timeout') || k === 'deadline_exceeded') return classifyStatus(504, { message });
  return classifyStatus(500, { message });
}
