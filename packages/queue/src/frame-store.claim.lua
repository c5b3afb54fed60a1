-- Starts an attempt of a job: it becomes the owner unless the job already ended (see FrameStore.claim).
-- KEYS[1] frames stream, KEYS[2] meta hash (one job: both tagged {<job id>}).
-- ARGV: owner, state, ttlMs, account, model, created.
-- Returns { lastSeq, terminal (0 no, 1 ended, 2 cancelled before it started: caller owns the ending) }.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = 0
local terminal = 0
if #last > 0 then
  seq = tonumber(string.match(last[1][1], '%-(%d+)$'))
  local f = last[1][2][2]
  -- The frame's type follows its seq (the store writes that head): read there, not searched for in
  -- the whole frame (an embeddings list is megabytes). A terminal type: done, error, embeddings.
  local t = string.match(string.sub(f, 1, 1024), '"seq":%d+,"type":"(%a+)"')
  if t == 'done' or t == 'error' or t == 'embeddings' then terminal = 1 end
end
if terminal == 0 and redis.call('HGET', KEYS[2], 'cancel') == '1' then terminal = 2 end
if terminal == 0 then
  -- The job record (owner account, model, created) may not exist yet: requests answered over HTTP
  -- are recorded here rather than by the ingress, which saves the request path a write.
  redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'state', ARGV[2], 'account', ARGV[4], 'model', ARGV[5], 'created', ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return { seq, terminal }
