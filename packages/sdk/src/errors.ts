import { type ErrorCode, errorBody, errorStatus, type SerializedError } from '@faregate/contracts/errors';

/** The OpenAI error object: `{ message, type, param, code }`. */
export interface ErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

export interface FaregateErrorInit extends ErrorObject {
  /** HTTP status (or the status an error frame carries); undefined when no server answered. */
  status?: number;
  /** The request / job id the server reported (`x-request-id`), when known. */
  requestId?: string;
  cause?: unknown;
}

/**
 * Every error the SDK raises. It carries the server's OpenAI-shaped error, so code written for the
 * official OpenAI SDK (`err.status`, `err.code`, `err.type`, `err.param`) reads it the same way.
 */
export class FaregateError extends Error {
  readonly status: number | undefined;
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;
  readonly requestId: string | undefined;

  constructor(init: FaregateErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'FaregateError';
    this.status = init.status;
    this.type = init.type;
    this.code = init.code;
    this.param = init.param;
    this.requestId = init.requestId;
  }

  /** Whether trying again later may succeed (rate limits, overload, upstream trouble, network). */
  get retryable(): boolean {
    return this.status === undefined || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** No answer from the server: refused, reset, timed out, or a stream that ended early. */
export class FaregateConnectionError extends FaregateError {
  constructor(message: string, cause?: unknown) {
    super({ message, type: 'connection_error', code: null, param: null, cause });
    this.name = 'FaregateConnectionError';
  }
}

const isErrorObject = (e: unknown): e is ErrorObject =>
  typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string';

/** An error from a parsed `{ error: {...} }` body (HTTP error response or in-band SSE chunk). */
export function errorFromBody(body: unknown, status: number | undefined, requestId?: string): FaregateError {
  const e = (body as { error?: unknown } | null)?.error;
  if (isErrorObject(e)) {
    return new FaregateError({
      message: e.message,
      type: typeof e.type === 'string' ? e.type : 'server_error',
      code: typeof e.code === 'string' ? e.code : null,
      param: typeof e.param === 'string' ? e.param : null,
      status: status ?? statusOf(e.code),
      requestId,
    });
  }
  return new FaregateError({
    message: `Unexpected error response${status ? ` (HTTP ${status})` : ''}.`,
    type: 'server_error',
    code: null,
    param: null,
    status,
    requestId,
  });
}

/** An error from a WebSocket `error` frame, which carries the gateway's serialized error and a status. */
export function errorFromFrame(error: SerializedError, status: number, job: string): FaregateError {
  const body = errorBody(error.code, error.message, error.param);
  return new FaregateError({ ...body.error, status, requestId: job });
}

/** The HTTP status the gateway uses for a code (WebSocket nacks carry no status of their own). */
export function statusOf(code: unknown): number | undefined {
  return typeof code === 'string' && code in errorStatus ? errorStatus[code as ErrorCode] : undefined;
}
