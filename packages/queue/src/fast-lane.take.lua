-- (After the redis-now.lua prelude: `now` is Redis's clock in ms.)
-- A worker takes popped jobs. KEYS[1] due, KEYS[2] run (tagged {fast-<pool>}). ARGV: leaseMs, id...
-- Returns per id 1 if this caller now runs the job, 0 if it was swept.
local until_ = now + tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], until_, ARGV[i])
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
return out
