-- (After the redis-now.lua prelude: `now` is Redis's clock in ms.)
-- A worker forgets runs that ended, then takes popped jobs.
-- KEYS[1] due, KEYS[2] run, KEYS[3] data, KEYS[4] moving (tagged {fast-<pool>}).
-- ARGV: leaseMs, n, the n ids of runs that ended (or whose jobs are on BullMQ now), ids to take...
-- Returns per id to take 1 if this caller now runs the job, 0 if it was swept.
local until_ = now + tonumber(ARGV[1])
local ended = tonumber(ARGV[2])
for i = 3, 2 + ended do
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[4], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
end
local out = {}
for i = 3 + ended, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], until_, ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
