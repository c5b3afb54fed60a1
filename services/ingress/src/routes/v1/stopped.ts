import { GatewayError } from '@faregate/contracts/errors';

/** What a caller hears when its key is revoked while its request runs (any door, a retry waiting too). */
export const REVOKED_MESSAGE = 'The API key of this request was revoked while it ran.';

export function timeoutError(): GatewayError {
  return new GatewayError({
    code: 'upstream_timeout',
    message: 'The request timed out before a provider answered.',
  });
}

/** Why the wait for a job's frames ended without its end: the deadline, or the key's revocation. */
export function stoppedError(signal: AbortSignal): GatewayError {
  if (signal.reason === 'revoked')
    return new GatewayError({ code: 'invalid_api_key', message: REVOKED_MESSAGE });
  return timeoutError();
}
