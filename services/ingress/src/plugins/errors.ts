import type { FastifyError, FastifyInstance } from 'fastify';
import { GatewayError, errorBody } from '@faregate/contracts/errors';
import { ZodError } from 'zod';

/** Turns a zod error into one readable 400 naming the offending parameter. */
export function fromZod(e: ZodError, root?: string): GatewayError {
  const issue = e.issues[0];
  const path = issue?.path.map(String) ?? [];
  const param = [root, ...path].filter(Boolean).join('.') || null;
  let message = issue?.message ?? 'invalid request';
  if (issue?.code === 'unrecognized_keys') {
    message = `Unrecognized request argument supplied: ${issue.keys.join(', ')}`;
  } else if (param) {
    message = `Invalid value for '${param}': ${message}`;
  }
  return new GatewayError({ code: 'invalid_request_error', message, param });
}

/**
 * The one place errors become HTTP answers: the OpenAI error shape, the status from the error
 * code, and nothing internal in 5xx bodies.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | GatewayError | Error, req, reply) => {
    let ge: GatewayError;
    if (err instanceof GatewayError) ge = err;
    else if (err instanceof ZodError) ge = fromZod(err);
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
        ge = new GatewayError({ code: 'invalid_request_error', message: fe.message });
        return reply.code(fe.statusCode).send(ge.toBody());
      } else {
        req.log.error({ err: { message: err.message, stack: err.stack } }, 'unhandled error');
        ge = new GatewayError({
          code: 'internal_error',
          message: 'The server had an error while processing your request.',
        });
      }
    }
    if (ge.retryAfterMs && (ge.status === 429 || ge.status === 503)) reply.header('retry-after', Math.ceil(ge.retryAfterMs / 1000));
    if (ge.status >= 500 && ge.code === 'internal_error') req.log.error({ code: ge.code }, ge.message);
    return reply.code(ge.status).send(ge.toBody());
  });
  app.setNotFoundHandler((req, reply) => {
    reply
      .code(404)
      .send(errorBody('not_found', `Unknown request URL: ${req.method} ${req.url.split('?')[0]}.`));
  });
}
