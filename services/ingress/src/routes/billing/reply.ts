import { type ErrorCode, errorBody, errorStatus } from '@faregate/contracts/errors';
import type { FastifyReply } from 'fastify';

/** Sends an OpenAI-shaped error with the status for its code. */
export function sendError(
  reply: FastifyReply,
  code: ErrorCode,
  message: string,
  param: string | null = null,
) {
  return reply.code(errorStatus[code]).send(errorBody(code, message, param));
}

/** µUSD as both a decimal USD string and an exact integer string (JSON has no bigint). */
export function money(prefix: string, micros: bigint, usd: (m: bigint) => string): Record<string, string> {
  return { [`${prefix}_usd`]: usd(micros), [`${prefix}_micros`]: micros.toString() };
}
