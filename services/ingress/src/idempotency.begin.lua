-- Starts a request with an Idempotency-Key, or finds the earlier one (see idempotency.ts).
-- KEYS[1] the key's record (one key). ARGV: fingerprint, pending ttl ms.
-- Returns {'new'} | {state, fingerprint, status, body, job, created, headers}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
return redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'body', 'job', 'created', 'headers')
