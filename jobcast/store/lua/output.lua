-- Append a chunk to one attempt's output stream and publish it as an `output` event (see `publish`
-- in events.lua), in one step: the stream's text and the job's events never disagree, so a
-- snapshot's lengths (the record's `out:<attempt>:<stream>` fields, written by the same event)
-- name exactly the text before its seq.
-- K: job, history, channel, output (this attempt's text of the stream).
-- A: id, attempt, stream, data, length_field, used_field, full_field, head, tail (the event's
--   JSON around its seq), full_tail (the marker's: the event that says the limit is reached),
--   max_bytes (one attempt's output, all streams), max_streams (one attempt's streams).
-- Answers published (seq, length: the stream's bytes now), refused (the job ended, or the attempt
-- is not the job's now), not_found, over_limit (used: the attempt's bytes; quota: it was the
-- owner's disk quota; the marker was published with the first refusal) or too_many_streams.
-- The record's fields this writes (named by jobcast/store/output.py): the stream's length, the
-- attempt's bytes of output, and whether the attempt reached its limit.
local field, used_field, full_field = A.length_field, A.used_field, A.full_field
local f = redis.call('HMGET', K.job, 'state', 'attempt', field, used_field, full_field, 'outputs', 'owner', 'client')
if not f[1] then return answer({status = S.not_found}) end
if is_terminal(f[1]) or tonumber(f[2] or '0') ~= A.attempt then return answer({status = S.refused}) end
local used = tonumber(f[4] or '0')
if f[5] then return answer({status = S.over_limit, used = used}) end
local function refuse(quota)
  -- Told once, to every watcher: the stream goes no further, and nothing was silently cut.
  publish(K, {
    id = A.id, type = L.event.output, state = L.state.running, head = A.head, tail = A.full_tail,
    fence = A.attempt, fields = {full_field, 1},
  })
  return answer({status = S.over_limit, used = used, quota = quota})
end
if used + #A.data > A.max_bytes then return refuse(false) end
local fields = {}
local length = tonumber(f[3] or '0')
if not f[3] then
  -- A new stream: listed in the record, so that the job's end and deletion find its key.
  local name = A.attempt .. ':' .. A.stream
  local streams = 0
  for listed in string.gmatch(f[6] or '', '%S+') do
    if string.match(listed, '^(%d+):') == tostring(A.attempt) then streams = streams + 1 end
  end
  if streams >= A.max_streams then return answer({status = S.too_many_streams}) end
  fields = {'outputs', (f[6] and (f[6] .. ' ') or '') .. name}
end
-- Output kept in Redis counts against its owner's disk quota, as files do.
if not disk_charge(A.id, f[7] or '', f[8] or false, #A.data) then return refuse(true) end
redis.call('APPEND', K.output, A.data)
redis.call('EXPIRE', K.output, L.retention_s)
length = length + #A.data
fields[#fields + 1], fields[#fields + 2] = field, length
fields[#fields + 1], fields[#fields + 2] = used_field, used + #A.data
local seq = publish(K, {
  id = A.id, type = L.event.output, state = L.state.running, head = A.head, tail = A.tail,
  fence = A.attempt, fields = fields,
})
return answer({status = S.published, seq = seq, length = length})
