-- (After the redis-now.lua prelude: `now` is Redis's clock in ms.)
-- KEYS[1] list, KEYS[2] due, KEYS[3] run, KEYS[4] data, KEYS[5] moving, KEYS[6] hosted (tagged
-- {fast-<pool>}; a lapsed run swept leaves `hosted` too).
-- ARGV: graceMs, moveLeaseMs, max.
-- Drops list entries past the grace (their jobs are swept below, or were taken), and moves due
-- jobs, lapsed runs and lapsed hand-overs to `moving` (leased to this sweeper). Also prunes `hosted`
-- of members no longer in `run` (left by a sweeper of an older version, which did not know the set),
-- a few random ones per sweep. Returns [id, jobJson, kind, ...] with kind 'due' | 'run' | 'moving'.
local grace = tonumber(ARGV[1])
for i = 1, 1000 do
  local e = redis.call('LINDEX', KEYS[1], -1)
  if not e then break end
  local ts = tonumber(string.match(e, '^(%d+) '))
  if ts and ts + grace > now then break end
  redis.call('RPOP', KEYS[1])
end
local out = {}
local sets = { { KEYS[2], 'due' }, { KEYS[3], 'run' }, { KEYS[5], 'moving' } }
for _, s in ipairs(sets) do
  local ids = redis.call('ZRANGEBYSCORE', s[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
  for _, id in ipairs(ids) do
    redis.call('ZREM', s[1], id)
    if s[2] == 'run' then redis.call('SREM', KEYS[6], id) end
    local d = redis.call('HGET', KEYS[4], id)
    if d then
      redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), id)
      table.insert(out, id)
      table.insert(out, d)
      table.insert(out, s[2])
    end
  end
end
-- Take and end add and remove a run in both sets in one script: a member of `hosted` that is not in
-- `run` belongs to no run.
for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[6], 16)) do
  if not redis.call('ZSCORE', KEYS[3], id) then redis.call('SREM', KEYS[6], id) end
end
return out
