-- Per-key and per-account request limits (request-limits.ts here; admission in services/ingress): token buckets as OpenAI counts its own
-- limits, each holding `limit` and refilled continuously over a minute. One call checks every limit
-- of a request and takes from all of them, or from none.
-- KEYS[1] the key's bucket hash, KEYS[2] the account's (one hash tag: the account's).
-- ARGV: key rpm, key tpm, account rpm, account tpm (0 = no limit), tokens of this request.
-- `now` is Redis's clock (the redis-now.lua prelude): an ingress that read its own clock before a
-- stall (or one on a host whose clock is behind) would date the bucket back, and the next caller
-- would refill it for time already counted.
-- Hash fields: r (requests left), t (tokens left), at (ms of the last change); a missing hash is full.
-- Returns { ok, waitMs, rLimit, rLeft, rResetMs, tLimit, tLeft, tResetMs, which }: ok 1 admitted, 0
-- not (waitMs until it would be; -1 never: the request alone exceeds a tokens limit; `which`: the
-- limit that refused, 1 key rpm, 2 key tpm, 3 account rpm, 4 account tpm). The r*/t* figures are
-- those of the tightest limit (least left), 0 when none is set, as they stand after this call.
local tokens = tonumber(ARGV[5])
local MINUTE = 60000
local limits = {
  { key = KEYS[1], field = 'r', cap = tonumber(ARGV[1]), need = 1 },
  { key = KEYS[1], field = 't', cap = tonumber(ARGV[2]), need = tokens },
  { key = KEYS[2], field = 'r', cap = tonumber(ARGV[3]), need = 1 },
  { key = KEYS[2], field = 't', cap = tonumber(ARGV[4]), need = tokens },
}
local state = {}
local wait = 0
local which = 0
for i, l in ipairs(limits) do
  if l.cap > 0 then
    if not state[l.key] then state[l.key] = redis.call('HMGET', l.key, 'r', 't', 'at') end
    local s = state[l.key]
    local stored = tonumber(s[l.field == 'r' and 1 or 2])
    local at = tonumber(s[3]) or now
    local level = l.cap
    if stored then level = math.min(l.cap, stored + math.max(0, now - at) * l.cap / MINUTE) end
    l.level = level
    if l.need > l.cap then
      if wait >= 0 then which = i end
      wait = -1
    elseif level < l.need and wait >= 0 then
      local w = math.ceil((l.need - level) * MINUTE / l.cap)
      if w > wait then wait = w; which = i end
    end
  end
end
local ok = wait == 0
local fig = { r = { 0, 0, 0 }, t = { 0, 0, 0 } }
for _, l in ipairs(limits) do
  if l.cap > 0 then
    local left = l.level
    if ok then left = left - l.need end
    local f = fig[l.field]
    if f[1] == 0 or left < f[2] then
      f[1] = l.cap
      f[2] = left
      f[3] = math.ceil((l.cap - left) * MINUTE / l.cap)
    end
    l.left = left
  end
end
if ok then
  -- Both fields of a hash are brought to `now` together (a field without a limit stays unset).
  local writes = {}
  for _, l in ipairs(limits) do
    if l.cap > 0 then
      writes[l.key] = writes[l.key] or {}
      writes[l.key][l.field] = l.left
    end
  end
  for key, w in pairs(writes) do
    local args = { 'at', now }
    for _, field in ipairs({ 'r', 't' }) do
      if w[field] then
        args[#args + 1] = field
        args[#args + 1] = tostring(w[field])
      end
    end
    redis.call('HSET', key, unpack(args))
    redis.call('PEXPIRE', key, MINUTE * 2)
  end
end
return { ok and 1 or 0, wait, fig.r[1], math.floor(math.max(0, fig.r[2])), fig.r[3], fig.t[1],
  math.floor(math.max(0, fig.t[2])), fig.t[3], which }
