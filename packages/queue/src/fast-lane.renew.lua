-- (After the redis-now.lua prelude: `now` is Redis's clock in ms.)
-- KEYS[1] run (tagged {fast-<pool>}). ARGV: leaseMs, id...
-- Extends the leases of runs still held (XX: never revives one).
local until_ = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
return 0
