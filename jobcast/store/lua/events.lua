-- Writing events (prepended, after common.lua, to the scripts that publish: publish, create,
-- cancel, dispatch, output, hand_off; jobcast/store/scripts.py). Kept apart so that the other
-- scripts' layout holds none of what these read.

-- A script that writes many events (a batch of creates) defers what only needs its final value or
-- can be written in one command for all its jobs: the clocks, the kinds' waiting counts (the
-- dashboard's; an owner's count is read for its limit within the batch, so it is never
-- deferred), the feeds' seqs, records and trims, and the sorted-set entries it adds (one ZADD
-- per key rather than one per job: each command a script calls costs Redis more than the entry
-- it adds). It calls defer_writes() first and flush_writes() before it returns; a script that does
-- neither writes each at once. Nothing it defers is read back before the flush.
local DEFER = nil
local function defer_writes()
  DEFER = {clocks = {}, kind_waiting = {}, zadds = {}, zadd_keys = {}, feeds = {}, feed_keys = {}}
end

-- Values per command where a script writes a list of them: unpack passes at most about 8,000 (the
-- size of Lua's C stack).
local ARGS_PER_CALL = 2000

-- Call `command` on `key` with `values` (a flat list), as few times as the bound allows.
local function call_in_chunks(command, key, values)
  for i = 1, #values, ARGS_PER_CALL do
    redis.call(command, key, unpack(values, i, math.min(i + ARGS_PER_CALL - 1, #values)))
  end
end

-- Add `member` to sorted set `key` with `score`, now or (deferred) with the call's others.
local function zadd(key, score, member)
  if not DEFER then
    redis.call('ZADD', key, score, member)
    return
  end
  local pending = DEFER.zadds[key]
  if not pending then
    pending = {}
    DEFER.zadds[key] = pending
    DEFER.zadd_keys[#DEFER.zadd_keys + 1] = key  -- in order: the same writes every run
  end
  pending[#pending + 1] = score
  pending[#pending + 1] = member
end

-- Keep the counts of waiting jobs: the owner's and its anonymous client address's (for their
-- limits), and each kind's per priority (for the dashboard), fields of one hash each: owners and
-- kinds are data, not keys. `job` holds the record's owner, client, kind and priority (read by the
-- caller, which reads the record anyway).
local function count_waiting(job, delta)
  for _, who in ipairs({job.owner or false, job.client or false}) do
    if who and redis.call('HINCRBY', L.owner_waiting, who, delta) <= 0 then
      redis.call('HDEL', L.owner_waiting, who)
    end
  end
  if job.kind and job.priority then
    local field = job.kind .. '|' .. job.priority
    if DEFER then
      DEFER.kind_waiting[field] = (DEFER.kind_waiting[field] or 0) + delta
    elseif redis.call('HINCRBY', L.kind_waiting, field, delta) <= 0 then
      redis.call('HDEL', L.kind_waiting, field)
    end
  end
end

-- Jobs finished per minute (kept two hours) and per hour (kept two days), by kind and final state:
-- the dashboard's graphs (jobcast/queries/finished.py).
local function count_finished(kind, state)
  local field = (kind or '?') .. '|' .. state
  local minute = L.finished_minute .. math.floor(NOW_MS / 60000)
  local hour = L.finished_hour .. math.floor(NOW_MS / 3600000)
  -- A bucket's expiry is set when it gets a field (a count of 1), not at every count.
  if redis.call('HINCRBY', minute, field, 1) == 1 then redis.call('EXPIRE', minute, 7200) end
  if redis.call('HINCRBY', hour, field, 1) == 1 then redis.call('EXPIRE', hour, 172800) end
end

-- A score that orders entries by time and, within one millisecond, by arrival: `ms` with a
-- counter in the fraction, never behind the last score this clock gave (web processes' clocks may
-- differ by a little; an entry may then be scored that little later than asked). Redis orders
-- equal scores by member, here a random id, so plain ms would shuffle entries made together.
-- Formatted here: Lua would print the number with 14 significant digits, losing the fraction.
-- A script that scores many entries (a batch of creates) reads each clock once: CLOCKS holds what
-- this call last wrote to it.
local CLOCKS = {}
local function clock_score(clock, at_ms)
  local last = CLOCKS[clock]
  if not last then
    local stored = redis.call('HMGET', clock, 'ms', 'n')
    last = {tonumber(stored[1]) or 0, tonumber(stored[2]) or 0}
  end
  local ms, n = last[1], last[2] + 1
  if at_ms > ms then
    ms, n = at_ms, 0
  elseif n > 999 then
    ms, n = ms + 1, 0
  end
  if DEFER then
    DEFER.clocks[clock] = true
  else
    redis.call('HSET', clock, 'ms', ms, 'n', n)
  end
  CLOCKS[clock] = {ms, n}
  return string.format('%d.%03d', ms, n)
end

-- The score of a job in the indexes (`GET /api/jobs` lists by it, newest first).
local function index_score()
  return clock_score(L.index_clock, NOW_MS)
end

-- Append a state change to a feed (`f`: channel, history, position) and publish it. The feed seq
-- and the feed's epoch live in one hash, so they are lost together (a Redis that restarts empty, a
-- FLUSHALL): the new epoch then tells a client that its feed id belongs to a history that no
-- longer exists. Readers create the epoch the same way (HSETNX).
local EPOCHS = {}  -- a feed's epoch, once read in this call

-- Append `records` to feed `f`'s history, keep its cap, and for an owner's feed its expiry.
-- A list, as a job's history is (see publish below): consecutive feed seqs, trimmed from the
-- oldest.
local function write_feed(f, records)
  call_in_chunks('RPUSH', f.history, records)
  redis.call('LTRIM', f.history, -L.history_max, -1)
  if f ~= L.feed then
    redis.call('EXPIRE', f.history, L.retention_s)
    redis.call('EXPIRE', f.position, L.retention_s)
  end
end

-- Deferred: a feed's seq and records so far in this call, written once at the flush.
local function deferred_feed(f)
  local pending = DEFER.feeds[f.position]
  if not pending then
    pending = {f = f, seq = tonumber(redis.call('HGET', f.position, 'seq') or '0'), records = {}}
    DEFER.feeds[f.position] = pending
    DEFER.feed_keys[#DEFER.feed_keys + 1] = f.position
  end
  return pending
end

local function feed_append(f, etype, id, json)
  local pending = DEFER and deferred_feed(f)
  local fseq
  if pending then
    fseq = pending.seq + 1
    pending.seq = fseq
  else
    fseq = redis.call('HINCRBY', f.position, 'seq', 1)
  end
  local epoch = EPOCHS[f.position] or redis.call('HGET', f.position, 'epoch')
  if not epoch then
    epoch = string.format('%x', NOW_MS)
    redis.call('HSET', f.position, 'epoch', epoch)
  end
  EPOCHS[f.position] = epoch
  local frecord = fseq .. '\n' .. etype .. '\n' .. id .. '\n' .. epoch .. '\n{"feed_seq":' .. fseq
    .. ',"epoch":"' .. epoch .. '",' .. string.sub(json, 2)
  if pending then
    pending.records[#pending.records + 1] = frecord
  else
    write_feed(f, {frecord})
  end
  redis.call(L.publish, f.channel, frecord)
end

local function flush_writes()
  if not DEFER then return end
  for clock in pairs(DEFER.clocks) do
    redis.call('HSET', clock, 'ms', CLOCKS[clock][1], 'n', CLOCKS[clock][2])
  end
  for field, delta in pairs(DEFER.kind_waiting) do
    if delta ~= 0 and redis.call('HINCRBY', L.kind_waiting, field, delta) <= 0 then
      redis.call('HDEL', L.kind_waiting, field)
    end
  end
  for _, key in ipairs(DEFER.zadd_keys) do call_in_chunks('ZADD', key, DEFER.zadds[key]) end
  for _, queue in ipairs(OWNER_QUEUES_WRITTEN) do redis.call('EXPIRE', queue, L.retention_s) end
  for _, position in ipairs(DEFER.feed_keys) do
    local pending = DEFER.feeds[position]
    redis.call('HSET', position, 'seq', pending.seq)
    write_feed(pending.f, pending.records)
  end
  DEFER = nil
end

-- A job's event keys (as JobStore.event_keys makes them), for a script that reaches a job it was not
-- given by its id: with its owner's feed when it has an owner.
local function job_keys(id, owner)
  local k = {job = L.job_prefix .. id, history = L.history_prefix .. id, channel = L.channel_prefix .. id}
  if owner and owner ~= '' then
    local base = L.owner_feed_prefix .. owner
    k.owner_feed = base
    k.owner_feed_history = base .. L.owner_feed_history_suffix
    k.owner_feed_position = base .. L.owner_feed_position_suffix
  end
  return k
end

-- `ms` since the epoch as jobcast.protocol.isoformat writes it (2026-12-07T10:05:37.123Z), for the
-- events a script makes of its own (a parent's rolled-up progress, its children's cancels).
local function iso_ms(ms)
  local s = math.floor(ms / 1000)
  local days, secs = math.floor(s / 86400), s % 86400
  -- Howard Hinnant's civil_from_days.
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(secs / 3600),
    math.floor(secs % 3600 / 60), secs % 60, ms % 1000)
end

-- What a job's event does to its parent and to its children (tree.lua, which defines it).
local tree_event

-- Publish one event of job `e.id` (keys `k.job`, `k.history`, `k.channel`, and in owner mode the
-- owner's feed `k.owner_feed`, `k.owner_feed_history`, `k.owner_feed_position`): assign its seq,
-- append it to history, update the record and the state indexes, PUBLISH it. `e.fence` guards
-- attempts: for `started` it is the attempt the caller saw (compare-and-set: a second worker
-- starting the same attempt is refused); for other events it is the caller's attempt (an older
-- attempt is refused); -1 means no fence. `e.from_state`, when given, must be the job's state
-- (a job two processes find orphaned is announced once). `e.fields`: the record's field/value
-- pairs to set. `e.known`: the record's fields as the HMGET below would read them, for a caller
-- that has not written the record yet (create: the record goes in with this event's HSET).
-- `e.new_job`: the job is created by this call (its channel is not published to).
-- Returns the seq, 0 when refused (job ended, or stale attempt), -1 when the job does not exist.
local function publish(k, e)
  -- Everything of the record this reads, in one command, and everything it writes in another.
  local f = e.known
    or redis.call('HMGET', k.job, 'state', 'attempt', 'first_started_at', 'owner', 'kind', 'priority', 'seq',
      'client', 'outputs', 'parent', 'kids')
  local state = f[1]
  if not state then return -1 end
  if is_terminal(state) then return 0 end
  if e.from_state and state ~= e.from_state then return 0 end
  local seq = tonumber(f[7] or '0') + 1
  local writes = {'state', e.state, 'seq', seq}
  if e.fence >= 0 then
    local current = tonumber(f[2] or '0')
    if e.type == L.event.started then
      if current ~= e.fence then return 0 end
      writes[#writes + 1], writes[#writes + 2] = 'attempt', e.fence + 1
    elseif e.fence < current then
      return 0
    end
  end
  local job = {owner = f[4], kind = f[5], priority = f[6], client = f[8]}
  local fields = e.fields or {}
  for i = 1, #fields, 2 do
    writes[#writes + 1], writes[#writes + 2] = fields[i], fields[i + 1]
    -- Elapsed time counts from the first attempt's start, whatever attempt runs now.
    if fields[i] == 'started_at' and e.type == L.event.started and not f[3] then
      writes[#writes + 1], writes[#writes + 2] = 'first_started_at', fields[i + 1]
    end
  end
  local json = e.head .. seq .. e.tail
  local record = seq .. '\n' .. e.type .. '\n' .. json
  -- A list: its records are consecutive seqs, so a seq's place is arithmetic, and a list's
  -- listpack nodes cost ~1.05x the records' bytes at any length (a sorted set of such records
  -- is a skiplist: ~1.6x).
  redis.call('RPUSH', k.history, record)
  -- Only a history longer than its cap has anything to trim (compaction only ever shortens it).
  if seq > L.history_max then
    redis.call('LTRIM', k.history, -L.history_max, -1)
  end
  redis.call('HSET', k.job, unpack(writes))
  if e.state ~= state then
    redis.call('ZREM', L.state_index[state], e.id)
    zadd(L.state_index[e.state], index_score(), e.id)
    if is_waiting(state) ~= is_waiting(e.state) then
      count_waiting(job, is_waiting(e.state) and 1 or -1)
    end
  end
  -- Nobody can be subscribed to the channel of a job this call creates: its id is new, and nobody
  -- has it before the call answers.
  if not e.new_job then redis.call(L.publish, k.channel, record) end
  -- The dashboard feeds: every job's events (for admins), and the owner's jobs' (for the owner).
  -- State changes get a feed seq and a place in the feed's history (for resuming); progress is
  -- live only (it is superseded anyway).
  local feeds = {L.feed}
  if k.owner_feed then
    feeds[2] = {channel = k.owner_feed, history = k.owner_feed_history, position = k.owner_feed_position}
  end
  if e.type == L.event.output then
    -- Output is for the job's own watchers: the feeds carry job events only. Its text is kept
    -- (output.lua), so its events need no refresh of the record's expiry either.
    return seq
  end
  if e.type == L.event.progress then
    local live = '0\n' .. e.type .. '\n' .. e.id .. '\n' .. json
    for _, f in ipairs(feeds) do redis.call(L.publish, f.channel, live) end
    if f[10] then tree_event(e, state, f) end
  else
    for _, f in ipairs(feeds) do feed_append(f, e.type, e.id, json) end
    -- Kept for the retention from the last state change. A start needs no refresh: the
    -- submission set the expiry, and the job's end sets it again.
    if e.type ~= L.event.started then
      redis.call('EXPIRE', k.job, L.retention_s)
      redis.call('EXPIRE', k.history, L.retention_s)
    end
    if is_terminal(e.state) then
      -- The job's output is kept as long as the job.
      for name in string.gmatch(f[9] or '', '%S+') do
        redis.call('EXPIRE', L.output_prefix .. e.id .. ':' .. name, L.retention_s)
      end
      redis.call('ZADD', L.compact_due, NOW_MS + L.history_grace_ms, e.id)
      count_finished(job.kind, e.state)
    end
    if f[10] or f[11] then tree_event(e, state, f) end
  end
  return seq
end


-- End the lease of the worker that publishes terminal event `e` (release: {owner, priority}) as
-- finish.lua would, provided release.owner still holds it: whether it ended.
-- release.leave names the running sets a limit counts the job in ({kind, owner}, claim.lua): the
-- job leaves them too, so that they hold only running jobs (hand_off.lua does the same itself).
local function end_lease(e, release)
  if not (release and is_terminal(e.state)) then return false end
  if redis.call('HGET', L.leases, e.id) ~= release.owner then return false end
  redis.call('HDEL', L.leases, e.id)
  redis.call('ZREM', L.running[release.priority], e.id)
  local leave = release.leave
  if leave and leave.kind then redis.call('SREM', L.kind_running_prefix .. leave.kind, e.id) end
  if leave and leave.owner then redis.call('SREM', L.owner_running_prefix .. leave.owner, e.id) end
  return true
end
