import { createServer } from 'node:net';
import { Redis, ReplyError } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '@faregate/contracts/errors';
import { asGatewayError } from './errors.ts';

describe('asGatewayError: what any door tells its caller of a failure', () => {
  it('a queue store that cannot be reached is a 503 to retry, in every door (before, a WebSocket nack said internal_error)', async () => {
    // A real client's failure: nothing listens on the port, and the client gives up at once.
    const server = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const { port } = server.address() as { port: number };
    await new Promise((r) => server.close(r));
    const redis = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on('error', () => {});
    const e = await redis.get('k').then(
      () => undefined,
      (err: unknown) => err,
    );
    redis.disconnect();
    const ge = asGatewayError(e);
    expect(ge.toBody().error).toMatchObject({ code: 'overloaded', type: 'server_error' });
    expect(ge.status).toBe(503);
    expect(ge.retryable).toBe(true);
    expect(ge.retryAfterMs).toBe(1_000);
  });

  it('a full queue store is a 503 to retry; anything unknown an internal error that says nothing internal', () => {
    const full = asGatewayError(new ReplyError("OOM command not allowed when used memory > 'maxmemory'."));
    expect([full.status, full.code, full.retryable]).toEqual([503, 'overloaded', true]);
    const other = asGatewayError(new Error('secret detail at /srv/app.ts:12'), 'could not follow the job');
    expect(other.toBody().error).toMatchObject({
      code: 'internal_error',
      message: 'could not follow the job',
    });
    const own = new GatewayError({ code: 'invalid_request_error', message: 'bad' });
    expect(asGatewayError(own)).toBe(own);
  });
});
