-- Appends events to an OpenAI batch's progress stream and publishes them live (see progress.ts).
-- KEYS[1] events stream (entry id `0-<seq>`, field `e`), KEYS[2] meta hash (seq, rank, status, total,
-- completed, failed), KEYS[3] bitmap of the lines already reported; all tagged {<batch id>}.
-- ARGV[1] live channel, ARGV[2] batch id as JSON, ARGV[3] MAXLEN (approximate), ARGV[4] TTL (ms)
-- while the batch runs, ARGV[5] TTL (ms) once it ended, ARGV[6] mode:
--   'l' lines: ARGV[7..] triples (line number, 'completed' | 'failed' | '' (not counted), event
--       fields as JSON without braces). A line already reported is skipped: each line once, however
--       often a driver records it (a step that failed after publishing, two drivers racing a lease).
--   's' status: ARGV[7] status, ARGV[8] its rank, ARGV[9] '1' if final, ARGV[10] total,
--       ARGV[11] completed, ARGV[12] failed (the batch record's; taken as the counts when final),
--       ARGV[13] extra event fields (',"output_file_id":…' or ''). Published only if its rank is
--       above the last published one's: statuses never go back, whichever process reports them.
-- The events appended by one call are published together, as one message of newline-separated
-- events (JSON never holds a raw newline): one PUBLISH per driver step, not one per line.
-- Returns how many events were appended.
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local rank = tonumber(redis.call('HGET', KEYS[2], 'rank') or '-1')
local total = redis.call('HGET', KEYS[2], 'total') or '0'
local completed = tonumber(redis.call('HGET', KEYS[2], 'completed') or '0')
local failed = tonumber(redis.call('HGET', KEYS[2], 'failed') or '0')
local n = 0
local live = {}
local function add(fields)
  seq = seq + 1
  n = n + 1
  local e = '{"v":1,"batch":' .. ARGV[2] .. ',"seq":' .. seq .. ',' .. fields ..
    ',"request_counts":{"total":' .. total .. ',"completed":' .. completed .. ',"failed":' .. failed .. '}}'
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', e)
  live[n] = e
end
if ARGV[6] == 'l' then
  for i = 7, #ARGV, 3 do
    if redis.call('SETBIT', KEYS[3], tonumber(ARGV[i]), 1) == 0 then
      if ARGV[i + 1] == 'completed' then
        completed = completed + 1
      elseif ARGV[i + 1] == 'failed' then
        failed = failed + 1
      end
      add(ARGV[i + 2])
    end
  end
else
  if tonumber(ARGV[8]) <= rank then return 0 end
  rank = tonumber(ARGV[8])
  total = ARGV[10]
  if ARGV[9] == '1' then
    completed = tonumber(ARGV[11])
    failed = tonumber(ARGV[12])
  end
  add('"type":"batch_status","status":"' .. ARGV[7] .. '"' .. ARGV[13])
  redis.call('HSET', KEYS[2], 'rank', rank, 'status', ARGV[7], 'total', total)
end
if n == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], table.concat(live, '\n'))
redis.call('HSET', KEYS[2], 'seq', seq, 'completed', completed, 'failed', failed)
-- Rank 4 is a final status: the stream lives on ARGV[5] more, for late readers.
local ttl = ARGV[4]
if rank >= 4 then ttl = ARGV[5] end
for k = 1, 3 do redis.call('PEXPIRE', KEYS[k], ttl) end
return n
