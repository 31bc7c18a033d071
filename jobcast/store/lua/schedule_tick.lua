-- Account for a schedule's ticks up to A.through_ms, once: only if the schedule's state still
-- says A.expected_ms (the last tick the caller read), so that of several processes that planned
-- the same ticks one counts them. With A.job, the tick fired that job (made by the caller first,
-- with the tick's idempotency key, so a repeat finds the same job); A.missed and A.late are the
-- counts the plan gave (jobcast/schedule.py `plan`). K.state: the schedule's state hash.
-- Answers ok, or held (another process accounted for these ticks first).
local last = redis.call('HGET', K.state, 'last_tick_ms')
if (last or '') ~= A.expected_ms then return answer({status = S.held}) end
redis.call('HSET', K.state, 'last_tick_ms', A.through_ms)
if A.job then
  redis.call('HSET', K.state, 'last_job', A.job, 'last_fired_ms', A.through_ms, 'last_error', '')
  redis.call('HINCRBY', K.state, 'fired', 1)
end
if A.error then redis.call('HSET', K.state, 'last_error', A.error) end
if A.missed > 0 then redis.call('HINCRBY', K.state, 'missed', A.missed) end
if A.late then redis.call('HINCRBY', K.state, 'late', 1) end
return answer({status = S.ok})
