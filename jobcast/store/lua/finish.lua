-- A worker is done with a job's attempt: the lease ends, and the job either
-- leaves the queue for good (A.finish) or goes back to its queue, due at A.ready_ms (a retry's
-- backoff, or at once after a shutdown). Only the lease's holder may do this: a worker that
-- stalled past its lease while another took the job over must not take the job from under the
-- new holder (if that one then crashed, nothing would ever run the job again).
-- K: job. A: id, priority, owner, finish, ready_ms.
-- Answers ok; not_holder when the lease was not the caller's.
if redis.call('HGET', L.leases, A.id) ~= A.owner then return answer({status = S.not_holder}) end
redis.call('HDEL', L.leases, A.id)
redis.call('ZREM', L.running[A.priority], A.id)
local job = redis.call('HMGET', K.job, 'state', 'owner')
if not A.finish and job[1] and not is_terminal(job[1]) then
  enqueue(A.priority, A.ready_ms, A.id, job[2] or nil)
end
return answer({status = S.ok})
