-- Takes tokens (and requests) from a key's and an account's request limits after admission, or gives
-- them back (request-limits.ts here; the buckets are those request-limits.check.lua admits from:
-- hash fields r, t, at; a missing hash is full).
-- - A call used tokens beyond what admission counted (the prompt, and max_tokens only when given):
--   they are taken, and a bucket may go below zero, so the next requests wait until it has refilled.
-- - A request admitted and then refused (its balance did not cover it): what it took goes back.
-- KEYS[1] the key's bucket hash, KEYS[2] the account's.
-- ARGV: key rpm, key tpm, account rpm, account tpm (0 = no limit), tokens to take, requests to take
-- (negative: give back; a bucket never holds more than its limit).
local tokens = tonumber(ARGV[5])
local requests = tonumber(ARGV[6])
local MINUTE = 60000
local buckets = {
  { key = KEYS[1], r = tonumber(ARGV[1]), t = tonumber(ARGV[2]) },
  { key = KEYS[2], r = tonumber(ARGV[3]), t = tonumber(ARGV[4]) },
}
for _, b in ipairs(buckets) do
  if b.r > 0 or b.t > 0 then
    local s = redis.call('HMGET', b.key, 'r', 't', 'at')
    local at = tonumber(s[3]) or now
    local elapsed = math.max(0, now - at)
    local args = { 'at', now }
    local ttl = MINUTE * 2
    -- The hash's one timestamp moves to now: every limited field is brought to now with it.
    for i, f in ipairs({ { 'r', b.r, requests }, { 't', b.t, tokens } }) do
      local field, cap, take = f[1], f[2], f[3]
      if cap > 0 then
        local level = cap
        if tonumber(s[i]) then level = math.min(cap, tonumber(s[i]) + elapsed * cap / MINUTE) end
        level = math.min(cap, level - take)
        args[#args + 1] = field
        args[#args + 1] = tostring(level)
        -- Kept until it has refilled (a debt outlives the two minutes admission keeps a bucket).
        ttl = math.max(ttl, MINUTE * 2 + math.ceil(math.max(0, cap - level) * MINUTE / cap))
      end
    end
    redis.call('HSET', b.key, unpack(args))
    redis.call('PEXPIRE', b.key, ttl)
  end
end
return 1
