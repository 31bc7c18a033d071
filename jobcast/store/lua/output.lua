-- Append a chunk to one attempt's output stream and publish it as an `output` event (see `publish`
-- in events.lua), in one step: the stream's text and the job's events never disagree, so a
-- snapshot's lengths (the record's `out:<attempt>:<stream>` fields, written by the same event)
-- name exactly the text before its seq.
-- A call carries one chunk, or with A.items many (of any jobs: a worker sends what its writers
-- have pending together, so that a hundred jobs and their tokens cost one call, not a hundred).
-- The keys of one chunk: job, history, channel, output (this attempt and this stream: its text);
-- with A.items, those of item i are the same names followed by `.i` in K.
-- The arguments of a chunk: id, attempt, stream, data, length_field, used_field, full_field, head
--   and tail (the JSON of the event around its seq), full_tail (that of the marker: the event
--   that says the limit is reached); and for all chunks: max_bytes (the output of one attempt,
--   all streams), max_streams (the streams of one attempt).
-- The answer for a chunk: published (seq, length: the bytes of the stream now), refused (the job
-- ended, or the attempt is not the current one), not_found, over_limit (used: the bytes of the
-- attempt; quota: it was the disk quota of the owner; the marker was published with the first
-- refusal) or too_many_streams. With A.items: ok, with answers (one a chunk, in order).
-- The record fields this writes (named by jobcast/store/output.py): the length of the stream, the
-- bytes of output of the attempt, and whether the attempt reached its limit.
local function append(k, a)
  local field, used_field, full_field = a.length_field, a.used_field, a.full_field
  -- One read of the record, for this script and for its event (`known`: see publish).
  local f = redis.call('HMGET', k.job, 'state', 'attempt', field, used_field, full_field, 'outputs', 'owner', 'client',
    'first_started_at', 'kind', 'priority', 'seq')
  if not f[1] then return {status = S.not_found} end
  local known = {f[1], f[2], f[9], f[7], f[10], f[11], f[12], f[8], f[6]}
  if is_terminal(f[1]) or tonumber(f[2] or '0') ~= a.attempt then return {status = S.refused} end
  local used = tonumber(f[4] or '0')
  if f[5] then return {status = S.over_limit, used = used} end
  local function refuse(quota)
    -- Told once, to every watcher: the stream goes no further, and nothing was silently cut.
    publish(k, {
      id = a.id, type = L.event.output, state = L.state.running, head = a.head, tail = a.full_tail,
      fence = a.attempt, fields = {full_field, 1}, known = known,
    })
    return {status = S.over_limit, used = used, quota = quota}
  end
  if used + #a.data > A.max_bytes then return refuse(false) end
  local fields = {}
  local length = tonumber(f[3] or '0')
  if not f[3] then
    -- A new stream: listed in the record, so that the job's end and deletion find its key.
    local name = a.attempt .. ':' .. a.stream
    local streams = 0
    for listed in string.gmatch(f[6] or '', '%S+') do
      if string.match(listed, '^(%d+):') == tostring(a.attempt) then streams = streams + 1 end
    end
    if streams >= A.max_streams then return {status = S.too_many_streams} end
    fields = {'outputs', (f[6] and (f[6] .. ' ') or '') .. name}
  end
  -- Output kept in Redis counts against its owner's disk quota, as files do.
  if not disk_charge(a.id, f[7] or '', f[8] or false, #a.data) then return refuse(true) end
  -- A stream lives as long as its job: the job's end sets its expiry again (events.lua).
  if redis.call('APPEND', k.output, a.data) == #a.data then redis.call('EXPIRE', k.output, L.retention_s) end
  length = length + #a.data
  fields[#fields + 1], fields[#fields + 2] = field, length
  fields[#fields + 1], fields[#fields + 2] = used_field, used + #a.data
  local seq = publish(k, {
    id = a.id, type = L.event.output, state = L.state.running, head = a.head, tail = a.tail,
    fence = a.attempt, fields = fields, known = known,
  })
  return {status = S.published, seq = seq, length = length}
end

if not A.items then return answer(append(K, A)) end
local answers = {}
for i, item in ipairs(A.items) do
  local k = {}
  for _, name in ipairs({'job', 'history', 'channel', 'output'}) do k[name] = K[name .. '.' .. i] end
  answers[i] = append(k, item)
end
return answer({status = S.ok, answers = answers})
