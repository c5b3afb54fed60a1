import { Redis } from 'ioredis';
import { type Logger, pino } from 'pino';

/**
 * A Redis connection for billing. Commands wait through reconnects (no per-request retry limit):
 * the consumer's own backoff decides when to give up on a batch, never ioredis.
 */
export function connectRedis(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'billing' } });
}
