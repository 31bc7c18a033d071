-- Cancel a job. A job that is not running (queued, delayed, or between attempts) ends now with a
-- `cancelled` event; a running one is flagged and its worker told, and the worker publishes
-- `cancelled` once the job code has stopped. The flag lives in the job's own record (not in a
-- global registry like arq's aborts), so it can never touch another job and expires with it.
-- ARGV[5..]: id, arq queue, head, tail, then snapshot field/value pairs for the cancelled event.
-- Returns {-1} no such job; {0, state} already ended; {1, seq} cancelled; {2} cancel requested.
local id, queue = ARGV[5], ARGV[6]
local jk = P .. ':job:' .. id
local state = redis.call('HGET', jk, 'state')
if not state then return {-1} end
if is_terminal(state) then return {0, state} end
redis.call('HSET', jk, 'cancel_requested', NOW_MS)
if state == 'running' then
  redis.call('PUBLISH', P .. ':cancel', id)
  return {2}
end
local seq = publish(id, 'cancelled', 'cancelled', ARGV[7], ARGV[8], -1, NOW_MS, rest(9))
if state == 'queued' then
  -- Never started, so no worker holds it: take it out of the queue now. (Between attempts a
  -- worker may still be finishing the last one; the next attempt then sees the job has ended.)
  local priority = redis.call('HGET', jk, 'priority') or 'default'
  redis.call('ZREM', queue, id)
  redis.call('ZREM', P .. ':dispatch:' .. priority, id)
  redis.call('DEL', 'arq:job:' .. id)
end
return {1, seq}
