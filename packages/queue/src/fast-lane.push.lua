-- (After the redis-now.lua prelude: `now` is Redis's clock in ms.)
-- Hands a job to the pool's idle workers. KEYS[1] list, KEYS[2] due, KEYS[3] data (tagged {fast-<pool>}).
-- ARGV: id, jobJson, graceMs. Returns the push time (Redis clock, ms).
redis.call('LPUSH', KEYS[1], now .. ' ' .. ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return now
