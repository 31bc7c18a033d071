-- Renew a running job's lease (arq's in-progress key) and tell the worker whether the job has been
-- asked to cancel: a safety net for a cancel message missed while pub/sub was reconnecting.
-- SET rather than PEXPIRE: if a stalled worker whose lease was taken over finishes and deletes the
-- key, the worker that really runs the job puts it back within a third of the lease.
-- ARGV[5..]: id, lease (ms).
local id = ARGV[5]
redis.call('SET', 'arq:in-progress:' .. id, '1', 'PX', tonumber(ARGV[6]))
return redis.call('HGET', P .. ':job:' .. id, 'cancel_requested')
