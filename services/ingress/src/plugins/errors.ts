import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { servedHeaders } from '@faregate/contracts/route';
import { GatewayError, errorBody } from '@faregate/contracts/errors';
import { newId } from '@faregate/contracts/ids';
import { serializerCompiler } from 'fastify-type-provider-zod';
import { ZodError, type ZodType } from 'zod';
import type { ServerReply } from '@faregate/contracts/ws';
import { isBadValue } from '@faregate/db/unavailable';
import { anthropicError, anthropicErrorForStatus } from '../doors/messages.ts';
import { lingerOnTooLarge } from './lingering-close.ts';

type NackError = Extract<ServerReply, { type: 'nack' }>['error'];

/** The `retry-after` of a 429 or 503 whose cause gave none. */
const DEFAULT_RETRY_AFTER_MS = 1_000;

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The shape of every error this route answers (before its handler too): OpenAI's by default.
     * `anthropic-when-versioned`: Anthropic's when the request sends `anthropic-version` (Anthropic's
     * SDKs always do, OpenAI's never), for routes both SDKs call (`/v1/models`).
     */
    errorShape?: 'openai' | 'anthropic' | 'anthropic-when-versioned';
  }
}

/**
 * `error.details` of an Anthropic-shaped refusal, which Anthropic's SDKs read (`error_code`: e.g.
 * `thread_unsupported_request`, on which the SDK's tool runner goes on without a message thread).
 */
export const anthropicDetails = new WeakMap<GatewayError, Record<string, unknown>>();

/** Whether this request is answered in Anthropic's shape (its errors, its `request-id`): the one decision. */
export function anthropicShaped(req: FastifyRequest): boolean {
  const shape = req.routeOptions?.config?.errorShape;
  if (shape === 'anthropic') return true;
  const versioned = req.headers['anthropic-version'] !== undefined;
  if (shape === 'anthropic-when-versioned') return versioned;
  // A request no route took (or refused before routing): the door it was meant for, told by
  // Anthropic's SDK header (its SDKs always send it, OpenAI's never) or by its URL.
  return req.routeOptions?.url === undefined && (versioned || meantForMessages(req.url));
}

/**
 * A URL meant for Anthropic's door however it is spelled: any case, percent-encoded, with dot
 * segments, doubled slashes or `;` parameters (`/V1/messages`, `/v1/messages%2F`, `/v1/./messages`).
 */
function meantForMessages(url: string): boolean {
  if (MESSAGES_URL.test(url)) return true;
  let path = url.split(/[?#\s]/)[0] ?? '';
  try {
    path = decodeURIComponent(path);
  } catch {
    // Bad percent-encoding: read as written.
  }
  try {
    path = new URL(path.replace(/^[/\\]+/, '/'), 'http://h').pathname;
  } catch {
    return false;
  }
  return /^\/+v1\/+messages(?:[/;]|$)/i.test(path);
}

/**
 * `params` of a refinement whose message is the whole answer (`Missing required parameter: …`), not
 * a detail to put after "Invalid value for '<param>'".
 */
export const verbatim = { verbatim: true } as const;

/**
 * Turns a zod error into one readable 400 naming the offending parameter, in OpenAI's words, or in
 * Anthropic's (`anthropic`: `/v1/messages`, whose API says `<field>: Extra inputs are not permitted`
 * and `<field>: <what is wrong>`).
 */
export function fromZod(e: ZodError, root?: string, anthropic = false): GatewayError {
  const issue = e.issues[0];
  const path = issue?.path.map(String) ?? [];
  let param = [root, ...path].filter(Boolean).join('.') || null;
  let message = issue?.message ?? 'invalid request';
  if (anthropic) {
    const unknown = issue?.code === 'unrecognized_keys' ? issue.keys[0] : undefined;
    if (unknown !== undefined) param = param ? `${param}.${unknown}` : unknown;
    const verbatimMessage = issue?.code === 'custom' && issue.params?.verbatim === true;
    if (unknown !== undefined) message = `${param}: Extra inputs are not permitted`;
    else if (param && !verbatimMessage) message = `${param}: ${message}`;
    return new GatewayError({ code: 'invalid_request_error', message, param });
  }
  if (issue?.code === 'unrecognized_keys') {
    // At the top, as OpenAI's: no param. Inside an object, the unknown key itself (`text.verbosity`).
    const keys = param ? issue.keys.map((k) => `${param}.${k}`) : issue.keys;
    message = `Unrecognized request argument supplied: ${keys.join(', ')}`;
    if (param && keys.length === 1) param = keys[0] ?? param;
  } else if (issue?.code === 'custom' && issue.params?.verbatim === true) {
    // The message says it all.
  } else if (param) {
    message = `Invalid value for '${param}': ${message}`;
  }
  return new GatewayError({ code: 'invalid_request_error', message, param });
}

/**
 * Route schemas are zod (`fastify-type-provider-zod`'s `ZodTypeProvider` types the handlers). The
 * package's own validator compiler turns each issue into a JSON-pointer path string; this one hands
 * the ZodError itself to the error handler, so a route's 400 names the parameter exactly as `fromZod`
 * always has. Responses use the package's serializer compiler.
 */
export function registerZodSchemas(app: FastifyInstance): void {
  app.setValidatorCompiler<ZodType>(({ schema, httpPart }) => (data) => {
    const r = schema.safeParse(data);
    if (r.success) return { value: r.data };
    // `?limit=1&limit=2` arrives as a list: say so, rather than "expected number, received array".
    const key = r.error.issues[0]?.path[0];
    if (
      httpPart === 'querystring' &&
      typeof key === 'string' &&
      Array.isArray((data as Record<string, unknown>)[key])
    )
      return {
        error: new GatewayError({
          code: 'invalid_request_error',
          message: `The query parameter '${key}' is given more than once; give it once.`,
          param: key,
        }),
      };
    return { error: r.error };
  });
  app.setSerializerCompiler(serializerCompiler);
}

/**
 * The one place errors become HTTP answers: the OpenAI error shape, the status from the error
 * code, and nothing internal in 5xx bodies.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  // A URL past 8 KiB is a URL too long (414), whether or not the whole head passed Node's 16 KiB
  // (past it, `clientErrorHandler` says so): no route takes such a URL.
  // And an HTTP/1.1 request without a Host header is a 400 (RFC 9112 §3.2), in the door's shape:
  // Node's own check (`requireHostHeader`, off in app.ts) answers it with an empty body.
  app.addHook('onRequest', (req, reply, done) => {
    if (req.url.length > MAX_URL_CHARS)
      return sendEarlyError(req, reply, 414, 'The request URL is too long.');
    if (req.headers.host === undefined && req.raw.httpVersion === '1.1') {
      reply.header('connection', 'close');
      return sendEarlyError(req, reply, 400, 'The request has no Host header, which HTTP/1.1 requires.');
    }
    done();
  });
  // Every answer carries an id the caller can quote, as the providers' do. A request that became a
  // job has the job's (`setRequestId`, before its answer or stream head); any other gets one here,
  // when it is sent, so the common path draws no id it would replace.
  app.addHook('onSend', (req, reply, payload, done) => {
    if (!reply.hasHeader('x-request-id'))
      setRequestId(reply, newId('req'), MESSAGES_URL.test(req.url) || anthropicShaped(req));
    done(null, payload);
  });
  const answer = (err: FastifyError | GatewayError | Error, req: FastifyRequest, reply: FastifyReply) => {
    // Anthropic's door (`/v1/messages`) answers every error in Anthropic's shape and statuses, as
    // `/v1/models` does for Anthropic's SDKs.
    const anthropic = anthropicShaped(req);
    let ge: GatewayError;
    if (err instanceof GatewayError) ge = err;
    else if (err instanceof ZodError) ge = fromZod(err, undefined, anthropic);
    else {
      const fe = err as FastifyError;
      if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        ge = new GatewayError({ code: 'payload_too_large', message: 'Request body is too large.' });
      } else if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        ge = new GatewayError({
          code: 'invalid_request_error',
          message: 'Unsupported Content-Type: send application/json.',
        });
      } else if (
        fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
        fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
        (fe.statusCode === 400 && fe instanceof SyntaxError)
      ) {
        ge = new GatewayError({
          code: 'invalid_request_error',
          message: 'We could not parse the JSON body of your request. Send valid JSON.',
        });
      } else if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
        if (anthropic) return sendEarlyError(req, reply, fe.statusCode, fe.message);
        ge = new GatewayError({ code: 'invalid_request_error', message: fe.message });
        return reply.code(fe.statusCode).send(ge.toBody());
      } else {
        const known = storeError(err);
        if (known) ge = known;
        else {
          req.log.error({ err: { message: err.message, stack: err.stack } }, 'unhandled error');
          ge = new GatewayError({
            code: 'internal_error',
            message: 'The server had an error while processing your request.',
          });
        }
      }
    }
    // A 429 or 503 says when to come back (a provider's overload relayed after the job's attempts
    // may carry no hint of its own: then one second, as a shed request gets), unless waiting cannot
    // help (a request larger than a tokens limit, a provider quota used up): SDKs retry a 429 with a
    // retry-after, for nothing.
    if (ge.status === 503 || (ge.status === 429 && (ge.retryable || ge.retryAfterMs !== undefined)))
      reply.header('retry-after', Math.max(1, Math.ceil((ge.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS) / 1000)));
    if (ge.status >= 500 && ge.code === 'internal_error') req.log.error({ code: ge.code }, ge.message);
    // An error after provider calls says which were made, as a served answer does.
    if (ge.attempts) reply.headers(servedHeaders(ge.attempts));
    if (anthropic) {
      // Anthropic's SDKs read the `request-id` header (`requestID` on an error): the request's id
      // when it got one, else one for this answer, so every error can be quoted.
      const known = reply.getHeader('x-request-id');
      const requestId = typeof known === 'string' ? known : newId('req');
      setRequestId(reply, requestId, true);
      const a = anthropicError(ge.code, ge.message, requestId);
      const details = anthropicDetails.get(ge);
      if (details) Object.assign(a.body.error, { details });
      // Anthropic's own status, which Node's table lacks (its status line would read "unknown").
      if (a.status === 529) reply.raw.statusMessage = 'Overloaded';
      return reply.code(a.status).send(a.body);
    }
    return reply.code(ge.status).send(ge.toBody());
  };
  app.setErrorHandler((err: FastifyError | GatewayError | Error, req, reply) => {
    // A body refused for its size while it is still arriving is read on (bounded), or a client that
    // writes its whole body before it reads (the SDKs, urllib) gets a broken pipe, not the 413.
    const wait =
      (err as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? lingerOnTooLarge(req, reply) : undefined;
    if (wait)
      return wait.then(() => {
        answer(err, req, reply);
      });
    return answer(err, req, reply);
  });
  // Under Anthropic's door (`/v1/messages/…`, e.g. the SDK's message batches), or asked by
  // Anthropic's SDK, in Anthropic's shape (`anthropicShaped`), like every other error.
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    answer(
      new GatewayError({ code: 'not_found', message: `Unknown request URL: ${req.method} ${path}.` }),
      req,
      reply,
    );
  });
}

/**
 * What a failure of the gateway's own stores tells the caller, in every door (HTTP, WebSocket, a
 * batch's line): Redis full or unreachable is a 503 to retry shortly (nothing was queued), a value
 * Postgres cannot store is the caller's; undefined for any other error.
 */
export function storeError(err: unknown): GatewayError | undefined {
  // Redis at maxmemory (noeviction) refuses every write; unreachable, or a Cluster shard failing
  // over, it takes none: either way nothing was queued, try again soon.
  if (isRedisFull(err)) return storeBusy('cannot take new work right now (its queue store is full)');
  if (isRedisUnavailable(err)) return storeBusy('cannot reach its queue store right now');
  if (isBadValue(err)) {
    // Postgres refused a value from the request (a NUL character, say): the caller's error.
    return new GatewayError({
      code: 'invalid_request_error',
      message: 'The request contains a value that cannot be stored (for example a NUL character).',
    });
  }
  return undefined;
}

const storeBusy = (what: string) =>
  new GatewayError({
    code: 'overloaded',
    message: `The gateway ${what}. Try again shortly.`,
    retryable: true,
    retryAfterMs: DEFAULT_RETRY_AFTER_MS,
  });

/** Any error as the gateway's error (`storeError`'s, or an internal error that says nothing internal). */
export function asGatewayError(err: unknown, internal = 'internal error'): GatewayError {
  if (err instanceof GatewayError) return err;
  return storeError(err) ?? new GatewayError({ code: 'internal_error', message: internal });
}

/**
 * A nack's `error`: the OpenAI error body, and whether trying again may help and after how long, as
 * a job's `error` frame says (`retryable`, `retryAfterMs`) and an HTTP door's `retry-after` header.
 */
export function nackError(ge: GatewayError): NackError {
  return {
    ...ge.toBody().error,
    retryable: ge.retryable,
    ...(ge.retryAfterMs === undefined ? {} : { retryAfterMs: ge.retryAfterMs }),
  };
}

/** Redis refused a write because it reached `maxmemory` (with `noeviction`): an OOM reply. */
export function isRedisFull(err: unknown): boolean {
  return (
    (err as { name?: unknown } | null)?.name === 'ReplyError' && /^OOM\b/.test((err as Error).message ?? '')
  );
}

/**
 * Redis could not take the command: the connection is down or gave up retrying, or a Cluster shard
 * is failing over (its master gone, a replica not yet promoted: redirections run out, `CLUSTERDOWN`,
 * `TRYAGAIN`, `MASTERDOWN`, `LOADING`, `READONLY` from a demoted master). Transient: a 503 to retry.
 */
export function isRedisUnavailable(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown } | null;
  const name = typeof e?.name === 'string' ? e.name : '';
  const message = typeof e?.message === 'string' ? e.message : '';
  if (name === 'MaxRetriesPerRequestError' || name === 'ClusterAllFailedError') return true;
  if (name === 'ReplyError') return /^(CLUSTERDOWN|TRYAGAIN|MASTERDOWN|LOADING|READONLY)\b/.test(message);
  return (
    /^Too many Cluster redirections\b/.test(message) ||
    message === 'Connection is closed.' ||
    /^Stream isn't writeable\b/.test(message)
  );
}

/** A URL of Anthropic's door (`/v1/messages`, `/v1/messages/count_tokens`), before routing. */
const MESSAGES_URL = /^\/+v1\/+messages(?:[/?# ]|$)/;

/**
 * The answer's id, in the header its door's SDK reads: `x-request-id` (OpenAI's `request_id`), and
 * on Anthropic's door `request-id` too (`_request_id`, `requestID`). The one place both are set.
 */
export function setRequestId(
  reply: FastifyReply,
  id: string,
  anthropic = anthropicShaped(reply.request),
): void {
  reply.header('x-request-id', id);
  if (anthropic) reply.header('request-id', id);
}

/** The longest request URL taken (characters of the request line's target). */
const MAX_URL_CHARS = 8192;

/**
 * A 4xx whose status the gateway did not choose by an error code (a URL too long or malformed, an
 * HTTP-level refusal), in the shape of the door it was meant for, with an id to quote.
 */
function earlyErrorBody(anthropic: boolean, status: number, message: string, requestId: string) {
  return anthropic
    ? { ...anthropicErrorForStatus(status, message).body, request_id: requestId }
    : errorBody('invalid_request_error', message);
}

function sendEarlyError(req: FastifyRequest, reply: FastifyReply, status: number, message: string): void {
  const anthropic = anthropicShaped(req) || meantForMessages(req.url);
  const known = reply.getHeader('x-request-id');
  const id = typeof known === 'string' ? known : newId('req');
  setRequestId(reply, id, anthropic);
  reply.code(status).send(earlyErrorBody(anthropic, status, message, id));
}

/**
 * Errors Fastify answers before routing (`frameworkErrors`): a path that is not valid percent-encoding
 * (`%ff`) and a path parameter past `maxParamLength`. Same shape as every other error.
 */
export function frameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') paramTooLong(req, reply);
  else sendEarlyError(req, reply, 400, 'The request URL is malformed (bad percent-encoding).');
}

/** The longest path parameter taken (the router's `maxParamLength`): a longer one is a 414. */
export const MAX_PARAM_CHARS = 100;

/**
 * A path parameter over MAX_PARAM_CHARS: 414, as the router answers one before routing. A wildcard
 * route (`/v1/models/*`, whose ids hold `/`) is not held to `maxParamLength`: it answers this itself.
 */
export function paramTooLong(req: FastifyRequest, reply: FastifyReply): void {
  sendEarlyError(req, reply, 414, 'The request URL is too long.');
}

/**
 * Errors Node's HTTP parser raises before a request exists (headers too large, malformed request,
 * header timeout): answered in OpenAI's shape (Anthropic's on its door), then the connection is closed.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // The URL: the parsed request's (an error in the body), or read off the request line when the
  // parser still holds it (a head written at once, as the SDKs write it); else unknown (OpenAI's shape).
  const raw = (err as { rawPacket?: Buffer }).rawPacket;
  const line = raw && /^[A-Z]+ /.test(raw.subarray(0, 16).toString('latin1')) ? raw : undefined;
  const url =
    (socket as { parser?: { incoming?: { url?: unknown } } }).parser?.incoming?.url ??
    line
      ?.subarray(0, 64)
      .toString('latin1')
      .replace(/^[A-Z]+ /, '') ??
    '';
  let status = 400;
  let message = 'The request could not be parsed.';
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    // A request line past 8 KiB (or one that does not end in the packet) is a URL too long, not
    // headers: no route takes such a URL.
    const eol = line?.indexOf('\r\n') ?? 0;
    const long = line !== undefined && (eol < 0 || eol > MAX_URL_CHARS);
    status = long ? 414 : 431;
    message = long ? 'The request URL is too long.' : 'The request headers are too large.';
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    message = 'The request took too long to arrive.';
  }
  // Anthropic's shape on its door, or when the head names Anthropic's API version (its SDKs' header).
  const anthropic =
    meantForMessages(typeof url === 'string' ? url : '') ||
    (raw !== undefined && /\r\nanthropic-version:/i.test(raw.toString('latin1')));
  const id = newId('req');
  const body = JSON.stringify(earlyErrorBody(anthropic, status, message, id));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nx-request-id: ${id}\r\n` +
        (anthropic ? `request-id: ${id}\r\n` : '') +
        `Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
