import { type ErrorCode, errorBody, errorStatus } from '@faregate/contracts/errors';
import type { FastifyReply } from 'fastify';
import type { ZodError } from 'zod';
import { fromZod } from '../../plugins/errors.ts';

/** Sends an OpenAI-shaped error with the status for its code. */
export function sendError(
  reply: FastifyReply,
  code: ErrorCode,
  message: string,
  param: string | null = null,
) {
  return reply.code(errorStatus[code]).send(errorBody(code, message, param));
}

/** A zod failure as one 400 naming the offending parameter (the same words as every other route). */
export function sendZodError(reply: FastifyReply, e: ZodError) {
  const ge = fromZod(e);
  return reply.code(ge.status).send(ge.toBody());
}

/** µUSD as both a decimal USD string and an exact integer string (JSON has no bigint). */
export function money(prefix: string, micros: bigint, usd: (m: bigint) => string): Record<string, string> {
  return { [`${prefix}_usd`]: usd(micros), [`${prefix}_micros`]: micros.toString() };
}
