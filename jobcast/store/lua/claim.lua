-- Claiming jobs for a worker (prepended, after common.lua and events.lua, to the scripts that
-- claim: dispatch, and hand_off, which claims for the slot a job's end frees; see
-- jobcast/store/scripts.py). C: the claim's arguments, the call's own (dispatch) or its `claim`
-- (hand_off): owner (the lease's holder), want, lease_ms, and optionally fields, start and limits
-- (dispatch.lua says what each holds). A claimed job is appended to `jobs`, each {id, priority,
-- score, and with C.fields the values of C.fields and the seq of its `started` event or 0}.
local C = A.claim or A
local field_index = {}
for i, name in ipairs(C.fields or {}) do field_index[name] = i end
-- A record field's value among the claim's HMGET values (nil when missing: HMGET gives false).
local function value(values, name) return values[field_index[name]] or nil end

-- Start a claimed job whose record values are `values`: the seq of its `started` event, or 0.
local function start(id, values)
  local state, kind = value(values, 'state'), value(values, 'kind')
  local cancel_requested = value(values, 'cancel_requested')
  if not (C.start and state and kind and is_waiting(state)) then return 0 end
  if cancel_requested and cancel_requested ~= '' then return 0 end
  local max_attempts = C.start.kinds[kind]
  local attempt = tonumber(value(values, 'attempt') or '0')
  -- A parent's continuation counts its attempts from where its first part stopped.
  local before = tonumber(value(values, 'attempts_before') or '0')
  if not max_attempts or attempt - before + 1 > max_attempts then return 0 end
  local k = job_keys(id, value(values, 'owner'))
  -- The same event `Progress.state(STARTED)` publishes (jobcast.protocol.event_template).
  return publish(k, {
    id = id,
    type = L.event.started,
    state = L.state.running,
    fence = attempt,
    head = '{"job_id":' .. cjson.encode(id) .. ',"seq":',
    tail = ',"type":"started","state":"running","ts":"' .. C.start.ts .. '","attempt":' .. (attempt + 1)
      .. ',"progress":null,"result":null,"error":null,"worker":' .. C.start.worker .. '}',
    fields = {'started_at', C.start.ts, 'error', '', 'next_attempt_at', '', 'waiting', '', 'waiting_since', ''},
  })
end

local lease_until = NOW_MS + C.lease_ms

-- Limits. A set of running jobs is counted once a call. Its members whose lease is gone (the job
-- ended, or its lease lapsed) are dropped once the set holds as many as its limit: a job leaves
-- `running` in several scripts, and none of them needs to know of limits, nor can a crashed
-- worker leak a slot. Below its limit a set is counted as it is: a member left behind can only
-- make the room smaller, never let one job too many start, and is dropped when the set fills.
-- (A job that ends by hand_off.lua leaves its sets at once, so under a binding limit the count
-- needs no lease lookups.)
local LIM = C.limits
local counted = {}
local function running_in(key, limit)
  local n = counted[key]
  if n then return n end
  n = redis.call('SCARD', key)
  if n >= limit then
    n = 0
    for _, id in ipairs(redis.call('SMEMBERS', key)) do
      if redis.call('HEXISTS', L.leases, id) == 1 then n = n + 1 else redis.call('SREM', key, id) end
    end
  end
  counted[key] = n
  return n
end
-- A rate-limited kind's starts within its interval (those before it are dropped).
local function started_in(kind, limit)
  local key = L.kind_started_prefix .. kind
  local n = counted[key]
  if n then return n end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', NOW_MS - limit.per_ms)
  n = redis.call('ZCARD', key)
  counted[key] = n
  return n
end
local function kind_limit(kind) return LIM and LIM.kinds[kind] or nil end
-- How many more held jobs of a kind this claim may start now (math.huge: no limit): what its
-- limits leave, and at most the claiming worker's share of the kind's concurrency limit
-- (C.shares, jobs/arq_runtime.py: spread over the workers that serve the kind).
local function kind_room(kind)
  local limit, room = kind_limit(kind), math.huge
  if not limit then return room end
  if limit.max_running then room = limit.max_running - running_in(L.kind_running_prefix .. kind, limit.max_running) end
  if limit.rate then room = math.min(room, limit.rate - started_in(kind, limit)) end
  if C.shares and C.shares[kind] then room = math.min(room, C.shares[kind]) end
  return room
end
local function owner_room(owner)
  if not (LIM and LIM.owner > 0 and owner) then return math.huge end
  return LIM.owner - running_in(L.owner_running_prefix .. owner, LIM.owner)
end
-- Up to `n` jobs (flat: id, score) from the owners' queues `prefix .. owner` whose turns are in
-- `ring`, scored below `below`, in turn: each round, every owner among the FAIR_SCAN lowest turns
-- gives one job (all `n`, when it is the only one) and moves on by what it gave. An owner with
-- nothing below `below` moves to the back of the ring (a job it has due later gets its turn
-- within a round of being due); one with nothing left leaves it.
local FAIR_SCAN = 16
-- What this call knows to be in the held index and in the held rings (`ring .. '\n' .. owner`):
-- a claim that holds a thousand jobs back writes each once, not once a job. Whatever leaves them
-- in the call leaves this too.
local HELD_SEEN = {}
local function fair_take(ring, prefix, n, below)
  local out = {}
  -- Every owner in a held ring has jobs to give (`below` is +inf): n of them are enough.
  local scan = below == '+inf' and math.min(n, FAIR_SCAN) or FAIR_SCAN
  local idle_rounds = 0
  while #out < 2 * n and idle_rounds < 2 do
    local owners = redis.call('ZRANGE', ring, 0, scan - 1, 'WITHSCORES')
    if #owners == 0 then break end
    local gave = false
    for i = 1, #owners, 2 do
      local left = n - #out / 2
      if left <= 0 then break end
      local owner, q = owners[i], prefix .. owners[i]
      local due = redis.call('ZRANGEBYSCORE', q, '-inf', below, 'WITHSCORES', 'LIMIT', 0, #owners == 2 and left or 1)
      if #due > 0 then
        local ids = {}
        for j = 1, #due, 2 do
          out[#out + 1], out[#out + 2] = due[j], due[j + 1]
          ids[#ids + 1] = due[j]
        end
        redis.call('ZREM', q, unpack(ids))
        redis.call('ZADD', ring, tonumber(owners[i + 1]) + #ids, owner)
        gave = true
      elseif redis.call('EXISTS', q) == 0 then
        redis.call('ZREM', ring, owner)
        HELD_SEEN[ring .. '\n' .. owner] = nil
      else
        local last = redis.call('ZRANGE', ring, -1, -1, 'WITHSCORES')
        redis.call('ZADD', ring, math.max(tonumber(last[2]), tonumber(owners[i + 1])), owner)
      end
    end
    idle_rounds = gave and 0 or idle_rounds + 1
  end
  return out
end

-- Where a due job of `kind` and `owner` waits instead of starting, and why; nil: it may start.
-- A kind's held jobs wait in one set per owner, with the owners' turns in a ring, so that they
-- come back in fair turns too; an owner's, in one set.
local function hold_for(kind, owner)
  local limit = kind_limit(kind)
  if limit then
    local reason
    if limit.max_running then
      local n = running_in(L.kind_running_prefix .. kind, limit.max_running)
      if n >= limit.max_running then
        reason = string.format('%s is at its limit (%d of %d running)', kind, n, limit.max_running)
      end
    end
    if not reason and limit.rate and started_in(kind, limit) >= limit.rate then
      reason = string.format('%s is at its rate limit (%d started per %g s)', kind, limit.rate, limit.per_ms / 1000)
    end
    if reason then return {kind = kind, token = 'kind=' .. kind, reason = reason} end
  end
  if owner_room(owner) <= 0 then
    return {owner = owner, token = 'owner=' .. owner, reason = string.format(
      'its owner is at its limit (%d of %d running)', running_in(L.owner_running_prefix .. owner, LIM.owner), LIM.owner)}
  end
  return nil
end

local function hold(held, id, score, owner)
  if held.kind then
    local base = L.kind_held_prefix .. held.kind
    local who = owner or ''
    redis.call('ZADD', base .. L.kind_held_owner_infix .. who, score, id)
    local ring = base .. L.kind_held_ring_suffix
    if not HELD_SEEN[ring .. '\n' .. who] then
      HELD_SEEN[ring .. '\n' .. who] = true
      if redis.call('ZSCORE', ring, who) == false then
        local lowest = redis.call('ZRANGE', ring, 0, 0, 'WITHSCORES')
        redis.call('ZADD', ring, lowest[2] or 0, who)
      end
    end
  else
    redis.call('ZADD', L.owner_held_prefix .. held.owner, score, id)
  end
  if not HELD_SEEN[held.token] then
    HELD_SEEN[held.token] = true
    redis.call('SADD', L.held, held.token)
  end
end

-- A job starts: it takes its place in the counts the limits read.
local function count_start(id, kind, owner)
  local limit = kind_limit(kind)
  if limit and limit.max_running then
    local key = L.kind_running_prefix .. kind
    counted[key] = running_in(key, limit.max_running) + 1
    redis.call('SADD', key, id)
  end
  if limit and limit.rate then
    local key = L.kind_started_prefix .. kind
    started_in(kind, limit)
    redis.call('ZADD', key, NOW_MS, id)
    redis.call('PEXPIRE', key, limit.per_ms)
    counted[key] = counted[key] + 1
  end
  if LIM.owner > 0 and owner then
    local key = L.owner_running_prefix .. owner
    counted[key] = running_in(key, LIM.owner) + 1
    redis.call('SADD', key, id)
    -- Owners come and go (an anonymous one may never come back): its set goes with its jobs.
    redis.call('EXPIRE', key, L.retention_s)
  end
end

-- Due jobs of a paused kind are parked (jobcast/store/pausing.py), and those a limit holds back
-- are held; at most PARK_MAX a call, so that a long queue of them cannot hold Redis for long: the
-- next claim moves more.
local PARK_MAX = 1000
local paused = {}
local flat = redis.call('HGETALL', L.paused)
-- Each paused kind's value: when it was paused (epoch ms) and, after a space, by whom.
for i = 1, #flat, 2 do
  local ms, by = string.match(flat[i + 1], '^(%d+) ?(.*)$')
  paused[flat[i]] = {ms = ms or '', by = by or ''}
end
local any_paused = #flat > 0
local parked = 0
local jobs = {}
local read_fields = C.fields or {'kind', 'owner'}
local function field(values, name)
  local i = field_index[name]
  if C.fields then return i and values[i] or nil end
  return values[name == 'kind' and 1 or 2] or nil
end

-- A due job out of its queue: claimed (leased to this worker, and started when it can simply
-- start), or parked, or held back.
local function take(id, p, score, values)
  values = values or ((C.fields or any_paused or LIM) and redis.call('HMGET', L.job_prefix .. id, unpack(read_fields)))
  local kind = values and field(values, 'kind')
  local owner = values and field(values, 'owner')
  local held, reason, since
  if kind and paused[kind] then
    redis.call('ZADD', L.parked_prefix .. kind, score, id)
    local pause = paused[kind]
    reason = kind .. ' paused' .. (pause.by ~= '' and (' by ' .. pause.by) or '')
    since = pause.ms
  elseif LIM then
    held = hold_for(kind, owner)
    if held then
      hold(held, id, score, owner)
      reason = held.reason
    end
  end
  if reason then
    -- Why, for its snapshot and its watchers (server/fanout/queue_places.py tells them, only
    -- while someone watches: an event in its history would cost every held job a publish), and
    -- for a pause since when. A limit's hold says no time: knowing when it first held the job
    -- would cost a read per hold, on the path a binding limit takes for every job.
    redis.call('HSET', L.job_prefix .. id, 'waiting', reason, 'waiting_since', since or '')
    parked = parked + 1
    return
  end
  redis.call('ZADD', L.running[p], lease_until, id)
  redis.call('HSET', L.leases, id, C.owner)
  if LIM then count_start(id, kind, owner) end
  local job = {id, p, math.floor(tonumber(score))}
  if C.fields then
    job[4] = values
    job[5] = start(id, values)
  end
  jobs[#jobs + 1] = job
end

-- The held jobs the limits now allow, of the kinds and owners `tokens` names (`kind=<kind>`,
-- `owner=<owner>`, as `L.held` holds them), claimed straight from where they wait (they were due
-- before anything in the queues; a kind's in its owners' turns): at most RELEASE_MAX a call, and
-- at most C.want in all.
local RELEASE_MAX = 1000
local function release_held(tokens)
  local released = 0
  for _, token in ipairs(tokens) do
    local what, name = string.match(token, '^(%a+)=(.*)$')
    local room = math.min(what == 'kind' and kind_room(name) or owner_room(name), RELEASE_MAX - released)
    room = math.min(room, C.want - #jobs)
    local batch, empty = {}, false
    if room > 0 and what == 'kind' then
      local base = L.kind_held_prefix .. name
      batch = fair_take(base .. L.kind_held_ring_suffix, base .. L.kind_held_owner_infix, room, '+inf')
      -- Fewer than asked for: the ring may be empty now (an owner leaves it when it has no more).
      empty = #batch < 2 * room and redis.call('EXISTS', base .. L.kind_held_ring_suffix) == 0
    elseif room > 0 then
      local key = L.owner_held_prefix .. name
      batch = redis.call('ZPOPMIN', key, room)
      empty = #batch < 2 * room and redis.call('EXISTS', key) == 0
    end
    for i = 1, #batch, 2 do
      local id = batch[i]
      -- The record's fields the claim answers with hold its state and priority too: one read.
      local values = redis.call('HMGET', L.job_prefix .. id, unpack(C.fields or {'state', 'priority'}))
      local state = C.fields and value(values, 'state') or values[1] or nil
      if state and not is_terminal(state) then
        take(id, C.fields and value(values, 'priority') or values[2], batch[i + 1], C.fields and values or nil)
        released = released + 1
      end
    end
    if empty then
      redis.call('SREM', L.held, token)
      HELD_SEEN[token] = nil
    end
  end
end
