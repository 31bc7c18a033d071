-- A worker's claim: put back the jobs whose lease lapsed, then take up to A.want due jobs,
-- highest priority first and oldest first within a priority, each leased to A.owner for
-- A.lease_ms. A waiting job lives in its priority's queue only; a claimed one in `running`
-- (scored by when its lease lapses) with its holder in `leases`, until its worker finishes it.
-- A job whose worker died (or stalled) goes back to its queue once the lease lapses, and any
-- worker's next claim takes it. The reaper (jobcast/store/reaper.py) does the same from any
-- process, so that watchers hear of it even when no worker is left to claim.
-- A: owner, want, lease_ms, and optionally fields (the record's fields a worker reads to run a job,
-- among them kind, state, attempt, cancel_requested and owner), start ({worker: its name as
-- JSON, ts, kinds: {kind: max_attempts} of the kinds it serves}) and limits ({kinds: {kind:
-- {max_running, rate, per_ms}}, owner: the running jobs one owner may have, 0: any}; see
-- jobcast/limits.py). Within a priority, with L.fair, owners take turns (see `Keys.owner_queue`).
-- Answers ok, with jobs ({id, priority, score, the values of A.fields, and the seq of its `started`
-- event or 0} each), next_ms (when the next job not yet due becomes due or the next lease lapses;
-- -1: none) and held (whether a limit holds any job back). The record comes with the claim, so the worker needs no round trip of its own to read
-- it. With A.start, a job that can simply start (waiting, not asked to cancel, of a kind the worker
-- serves, with attempts left) starts here: its `started` event is published in the claim, as the
-- worker would publish it, which saves the worker a round trip and a script call per job. A job
-- that needs a decision first (its last attempt's worker died, a cancel request, an unknown kind,
-- no attempts left) is left to the worker (jobs/worker.py), which publishes how it goes on.
-- The lease that lapses first, per priority: only when it has lapsed is there anything to put back.
local first_lease = {}
for _, p in ipairs(L.priorities) do
  first_lease[p] = redis.call('ZRANGE', L.running[p], 0, 0, 'WITHSCORES')
  local lapsed = {}
  if first_lease[p][2] and tonumber(first_lease[p][2]) < NOW_MS then
    lapsed = redis.call('ZRANGEBYSCORE', L.running[p], '-inf', '(' .. NOW_MS, 'WITHSCORES', 'LIMIT', 0, 100)
    first_lease[p] = redis.call('ZRANGE', L.running[p], 0, 0, 'WITHSCORES')
  end
  for i = 1, #lapsed, 2 do
    local id = lapsed[i]
    redis.call('ZREM', L.running[p], id)
    redis.call('HDEL', L.leases, id)
    -- Due since its lease lapsed: ahead of what was submitted after that.
    enqueue(p, lapsed[i + 1], id, L.fair and redis.call('HGET', L.job_prefix .. id, 'owner') or nil)
  end
end
-- Scores are ready_ms plus a fraction that orders ties (see create.lua): due means below now + 1.
local due_below = '(' .. (NOW_MS + 1)

-- First the held jobs the limits now allow.
if LIM and A.want > 0 then release_held(redis.call('SMEMBERS', L.held)) end

-- Up to `n` due jobs of priority `p` (flat: id, score), out of its queues: in the owners' turns
-- when fair. What the turns leave (jobs queued before fair turns were on) is taken oldest first.
local function take_due(p, n)
  local out = {}
  if L.fair then
    -- The priority's queue is the job's home; an owner's queue only orders it. An entry that is
    -- no longer in the queue is stale (a process without fair turns claimed the job, during a
    -- rolling deploy or with them switched off): never claimed twice.
    local taken = fair_take(L.owner_rings[p], L.owner_queue_prefix[p], n, due_below)
    for i = 1, #taken, 2 do
      if redis.call('ZREM', L.queues[p], taken[i]) == 1 then
        out[#out + 1], out[#out + 2] = taken[i], taken[i + 1]
      end
    end
  end
  if #out < 2 * n then
    local rest = redis.call('ZRANGEBYSCORE', L.queues[p], '-inf', due_below, 'WITHSCORES', 'LIMIT', 0, n - #out / 2)
    for i = 1, #rest, 2 do
      local id = rest[i]
      dequeue(p, id, L.fair and redis.call('HGET', L.job_prefix .. id, 'owner') or nil)
      out[#out + 1], out[#out + 2] = id, rest[i + 1]
    end
  end
  return out
end

for _, p in ipairs(L.priorities) do
  while #jobs < A.want and parked < PARK_MAX do
    local due = take_due(p, A.want - #jobs)
    if #due == 0 then break end
    for i = 1, #due, 2 do take(due[i], p, due[i + 1]) end
  end
end
if #jobs > 0 then redis.call('INCRBY', L.claimed, #jobs) end
-- When to poll next matters only to a worker left with free slots (a busy one polls again as its
-- jobs end). A lease taken in this call lapses after every lease read above.
local next_ms = -1
local function sooner(at)
  at = at and math.floor(tonumber(at))
  if at and (next_ms < 0 or at < next_ms) then next_ms = at end
end
if #jobs < A.want then
  for _, p in ipairs(L.priorities) do
    sooner(redis.call('ZRANGEBYSCORE', L.queues[p], NOW_MS + 1, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2])
    sooner(first_lease[p][2])
  end
  -- A rate-limited kind with jobs held: when its oldest start in the interval leaves it.
  if LIM then
    for kind, limit in pairs(LIM.kinds) do
      if limit.rate and redis.call('EXISTS', L.kind_held_prefix .. kind .. L.kind_held_ring_suffix) == 1 then
        local oldest = redis.call('ZRANGE', L.kind_started_prefix .. kind, 0, 0, 'WITHSCORES')
        sooner(oldest[2] and tonumber(oldest[2]) + limit.per_ms or NOW_MS)
      end
    end
  end
  if #jobs > 0 and next_ms < 0 then next_ms = lease_until end
end
-- Whether a limit holds any job back now: a worker whose jobs end hands their slots on in the
-- script that ends them only while one does (jobs/arq_runtime.py, SlotHandOff).
local held = LIM ~= nil and redis.call('EXISTS', L.held) == 1
return answer({status = S.ok, jobs = jobs, next_ms = next_ms, held = held})
