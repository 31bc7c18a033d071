-- A worker's claim: put back the jobs whose lease lapsed, then take up to A.want due jobs,
-- highest priority first and oldest first within a priority, each leased to A.owner for
-- A.lease_ms. A waiting job lives in its priority's queue only; a claimed one in `running`
-- (scored by when its lease lapses) with its holder in `leases`, until its worker finishes it.
-- A job whose worker died (or stalled) goes back to its queue once the lease lapses, and any
-- worker's next claim takes it: no reaper process is needed.
-- A: owner, want, lease_ms, and optionally fields (the record's fields a worker reads to run a job).
-- Answers ok, with jobs ({id, priority, score, and the values of A.fields} each) and next_ms (when the
-- next job not yet due becomes due or the next lease lapses; -1: none). The record comes with the
-- claim, so the worker needs no round trip of its own to read it.
local lease_until = NOW_MS + A.lease_ms
for _, p in ipairs(L.priorities) do
  local lapsed = redis.call('ZRANGEBYSCORE', L.running[p], '-inf', '(' .. NOW_MS, 'WITHSCORES', 'LIMIT', 0, 100)
  for i = 1, #lapsed, 2 do
    redis.call('ZREM', L.running[p], lapsed[i])
    redis.call('HDEL', L.leases, lapsed[i])
    -- Due since its lease lapsed: ahead of what was submitted after that.
    redis.call('ZADD', L.queues[p], lapsed[i + 1], lapsed[i])
  end
end
-- Scores are ready_ms plus a fraction that orders ties (see create.lua): due means below now + 1.
local due_below = '(' .. (NOW_MS + 1)
-- Due jobs of a paused kind are parked (jobcast/pausing.py), at most PARK_MAX a call so that a
-- long queue of them cannot hold Redis for long: the next claim parks more.
local PARK_MAX = 1000
local paused = {}
local flat = redis.call('HGETALL', L.paused)
for i = 1, #flat, 2 do paused[flat[i]] = true end
local any_paused = #flat > 0
local parked = 0
local jobs = {}
for _, p in ipairs(L.priorities) do
  while #jobs < A.want and parked < PARK_MAX do
    local due = redis.call('ZRANGEBYSCORE', L.queues[p], '-inf', due_below, 'WITHSCORES', 'LIMIT', 0, A.want - #jobs)
    if #due == 0 then break end
    for i = 1, #due, 2 do
      local id = due[i]
      redis.call('ZREM', L.queues[p], id)
      local kind = any_paused and redis.call('HGET', L.job_prefix .. id, 'kind')
      if kind and paused[kind] then
        redis.call('ZADD', L.parked_prefix .. kind, due[i + 1], id)
        parked = parked + 1
      else
        redis.call('ZADD', L.running[p], lease_until, id)
        redis.call('HSET', L.leases, id, A.owner)
        local job = {id, p, math.floor(tonumber(due[i + 1]))}
        if A.fields then job[4] = redis.call('HMGET', L.job_prefix .. id, unpack(A.fields)) end
        jobs[#jobs + 1] = job
      end
    end
  end
end
local next_ms = -1
local function sooner(first)
  local at = first[2] and math.floor(tonumber(first[2]))
  if at and (next_ms < 0 or at < next_ms) then next_ms = at end
end
for _, p in ipairs(L.priorities) do
  sooner(redis.call('ZRANGEBYSCORE', L.queues[p], NOW_MS + 1, '+inf', 'WITHSCORES', 'LIMIT', 0, 1))
  sooner(redis.call('ZRANGE', L.running[p], 0, 0, 'WITHSCORES'))
end
return answer({status = S.ok, jobs = jobs, next_ms = next_ms})
