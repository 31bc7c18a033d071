-- Resume a paused kind: it is no longer paused, and up to A.max of its parked jobs go back to
-- their priority's queue with the score they had there (so they keep their place); jobs that
-- ended while parked (cancelled) are dropped. Called again while `left` is above 0.
-- A: kind, max. Answers ok with moved and left.
redis.call('HDEL', L.paused, A.kind)
local parked_key = L.parked_prefix .. A.kind
local batch = redis.call('ZRANGE', parked_key, 0, A.max - 1, 'WITHSCORES')
local moved = 0
for i = 1, #batch, 2 do
  local id = batch[i]
  redis.call('ZREM', parked_key, id)
  local job = redis.call('HMGET', L.job_prefix .. id, 'state', 'priority', 'owner')
  if job[1] and not is_terminal(job[1]) then
    enqueue(job[2], batch[i + 1], id, job[3] or nil)
    redis.call('HSET', L.job_prefix .. id, 'waiting', '', 'waiting_since', '')
    moved = moved + 1
  end
end
if moved > 0 then redis.call(L.publish, L.wake_channel, '') end
return answer({status = S.ok, moved = moved, left = redis.call('ZCARD', parked_key)})
