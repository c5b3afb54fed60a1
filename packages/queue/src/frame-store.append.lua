-- Appends frames to a job's log (assigning their seqs), publishes them, and with a terminal frame
-- records the job's state and appends its usage event, all at once (see FrameStore.append).
-- KEYS[1] frames stream, KEYS[2] meta hash, KEYS[3] the request's hold-call list, KEYS[4] the usage
-- stream of the job's usage partition (all four tagged {u<partition>}: one Cluster slot; keys.ts).
-- ARGV[1] owner ('' = no fencing), ARGV[2] live channel, ARGV[3] job id as JSON, ARGV[4] ttlMs,
-- ARGV[5] state|'', ARGV[6] usage event JSON|'', ARGV[7] replyTo channel|'',
-- ARGV[8] claim ('1' claim, 'r' record only, or ''), ARGV[9] account, ARGV[10] model, ARGV[11] created,
-- ARGV[12] a call to count against the request's hold ('' = none; pushed with the usage event),
-- ARGV[13] how long the hold-call list is kept (ms),
-- ARGV[14] '1': this write ends the owner's attempt (also implied by a state or a usage event),
-- ARGV[15] the seq the writer takes to be the log's last ('' = none): the writer handed these frames
-- to its own process's caller before this write ran (FrameStore.append's `cursor`), numbered from it,
-- so the write is refused (NOTOWNER, nothing written) unless the log ends there,
-- ARGV[16..] frame bodies: JSON objects without v/job/seq, which this script prefixes.
-- An owner's attempt that ended is recorded (`ended`): a later claim tells an attempt that died
-- (its call unbilled) from one that ended (frame-store.claim.lua).
-- `replyTo` is the channel of the ingress process waiting for this job (one subscription per process).
-- `claim`: an attempt that did not claim the job before calling the provider claims it with this write;
-- 'r' writes the job record without an owner (the ingress recording an async job with its first frame).
-- Channels are not keys: PUBLISH reaches every node of a Cluster. A frame over LIVE_MAX bytes (a
-- large embeddings list) is published as a notice of its seq (`"stored":true`, see `isStoredNotice`):
-- its followers read it from the stream. Published whole it would overflow the subscriber's output
-- buffer (Redis's pubsub hard limit, 32 MB by default), and Redis would drop the connection: every
-- job the process follows.
-- Returns the last seq written, or an error 'NOTOWNER' if another attempt owns the job (or it ended).
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = 0
if #last > 0 then seq = tonumber(string.match(last[1][1], '%-(%d+)$')) end
if ARGV[15] ~= '' and seq ~= tonumber(ARGV[15]) then
  return redis.error_reply('NOTOWNER the job has frames this attempt did not write')
end
if ARGV[1] ~= '' then
  local owner = redis.call('HGET', KEYS[2], 'owner')
  if owner ~= ARGV[1] then
    if owner or ARGV[8] ~= '1' then return redis.error_reply('NOTOWNER') end
    if #last > 0 then
      -- The last frame's type, read after its seq (as frame-store.claim.lua reads it).
      local t = string.match(string.sub(last[1][2][2], 1, 1024), '"seq":%d+,"type":"(%a+)"')
      if t == 'done' or t == 'error' or t == 'embeddings' then
        return redis.error_reply('NOTOWNER the job already ended')
      end
    end
    redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'state', 'running', 'account', ARGV[9], 'model', ARGV[10], 'created', ARGV[11])
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
end
if ARGV[8] == 'r' then
  redis.call('HSET', KEYS[2], 'account', ARGV[9], 'model', ARGV[10], 'created', ARGV[11])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if ARGV[12] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[12])
  redis.call('PEXPIRE', KEYS[3], ARGV[13])
end
local LIVE_MAX = 1048576
for i = 16, #ARGV do
  seq = seq + 1
  local head = '{"v":1,"job":' .. ARGV[3] .. ',"seq":' .. seq .. ','
  local f = head .. string.sub(ARGV[i], 2)
  redis.call('XADD', KEYS[1], '0-' .. seq, 'f', f)
  local live = f
  if #f > LIVE_MAX then live = head .. '"stored":true}' end
  redis.call('PUBLISH', ARGV[2], live)
  if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[7], live) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local ends = ARGV[1] ~= '' and (ARGV[14] == '1' or ARGV[6] ~= '')
if ARGV[5] ~= '' then
  if ends then
    redis.call('HSET', KEYS[2], 'state', ARGV[5], 'ended', ARGV[1])
  else
    redis.call('HSET', KEYS[2], 'state', ARGV[5])
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
elseif ends then
  redis.call('HSET', KEYS[2], 'ended', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if ARGV[6] ~= '' then redis.call('XADD', KEYS[4], '*', 'e', ARGV[6]) end
return seq
