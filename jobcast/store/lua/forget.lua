-- Delete a finished job and every trace of it in Redis (the cap on kept jobs reached it): its
-- record, history, output and its places in the indexes.
-- K: job, history, kind_index; owner_index and via_index when the job has them.
-- A: id. Answers ok, or not_finished (it runs again, or is gone already): nothing is deleted.
local state = redis.call('HGET', K.job, 'state')
if not state or not is_terminal(state) then return answer({status = S.not_finished}) end
-- The job's output streams, every attempt's (listed in its record).
for name in string.gmatch(redis.call('HGET', K.job, 'outputs') or '', '%S+') do
  redis.call('DEL', L.output_prefix .. A.id .. ':' .. name)
end
redis.call('DEL', K.job, K.history)
redis.call('ZREM', L.index_all, A.id)
redis.call('ZREM', L.index_top, A.id)
redis.call('ZREM', L.index_ids, A.id)
redis.call('ZREM', L.state_index[state], A.id)
redis.call('ZREM', K.kind_index, A.id)
if K.owner_index then redis.call('ZREM', K.owner_index, A.id) end
if K.via_index then redis.call('ZREM', K.via_index, A.id) end
redis.call('ZREM', L.compact_due, A.id)
return answer({status = S.ok})
