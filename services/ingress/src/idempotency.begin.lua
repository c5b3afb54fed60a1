-- Starts a request with an Idempotency-Key, or finds the earlier one (see idempotency.ts).
-- KEYS[1] the key's record (one key). ARGV: fingerprint, pending ttl ms.
-- Returns {'new'} | {state, fingerprint, status, body, job, created, headers, at, now}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- `at`: when it began, by Redis's clock (a takeover compares with the same clock).
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending', 'at', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'body', 'job', 'created', 'headers', 'at')
r[9] = tostring(now)
return r
