-- Starts an attempt of a job: it becomes the owner unless the job already ended (see FrameStore.claim).
-- KEYS[1] frames stream, KEYS[2] meta hash (one job: both tagged {<job id>}).
-- ARGV: owner, state, ttlMs, account, model, created, contentFinal ('1': content in the log ends the job).
-- Returns { lastSeq, terminal, previous owner | false, the owner whose attempt ended last | false };
-- terminal: 0 no, 1 ended, 2 cancelled before it
-- started, 3 an earlier attempt's content is in the log of a job whose content is final (an SSE
-- caller has it and cannot take it back): for 2 and 3 the caller owns the ending; 4 the job went on
-- to a later hop of its route (a fallback, or moved off a lost pool: `moved`) and this attempt's
-- hop (the owner's `...:<hop>:<attempt>`) is behind it: a stale copy of the job, which must not run.
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
if terminal == 0 and ARGV[7] == '1' and seq > 0 then
  -- Any delta in the log: an attempt streamed content (a content-final job never retries after
  -- content, so before it there are only status frames: the scan ends early).
  local from = '-'
  while terminal == 0 do
    local page = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 100)
    for _, e in ipairs(page) do
      if string.match(string.sub(e[2][2], 1, 1024), '"seq":%d+,"type":"(%a+)"') == 'delta' then
        terminal = 3
        break
      end
    end
    if #page < 100 then break end
    from = '(' .. page[#page][1]
  end
end
local previous = redis.call('HGET', KEYS[2], 'owner')
local ended = redis.call('HGET', KEYS[2], 'ended')
if terminal == 0 then
  local hop = tonumber(string.match(ARGV[1], ':(%d+):%d+$') or '')
  local ahead = tonumber(redis.call('HGET', KEYS[2], 'moved') or '')
  local owning = previous and tonumber(string.match(previous, ':(%d+):%d+$') or '')
  if owning and (not ahead or owning > ahead) then ahead = owning end
  if hop and ahead and ahead > hop then terminal = 4 end
end
if terminal == 0 or terminal == 3 then
  -- The job record (owner account, model, created) may not exist yet: requests answered over HTTP
  -- are recorded here rather than by the ingress, which saves the request path a write.
  redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'state', ARGV[2], 'account', ARGV[4], 'model', ARGV[5], 'created', ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return { seq, terminal, previous, ended }
