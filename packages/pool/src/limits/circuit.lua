-- The pool circuit breaker, shared by every process (see circuit.ts). KEYS[1] the circuit hash.
-- ARGV: op ('check', 'ok', 'fail', 'release'), now (unused: Redis's clock is the breaker's, so a process whose wall clock jumped
-- cannot hold the circuit open for minutes), windowMs, minSamples, failureRatio, openMs, successes,
-- probe (for 'release': the token 'check' gave the probe).
-- A probe's token is Redis's clock in microseconds when it became the probe (unique: scripts run one
-- at a time), returned negated by 'check'; only the current probe's 'release' lets the next caller probe.
local t = redis.call('TIME')
local op = ARGV[1]; local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])
local minSamples = tonumber(ARGV[4]); local ratio = tonumber(ARGV[5]); local openMs = tonumber(ARGV[6])
local successes = tonumber(ARGV[7]) or 0
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local untilMs = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
local size = math.floor(window / 10)
local cur = math.floor(now / size)
if op == 'check' then
  if state == 'closed' then return 0 end
  if now < untilMs then return 1 end
  -- Open and cooled down (or a probe timed out): this caller is the probe.
  -- Written from TIME's own digits (no number formatting in between), as JavaScript prints it.
  local token = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('HSET', KEYS[1], 'state', 'half', 'until', now + openMs, 'probe', token)
  return -tonumber(token)
end
if op == 'release' then
  -- The probe ended without a verdict (cancelled, or stopped before its call): the next caller
  -- probes at once, rather than every caller waiting out the probe's openMs. Not a probe that
  -- outlived openMs, whose place another probe took: that one is still running.
  if state == 'half' then
    if redis.call('HGET', KEYS[1], 'probe') == ARGV[8] then redis.call('HSET', KEYS[1], 'until', now) end
    return 1
  end
  if state == 'open' then return 1 end
  return 0
end
if op == 'ok' then
  if state == 'half' then
    redis.call('DEL', KEYS[1])
    return 0
  end
  -- A late success of a call that started before the circuit opened does not close it.
  if state == 'open' then return 1 end
  -- Closed: count them. The ratio only matters when a failure might open the circuit.
  if successes > 0 then redis.call('HINCRBY', KEYS[1], 's' .. cur, successes) end
  redis.call('PEXPIRE', KEYS[1], window + openMs * 4)
  return 0
else
  if state == 'half' then
    -- The probe's verdict: open again, and no token left for a stale release to match.
    redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + openMs)
    redis.call('HDEL', KEYS[1], 'probe')
    return 1
  end
  if state == 'open' then return 1 end
  if successes > 0 then redis.call('HINCRBY', KEYS[1], 's' .. cur, successes) end
  redis.call('HINCRBY', KEYS[1], 'f' .. cur, 1)
end
local s, f = 0, 0
for b = cur - 9, cur do
  s = s + (tonumber(redis.call('HGET', KEYS[1], 's' .. b)) or 0)
  f = f + (tonumber(redis.call('HGET', KEYS[1], 'f' .. b)) or 0)
end
redis.call('HDEL', KEYS[1], 's' .. (cur - 10), 'f' .. (cur - 10), 's' .. (cur - 11), 'f' .. (cur - 11))
redis.call('PEXPIRE', KEYS[1], window + openMs * 4)
if op == 'fail' and s + f >= minSamples and f >= ratio * (s + f) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + openMs)
  return 1
end
return 0
