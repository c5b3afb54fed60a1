-- A create whose first request's ingress died before it created anything (see idempotency.ts):
-- the retry that finds it stale takes the key over, once. KEYS[1] the key's record.
-- ARGV: `at` as the retry read it, stale ms. Returns 1 when this caller took it over.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state')
local at = redis.call('HGET', KEYS[1], 'at')
if state ~= 'pending' or at ~= ARGV[1] or now - tonumber(at) < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'at', now)
redis.call('HDEL', KEYS[1], 'job', 'created')
return 1
