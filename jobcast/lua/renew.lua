-- Renew a running job's lease (arq's in-progress key, whose value names the worker holding it)
-- and tell the worker whether the job has been asked to cancel: a safety net for a cancel message
-- missed while pub/sub was reconnecting.
-- A worker that stalled past its lease (a pause, a network partition) may find that another
-- worker has taken the job over: it is told so, and must stop its attempt without touching the
-- job. A lease that lapsed with nobody taking it over is simply taken back.
-- ARGV[5..]: id, lease (ms), owner.
-- Returns {1, cancel_requested or ''} while the lease is the caller's; {0, owner} once it is not.
local key = 'arq:in-progress:' .. ARGV[5]
local owner = redis.call('GET', key)
if owner and owner ~= ARGV[7] then return {0, owner} end
redis.call('SET', key, ARGV[7], 'PX', tonumber(ARGV[6]))
return {1, redis.call('HGET', P .. ':job:' .. ARGV[5], 'cancel_requested') or ''}
