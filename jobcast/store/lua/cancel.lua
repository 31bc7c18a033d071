-- Cancel a job. A job no worker holds (queued, delayed, or waiting between attempts) ends now with
-- a `cancelled` event and leaves its queue; a running one is flagged and its worker told, and the
-- worker publishes `cancelled` once the job code has stopped. The flag lives in the job's own
-- record (not in a global registry like arq's aborts), so it can never touch another job and
-- expires with it.
-- K: job, history, channel. A: event (for `publish`: id, head, tail, fields).
-- Answers not_found; ended (state); cancelled (seq); cancel_requested.
local state = redis.call('HGET', K.job, 'state')
if not state then return answer({status = S.not_found}) end
if is_terminal(state) then return answer({status = S.ended, state = state}) end
redis.call('HSET', K.job, 'cancel_requested', NOW_MS)
if state == L.state.running then
  redis.call('PUBLISH', L.cancel_channel, A.event.id)
  return answer({status = S.cancel_requested})
end
A.event.type, A.event.state, A.event.fence = L.event.cancelled, L.state.cancelled, -1
local seq = publish(K, A.event)
-- In its queue, no worker holds it: nothing will run it now. (Between attempts a worker may still
-- be finishing the last one; it finds the job ended when it puts it back.)
local job = redis.call('HMGET', K.job, 'priority', 'kind', 'owner')
local priority, kind, owner = job[1] or nil, job[2] or nil, job[3] or nil
if priority then dequeue(priority, A.event.id, owner) end
-- Or parked, its kind paused; or held back by a limit.
if kind then
  redis.call('ZREM', L.parked_prefix .. kind, A.event.id)
  redis.call('ZREM', L.kind_held_prefix .. kind .. L.kind_held_owner_infix .. (owner or ''), A.event.id)
end
if owner then redis.call('ZREM', L.owner_held_prefix .. owner, A.event.id) end
return answer({status = S.cancelled, seq = seq})
