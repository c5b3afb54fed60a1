import type { ErrorKind, ErrorReply } from './protocol.ts';
import { goDuration } from './rate-limit.ts';

/** OpenAI error bodies (providers.md §1.5): `{ error: { message, type, param, code } }`. */
const body = (message: string, type: string, param: string | null, code: string | null) =>
  JSON.stringify({ error: { message, type, param, code } });
// Ollama's /v1 picks the error type from the status alone.
const ollamaType = (status: number) =>
  status === 400 ? 'invalid_request_error' : status === 404 ? 'not_found_error' : 'api_error';

export function openAIError(e: ErrorKind): ErrorReply {
  switch (e.kind) {
    case 'auth_missing':
      return {
        status: 401,
        body: body(
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
          'invalid_request_error',
          null,
          null,
        ),
      };
    case 'auth_bad':
      return {
        status: 401,
        body: body(
          'Incorrect API key provided: bad-key. You can find your API key at https://platform.openai.com/account/api-keys.',
          'invalid_request_error',
          null,
          'invalid_api_key',
        ),
      };
    case 'bad_request':
      return { status: 400, body: body(e.message, 'invalid_request_error', e.param ?? null, null) };
    case 'model_not_found':
      return {
        status: 404,
        body: body(
          `The model \`${e.model}\` does not exist or you do not have access to it.`,
          'invalid_request_error',
          null,
          'model_not_found',
        ),
      };
    case 'not_found':
      return { status: 404, body: body(e.message, 'invalid_request_error', null, null) };
    case 'rate_limit':
      return {
        status: 429,
        body: body(
          `Rate limit reached for ${e.model} in organization org-fake on requests per min (RPM): Limit ${e.limit}, Used ${e.limit}, Requested 1. Please try again in ${goDuration(e.retryAfterMs)}. Visit https://platform.openai.com/account/rate-limits to learn more.`,
          'requests',
          null,
          'rate_limit_exceeded',
        ),
        headers: {
          'retry-after-ms': String(e.retryAfterMs),
          'retry-after': String(Math.ceil(e.retryAfterMs / 1000)),
        },
      };
    case 'request_too_large':
      // No retry-after: waiting does not help (the x-ratelimit-* headers still come with it).
      return {
        status: 429,
        body: body(
          `Request too large for ${e.model} in organization org-fake on tokens per min (TPM): Limit ${e.limit}, Requested ${e.requested}. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.`,
          'tokens',
          null,
          'rate_limit_exceeded',
        ),
      };
    case 'server':
      return {
        status: 500,
        body: body(
          'The server had an error while processing your request. Sorry about that!',
          'server_error',
          null,
          null,
        ),
      };
    case 'unavailable':
    case 'overloaded':
      return {
        status: 503,
        body: body('The engine is currently overloaded, please try again later.', 'server_error', null, null),
      };
    case 'context_length':
      return {
        status: 400,
        body: body(
          `This model's maximum context length is ${e.limit} tokens. However, your messages resulted in ${e.tokens} tokens. Please reduce the length of the messages.`,
          'invalid_request_error',
          'messages',
          'context_length_exceeded',
        ),
      };
  }
}

/** Ollama's /v1 errors: the OpenAI shape with `code: null` and a type chosen by status (providers.md §4.1). */
export function ollamaError(e: ErrorKind): ErrorReply {
  const [status, message] = ollamaStatus(e);
  return { status, body: body(message, ollamaType(status), null, null) };
}

function ollamaStatus(e: ErrorKind): [number, string] {
  switch (e.kind) {
    case 'model_not_found':
      return [404, `model "${e.model}" not found, try pulling it first`];
    case 'not_found':
      return [404, e.message];
    case 'bad_request':
      return [400, e.message];
    case 'context_length':
      return [400, `the input length exceeds the context length (${e.limit})`];
    case 'rate_limit':
      return [429, 'server busy, please try again.  maximum pending requests exceeded'];
    case 'unavailable':
    case 'overloaded':
      return [503, 'server overloaded, please try again later'];
    default:
      return [500, 'an internal error occurred'];
  }
}
