-- Counts requests and tokens in the window's current bucket by Redis's clock (the redis-now.lua
-- prelude), moving them out of bucket `from` when it is given (limiter.ts: `touch` re-dates a slot
-- to its send, `seed` adds what the provider already counted). Redis's clock, like the acquire
-- script's: a slot counted in a bucket ahead of that clock would be invisible to admissions until
-- it caught up.
-- KEYS[1] rate window hash. ARGV: bucketMs, from (-1: none), requests, tokens, expireMs.
-- Returns the bucket counted in.
local size = tonumber(ARGV[1]); local from = tonumber(ARGV[2])
local requests = tonumber(ARGV[3]); local tokens = tonumber(ARGV[4])
local cur = math.floor(now / size)
if from == cur then return cur end
if from >= 0 then
  if requests ~= 0 then redis.call('HINCRBY', KEYS[1], 'r' .. from, -requests) end
  if tokens ~= 0 then redis.call('HINCRBY', KEYS[1], 't' .. from, -tokens) end
end
if requests ~= 0 then redis.call('HINCRBY', KEYS[1], 'r' .. cur, requests) end
if tokens ~= 0 then redis.call('HINCRBY', KEYS[1], 't' .. cur, tokens) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return cur
