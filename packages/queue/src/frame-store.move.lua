-- Records that a job's run went on to hop ARGV[1] of its route (moved off a pool with no live
-- worker): from then on a claim by an earlier hop's copy of the job is refused (frame-store.claim.lua).
-- KEYS[1] the job's meta hash. ARGV: hop, ttlMs (the record's life, if it has none yet).
-- Only ever raises the mark. Returns 1 if it was raised, 0 if the job had gone that far already.
local mark = tonumber(redis.call('HGET', KEYS[1], 'moved') or '')
if mark and mark >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'moved', ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
