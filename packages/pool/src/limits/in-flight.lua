-- A pool's max-in-flight across BullMQ runs and fast-lane runs (in-flight.ts). BullMQ's global
-- concurrency (`concurrency` in its meta hash, checked against its active list by every
-- moveToActive) is kept at limit - lane runs in flight, so active + lane <= limit always holds:
-- both are changed only by scripts on this one hash tag (the queue's).
-- KEYS: 1 BullMQ meta hash, 2 BullMQ active list, 3 lane runs (zset: run id -> lease expiry, ms),
--       4 BullMQ marker zset, 5 BullMQ wait list, 6 BullMQ prioritized zset.
-- ARGV: 1 op ('acquire' | 'release' | 'renew' | 'limit'), 2 limit (0: none), 3 lease ms, 4.. run ids.
-- Returns 1 (acquire: admitted), 0 (acquire: the pool is full).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local limit = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
-- Runs of a process that died (kill -9) stop counting when their lease lapses.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local ok = 1
if op == 'acquire' then
  local lane = redis.call('ZCARD', KEYS[3])
  if limit > 0 and redis.call('LLEN', KEYS[2]) + lane >= limit then
    ok = 0
  else
    redis.call('ZADD', KEYS[3], now + lease, ARGV[4])
  end
elseif op == 'release' then
  for i = 4, #ARGV do redis.call('ZREM', KEYS[3], ARGV[i]) end
elseif op == 'renew' then
  for i = 4, #ARGV do redis.call('ZADD', KEYS[3], 'XX', now + lease, ARGV[i]) end
end
local before = tonumber(redis.call('HGET', KEYS[1], 'concurrency'))
if limit > 0 then
  local room = math.max(0, limit - redis.call('ZCARD', KEYS[3]))
  redis.call('HSET', KEYS[1], 'concurrency', room)
  -- Room given back while jobs wait: wake BullMQ's workers, as adding a job does.
  if before ~= nil and room > before and room > redis.call('LLEN', KEYS[2]) and
      (redis.call('LLEN', KEYS[5]) > 0 or redis.call('ZCARD', KEYS[6]) > 0) then
    redis.call('ZADD', KEYS[4], 0, '0')
  end
elseif before ~= nil then
  redis.call('HDEL', KEYS[1], 'concurrency')
  redis.call('ZADD', KEYS[4], 0, '0')
end
if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('DEL', KEYS[3]) else redis.call('PEXPIRE', KEYS[3], lease * 2) end
return ok
