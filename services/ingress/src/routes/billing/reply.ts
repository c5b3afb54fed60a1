import { type ErrorCode, errorBody, errorStatus } from '@faregate/contracts/errors';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import type { ZodError } from 'zod';

/** Sends an OpenAI-shaped error with the status for its code. */
export function sendError(
  reply: FastifyReply,
  code: ErrorCode,
  message: string,
  param: string | null = null,
) {
  return reply.code(errorStatus[code]).send(errorBody(code, message, param));
}

/** A zod failure as one 400 naming the offending parameter. */
export function sendZodError(reply: FastifyReply, e: ZodError) {
  const issue = e.issues[0];
  const param = issue?.path.map(String).join('.') || null;
  const msg = issue?.message ?? 'invalid request';
  return sendError(
    reply,
    'invalid_request_error',
    param ? `Invalid value for '${param}': ${msg}` : msg,
    param,
  );
}

/**
 * Scoped error handler for these plugins: body-parse failures become OpenAI-shaped 4xx, anything
 * unexpected a 500 that leaks nothing.
 */
export function handleErrors(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      const code: ErrorCode = err.statusCode === 413 ? 'payload_too_large' : 'invalid_request_error';
      return reply.code(err.statusCode).send(errorBody(code, err.message));
    }
    req.log.error({ err: { message: err.message, stack: err.stack } }, 'billing route failed');
    return sendError(reply, 'internal_error', 'The server had an error while processing your request.');
  });
}

/** µUSD as both a decimal USD string and an exact integer string (JSON has no bigint). */
export function money(prefix: string, micros: bigint, usd: (m: bigint) => string): Record<string, string> {
  return { [`${prefix}_usd`]: usd(micros), [`${prefix}_micros`]: micros.toString() };
}
