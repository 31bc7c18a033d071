-- Compact a finished job's history to its state changes and its last progress (its output is in
-- its output streams), once its grace
-- time for late resumes has passed. The kept records move into the job's record, in its
-- `compacted` field (joined by the ASCII record separator, which a record's JSON never holds
-- unescaped), and the history's list goes: a handful of records cost less as one hash field
-- than as a key of their own. A resume from before the job's last event then gets a snapshot,
-- as for a trimmed history.
-- K: job, history. A: id.
-- Answers ok (kept, dropped), not_finished (the job runs again, or is gone: nothing to do).
redis.call('ZREM', L.compact_due, A.id)
local state = redis.call('HGET', K.job, 'state')
if not state or not is_terminal(state) then return answer({status = S.not_finished}) end
local records = redis.call('LRANGE', K.history, 0, -1)
local keep = {}
local last_progress = false
for i = #records, 1, -1 do  -- newest first: the first progress met is the last one
  local record = records[i]
  local first = string.find(record, '\n', 1, true)
  local second = string.find(record, '\n', first + 1, true)
  local type = string.sub(record, first + 1, second - 1)
  local progress = type == L.event.progress
  -- Output events go: their text is kept whole in the output streams, which a snapshot names.
  if type ~= L.event.output and (not progress or not last_progress) then
    keep[#keep + 1] = record
    last_progress = last_progress or progress
  end
end
local kept = {}
for i = #keep, 1, -1 do kept[#kept + 1] = keep[i] end  -- oldest first
redis.call('DEL', K.history)
redis.call('HSET', K.job, 'compacted', table.concat(kept, '\30'))
return answer({status = S.ok, kept = #kept, dropped = #records - #kept})
