import { RouteStep } from './route.ts';
import { z } from 'zod';

/** Stable error codes. The ingress maps them to HTTP statuses in one place (`errorStatus`). */
export const ErrorCode = z.enum([
  'invalid_request_error',
  'invalid_api_key',
  'permission_denied',
  'not_found',
  'model_not_found',
  'payload_too_large',
  'insufficient_quota',
  'rate_limit_exceeded',
  'context_length_exceeded',
  'content_filter',
  'upstream_auth_error',
  'upstream_error',
  'upstream_timeout',
  'overloaded',
  'provider_unavailable',
  'cancelled',
  'conflict',
  'idempotency_key_in_use',
  'idempotency_key_reused',
  'internal_error',
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const errorStatus: Record<ErrorCode, number> = {
  invalid_request_error: 400,
  invalid_api_key: 401,
  permission_denied: 403,
  not_found: 404,
  model_not_found: 404,
  payload_too_large: 413,
  insufficient_quota: 402,
  rate_limit_exceeded: 429,
  context_length_exceeded: 400,
  content_filter: 400,
  upstream_auth_error: 502,
  upstream_error: 502,
  upstream_timeout: 504,
  overloaded: 503,
  provider_unavailable: 503,
  cancelled: 499,
  conflict: 409,
  idempotency_key_in_use: 409,
  idempotency_key_reused: 422,
  internal_error: 500,
};

/** OpenAI's `error.type` for each code, so SDK error classes and `err.type` behave as with OpenAI. */
const errorType: Record<ErrorCode, string> = {
  invalid_request_error: 'invalid_request_error',
  invalid_api_key: 'invalid_request_error',
  permission_denied: 'permission_error',
  not_found: 'invalid_request_error',
  model_not_found: 'invalid_request_error',
  payload_too_large: 'invalid_request_error',
  insufficient_quota: 'insufficient_quota',
  rate_limit_exceeded: 'rate_limit_error',
  context_length_exceeded: 'invalid_request_error',
  content_filter: 'invalid_request_error',
  upstream_auth_error: 'server_error',
  upstream_error: 'server_error',
  upstream_timeout: 'server_error',
  overloaded: 'server_error',
  provider_unavailable: 'server_error',
  cancelled: 'invalid_request_error',
  conflict: 'invalid_request_error',
  idempotency_key_in_use: 'invalid_request_error',
  idempotency_key_reused: 'invalid_request_error',
  internal_error: 'server_error',
};

export interface GatewayErrorInit {
  code: ErrorCode;
  message: string;
  retryable?: boolean;
  param?: string | null;
  /** Provider asked us to wait this long before the next call (429 / 529 / 503 with a hint). */
  retryAfterMs?: number;
  /** Upstream HTTP status, when the error came from a provider (callers see it in `attempts`). */
  upstreamStatus?: number;
  /** The provider calls the request made before it failed (shown to callers as `error.attempts`). */
  attempts?: RouteStep[];
  cause?: unknown;
}

/** The one error base: a stable code, whether a retry may help, and what the caller may see. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly param: string | null;
  readonly retryAfterMs: number | undefined;
  readonly upstreamStatus: number | undefined;
  readonly attempts: RouteStep[] | undefined;

  constructor(init: GatewayErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'GatewayError';
    this.code = init.code;
    this.retryable = init.retryable ?? false;
    this.param = init.param ?? null;
    this.retryAfterMs = init.retryAfterMs;
    this.upstreamStatus = init.upstreamStatus;
    this.attempts = init.attempts;
  }

  get status(): number {
    return errorStatus[this.code];
  }

  toBody(): ErrorBody {
    const body = errorBody(this.code, this.message, this.param);
    if (this.attempts?.length) body.error.attempts = this.attempts;
    return body;
  }

  /** The same error, naming the provider calls the request made. */
  withAttempts(attempts: RouteStep[]): GatewayError {
    return new GatewayError({ ...this.toJSON(), attempts });
  }

  toJSON(): SerializedError {
    return {
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      param: this.param,
      ...(this.retryAfterMs === undefined ? {} : { retryAfterMs: this.retryAfterMs }),
      ...(this.upstreamStatus === undefined ? {} : { upstreamStatus: this.upstreamStatus }),
      ...(this.attempts === undefined ? {} : { attempts: this.attempts }),
    };
  }

  static from(s: SerializedError): GatewayError {
    return new GatewayError(s);
  }
}

export const SerializedError = z.object({
  code: ErrorCode,
  message: z.string(),
  retryable: z.boolean(),
  param: z.string().nullable(),
  retryAfterMs: z.number().optional(),
  upstreamStatus: z.number().optional(),
  attempts: z.array(RouteStep).optional(),
});
export type SerializedError = z.infer<typeof SerializedError>;

/** The OpenAI error body: `{ error: { message, type, param, code } }`. */
export const ErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
    /** Faregate: every provider call the request made, when it made any (see `RouteStep`). */
    attempts: z.array(RouteStep).optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export function errorBody(code: ErrorCode, message: string, param: string | null = null): ErrorBody {
  return { error: { message, type: errorType[code], param, code } };
}

export function isGatewayError(e: unknown): e is GatewayError {
  return e instanceof GatewayError;
}
