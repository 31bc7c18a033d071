-- A worker's claim: put back the jobs whose lease lapsed, then take up to A.want due jobs,
-- highest priority first and oldest first within a priority, each leased to A.owner for
-- A.lease_ms. A waiting job lives in its priority's queue only; a claimed one in `running`
-- (scored by when its lease lapses) with its holder in `leases`, until its worker finishes it.
-- A job whose worker died (or stalled) goes back to its queue once the lease lapses, and any
-- worker's next claim takes it. The reaper (jobcast/store/reaper.py) does the same from any
-- process, so that watchers hear of it even when no worker is left to claim.
-- A: owner, want, lease_ms, and optionally fields (the record's fields a worker reads to run a job,
-- among them kind, state, attempt, cancel_requested and owner) and start ({worker: its name as
-- JSON, ts, kinds: {kind: max_attempts} of the kinds it serves}).
-- Answers ok, with jobs ({id, priority, score, the values of A.fields, and the seq of its `started`
-- event or 0} each) and next_ms (when the next job not yet due becomes due or the next lease lapses;
-- -1: none). The record comes with the claim, so the worker needs no round trip of its own to read
-- it. With A.start, a job that can simply start (waiting, not asked to cancel, of a kind the worker
-- serves, with attempts left) starts here: its `started` event is published in the claim, as the
-- worker would publish it, which saves the worker a round trip and a script call per job. A job
-- that needs a decision first (its last attempt's worker died, a cancel request, an unknown kind,
-- no attempts left) is left to the worker (jobs/worker.py), which publishes how it goes on.
local field_index = {}
for i, name in ipairs(A.fields or {}) do field_index[name] = i end
-- A record field's value among the claim's HMGET values (nil when missing: HMGET gives false).
local function value(values, name) return values[field_index[name]] or nil end

-- Start a claimed job whose record values are `values`: the seq of its `started` event, or 0.
local function start(id, values)
  local state, kind = value(values, 'state'), value(values, 'kind')
  local cancel_requested = value(values, 'cancel_requested')
  if not (A.start and state and kind and is_waiting(state)) then return 0 end
  if cancel_requested and cancel_requested ~= '' then return 0 end
  local max_attempts = A.start.kinds[kind]
  local attempt = tonumber(value(values, 'attempt') or '0')
  if not max_attempts or attempt + 1 > max_attempts then return 0 end
  local k = {job = L.job_prefix .. id, history = L.history_prefix .. id, channel = L.channel_prefix .. id}
  local owner = value(values, 'owner')
  if owner then
    local base = L.owner_feed_prefix .. owner
    k.owner_feed = base
    k.owner_feed_history = base .. L.owner_feed_history_suffix
    k.owner_feed_position = base .. L.owner_feed_position_suffix
  end
  -- The same event `Progress.state(STARTED)` publishes (jobcast.protocol.event_template).
  return publish(k, {
    id = id,
    type = L.event.started,
    state = L.state.running,
    fence = attempt,
    head = '{"job_id":' .. cjson.encode(id) .. ',"seq":',
    tail = ',"type":"started","state":"running","ts":"' .. A.start.ts .. '","attempt":' .. (attempt + 1)
      .. ',"progress":null,"result":null,"error":null,"worker":' .. A.start.worker .. '}',
    fields = {'started_at', A.start.ts, 'error', '', 'next_attempt_at', ''},
  })
end

local lease_until = NOW_MS + A.lease_ms
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
    redis.call('ZREM', L.running[p], lapsed[i])
    redis.call('HDEL', L.leases, lapsed[i])
    -- Due since its lease lapsed: ahead of what was submitted after that.
    redis.call('ZADD', L.queues[p], lapsed[i + 1], lapsed[i])
  end
end
-- Scores are ready_ms plus a fraction that orders ties (see create.lua): due means below now + 1.
local due_below = '(' .. (NOW_MS + 1)
-- Due jobs of a paused kind are parked (jobcast/store/pausing.py), at most PARK_MAX a call so that a
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
        if A.fields then
          job[4] = redis.call('HMGET', L.job_prefix .. id, unpack(A.fields))
          job[5] = start(id, job[4])
        end
        jobs[#jobs + 1] = job
      end
    end
  end
end
-- When to poll next matters only to a worker left with free slots (a busy one polls again as its
-- jobs end). A lease taken in this call lapses after every lease read above.
local next_ms = -1
local function sooner(first)
  local at = first[2] and math.floor(tonumber(first[2]))
  if at and (next_ms < 0 or at < next_ms) then next_ms = at end
end
if #jobs < A.want then
  for _, p in ipairs(L.priorities) do
    sooner(redis.call('ZRANGEBYSCORE', L.queues[p], NOW_MS + 1, '+inf', 'WITHSCORES', 'LIMIT', 0, 1))
    sooner(first_lease[p])
  end
  if #jobs > 0 and next_ms < 0 then next_ms = lease_until end
end
return answer({status = S.ok, jobs = jobs, next_ms = next_ms})
