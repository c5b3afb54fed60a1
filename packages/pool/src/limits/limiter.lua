-- Sliding-window RPM/TPM admission of one provider key, and its learned pause (see limiter.ts).
-- `now` is Redis's clock (the redis-now.lua prelude), never the caller's: a caller's clock read
-- before a stall (or another host's clock) would count the window up to a bucket older than slots
-- other processes already counted, and admit past the limit.
-- KEYS[1] rate window hash, KEYS[2] pause key (one hash tag). ARGV: windowMs, bucketMs, rpm (0 = none), tpm (0 = none), tokens,
-- want (requests to grant at once: a process's lease, see limiter.ts; 1 with TPM).
-- Returns { 1, bucket, granted, now } when admitted (1 <= granted <= want), { 0, waitMs } when not.
local pttl = redis.call('PTTL', KEYS[2])
if pttl > 0 then return { 0, pttl } end
local window = tonumber(ARGV[1]); local size = tonumber(ARGV[2])
local rpm = tonumber(ARGV[3]); local tpm = tonumber(ARGV[4]); local tokens = tonumber(ARGV[5])
local cur = math.floor(now / size)
local first = math.floor((now - window) / size)
local fields = {}
for b = first, cur do fields[#fields + 1] = 'r' .. b; fields[#fields + 1] = 't' .. b end
local vals = redis.call('HMGET', KEYS[1], unpack(fields))
local r, t = 0, 0
local oldestR, oldestT = nil, nil
for i = 1, #vals, 2 do
  local rv = tonumber(vals[i]) or 0
  local tv = tonumber(vals[i + 1]) or 0
  local b = first + (i - 1) / 2
  if rv > 0 and not oldestR then oldestR = b end
  if tv > 0 and not oldestT then oldestT = b end
  r = r + rv; t = t + tv
end
if rpm > 0 and r + 1 > rpm then
  return { 0, math.max(1, (oldestR + 1) * size + window - now) }
end
-- A single request larger than the whole budget runs alone rather than never.
if tpm > 0 and t > 0 and t + tokens > tpm then
  return { 0, math.max(1, (oldestT + 1) * size + window - now) }
end
local want = tonumber(ARGV[6]) or 1
local grant = 1
if want > 1 and tpm == 0 then
  grant = want
  -- Near the limit a lease shrinks (half of what is left), so one process does not hoard the rest.
  if rpm > 0 then grant = math.max(1, math.min(want, math.ceil((rpm - r) / 2))) end
end
redis.call('HINCRBY', KEYS[1], 'r' .. cur, grant)
if tokens > 0 then redis.call('HINCRBY', KEYS[1], 't' .. cur, tokens) end
for b = first - 3, first - 1 do redis.call('HDEL', KEYS[1], 'r' .. b, 't' .. b) end
redis.call('PEXPIRE', KEYS[1], window * 2)
return { 1, cur, grant, now }
