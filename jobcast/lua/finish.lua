-- arq's bookkeeping when a worker is done with a job (its `finish_job`), done only by the worker
-- that holds the job's lease. A worker that stalled past its lease while another took the job
-- over must not delete the job from arq's queue under the new holder: if that one then crashed,
-- nothing would ever run the job again. A lease that lapsed with nobody taking it over is not
-- ours either: the job's entry stays, and the next dispatch finds the job ended (and drops it)
-- or due again.
-- Key names are arq's (arq.constants), as in dispatch.lua and renew.lua.
-- ARGV[5..]: arq queue, job id, owner, finish (1: the job is done with; 0: it runs again),
--   score increment for a deferred retry ('' for none).
-- Returns 1 when done, 0 when the lease was not the caller's.
local queue, id, owner, finish, incr = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local in_progress = 'arq:in-progress:' .. id
if redis.call('GET', in_progress) ~= owner then return 0 end
redis.call('DEL', in_progress)
if finish == '1' then
  redis.call('DEL', 'arq:retry:' .. id, 'arq:job:' .. id)
  redis.call('ZREM', 'arq:abort', id)
  redis.call('ZREM', queue, id)
elseif incr ~= '' then
  redis.call('ZINCRBY', queue, incr, id)
end
return 1
