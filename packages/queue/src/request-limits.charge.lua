-- Charges a request's tokens beyond what its admission counted to its key's and account's token
-- limits (request-limits.ts here; the buckets are those services/ingress/src/request-limits.lua
-- admits from: hash fields r, t, at; a missing hash is full). Admission counts the prompt, and
-- max_tokens only when the request gives it: what the answer used beyond that is taken here, and a
-- bucket may go below zero, so the key's or account's next requests wait until it has refilled.
-- KEYS[1] the key's bucket hash, KEYS[2] the account's.
-- ARGV: key rpm, key tpm, account rpm, account tpm (0 = no limit), tokens to charge.
local tokens = tonumber(ARGV[5])
local MINUTE = 60000
local buckets = {
  { key = KEYS[1], r = tonumber(ARGV[1]), t = tonumber(ARGV[2]) },
  { key = KEYS[2], r = tonumber(ARGV[3]), t = tonumber(ARGV[4]) },
}
for _, b in ipairs(buckets) do
  if b.t > 0 then
    local s = redis.call('HMGET', b.key, 'r', 't', 'at')
    local at = tonumber(s[3]) or now
    local elapsed = math.max(0, now - at)
    local args = { 'at', now }
    local level = b.t
    if tonumber(s[2]) then level = math.min(b.t, tonumber(s[2]) + elapsed * b.t / MINUTE) end
    level = level - tokens
    args[#args + 1] = 't'
    args[#args + 1] = tostring(level)
    -- The hash's one timestamp moves to now: the requests field is brought to now with it.
    if b.r > 0 and tonumber(s[1]) then
      args[#args + 1] = 'r'
      args[#args + 1] = tostring(math.min(b.r, tonumber(s[1]) + elapsed * b.r / MINUTE))
    end
    redis.call('HSET', b.key, unpack(args))
    -- Kept until it has refilled (a debt outlives the two minutes admission keeps a bucket).
    redis.call('PEXPIRE', b.key, MINUTE * 2 + math.ceil(math.max(0, b.t - level) * MINUTE / b.t))
  end
end
return 1
