-- (After the redis-now.lua prelude: `now` is Redis's clock in ms.)
-- A worker forgets runs that ended, adopts jobs it runs without the list, then takes popped jobs.
-- KEYS[1] due, KEYS[2] run, KEYS[3] data, KEYS[4] moving, KEYS[5] hosted (tagged {fast-<pool>}).
-- ARGV: leaseMs, n, m, the n ids of runs that ended (or whose jobs are on BullMQ now), m pairs
-- (id, job JSON) to adopt, ids to take...
-- An adopted job never was on the list (an ingress hosting the pool runs it itself: local-pools.ts): it
-- goes straight to `run` under the caller's lease, so a caller that dies leaves it to the sweep; it is
-- also in `hosted`, so that the pool's backlog (backlog.ts) leaves out the runs no worker of it has.
-- Returns per id to adopt 1, then per id to take 1 if this caller now runs the job, 0 if it was swept.
local until_ = now + tonumber(ARGV[1])
local ended = tonumber(ARGV[2])
local adopted = tonumber(ARGV[3])
for i = 4, 3 + ended do
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[4], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('SREM', KEYS[5], ARGV[i])
end
local out = {}
local first = 4 + ended
for i = first, first + 2 * adopted - 1, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], until_, ARGV[i])
  redis.call('SADD', KEYS[5], ARGV[i])
  out[#out + 1] = 1
end
for i = first + 2 * adopted, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], until_, ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
