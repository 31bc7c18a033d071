-- Compact a finished job's history to its state changes and its last progress, once its grace
-- time for late resumes has passed. The kept records move into the job's record, in its
-- `compacted` field (joined by the ASCII record separator, which a record's JSON never holds
-- unescaped), and the history's sorted set goes: a few records cost ~2.4x their
-- bytes as a sorted set (its members are too long for the compact listpack encoding), and a set
-- trimmed in place would keep its 10,000-entry hash table (~128 KB). A resume from before the
-- job's last event then gets a snapshot, as for a trimmed history.
-- K: job, history. A: id.
-- Answers ok (kept, dropped), not_finished (the job runs again, or is gone: nothing to do).
redis.call('ZREM', L.compact_due, A.id)
local state = redis.call('HGET', K.job, 'state')
if not state or not is_terminal(state) then return answer({status = S.not_finished}) end
local records = redis.call('ZRANGE', K.history, 0, -1, 'WITHSCORES')
local keep = {}
local last_progress = false
for i = #records - 1, 1, -2 do  -- newest first: the first progress met is the last one
  local record = records[i]
  local first = string.find(record, '\n', 1, true)
  local second = string.find(record, '\n', first + 1, true)
  local progress = string.sub(record, first + 1, second - 1) == L.event.progress
  if not progress or not last_progress then
    keep[#keep + 1] = records[i + 1]
    keep[#keep + 1] = record
    last_progress = last_progress or progress
  end
end
local kept = {}
for i = #keep, 2, -2 do kept[#kept + 1] = keep[i] end  -- oldest first
redis.call('DEL', K.history)
redis.call('HSET', K.job, 'compacted', table.concat(kept, '\30'))
return answer({status = S.ok, kept = #kept, dropped = #records / 2 - #kept})
