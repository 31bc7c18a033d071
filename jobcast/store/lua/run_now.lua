-- Run a job that waits for its time (delayed, or backing off between attempts) now: it moves to
-- the front of what is due in its queue, and idle workers are woken.
-- K: job. A: id, now_iso.
-- Answers ok; not_found; refused (the job is not waiting for a time still ahead).
local state = redis.call('HGET', K.job, 'state')
if not state then return answer({status = S.not_found}) end
local priority = redis.call('HGET', K.job, 'priority')
local score = priority and redis.call('ZSCORE', L.queues[priority], A.id)
if is_terminal(state) or not score or tonumber(score) <= NOW_MS then return answer({status = S.refused}) end
local now_score = string.format('%d.%03d', NOW_MS, redis.call('INCR', L.queue_order) % 1000)
redis.call('ZADD', L.queues[priority], 'XX', now_score, A.id)
if L.fair then
  local owner = redis.call('HGET', K.job, 'owner') or ''
  redis.call('ZADD', L.owner_queue_prefix[priority] .. owner, 'XX', now_score, A.id)
end
redis.call('HSET', K.job, 'run_at', A.now_iso, 'next_attempt_at', '')
redis.call(L.publish, L.wake_channel, '')
return answer({status = S.ok})
