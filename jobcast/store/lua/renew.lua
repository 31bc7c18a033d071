-- Renew a running job's lease, and tell the worker whether the job has been asked to cancel (a
-- safety net for a cancel message missed while pub/sub was reconnecting).
-- A worker that stalled past its lease (a long pause, a network partition) finds the job put back
-- in its queue or taken over by another worker: it is told so, and must stop its attempt without
-- touching the job.
-- K: job. A: id, priority, owner, lease_ms.
-- Answers held (cancel_requested) while the lease is the caller's; not_holder (holder) once not.
local holder = redis.call('HGET', L.leases, A.id)
if holder ~= A.owner then return answer({status = S.not_holder, holder = holder or ''}) end
redis.call('ZADD', L.running[A.priority], 'XX', NOW_MS + A.lease_ms, A.id)
local cancel = redis.call('HGET', K.job, 'cancel_requested')
return answer({status = S.held, cancel_requested = cancel ~= false and cancel ~= ''})
