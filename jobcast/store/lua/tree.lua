-- Trees of jobs: a parent and the children it made or was submitted with (prepended, after
-- events.lua, to the scripts that publish; `tree_event` is what every published event of a parent
-- or a child runs). All of it is O(1) per child event but for cancelling a tree, which visits the
-- unfinished children of the parents that end.
-- A parent's record keeps: kids (its children), kids_pending (not ended), kids_running,
--   kids_succeeded, kids_failed, kids_cancelled; its rolled-up bar's sums: roll_c and roll_t (the
--   current and total of the children that reported a total), roll_n (how many did), roll_d (how
--   many of the others ended); roll_ppm (the fraction last published, in millionths: the bar never
--   goes back) and rollup_at (when it was published, ms).
-- A child's record keeps: parent, ff ('1': its failure fails the parent at once, and the parent's
--   unfinished children are cancelled), rolled ("current total": what it last added to roll_c and
--   roll_t).

local ROLL_FIELDS = {
  'state', 'attempt', 'owner', 'kids', 'kids_pending', 'kids_running', 'kids_succeeded', 'kids_failed',
  'kids_cancelled', 'roll_c', 'roll_t', 'roll_n', 'roll_d', 'roll_ppm', 'rollup_at',
}

local function read_parent(pk)
  local values = redis.call('HMGET', pk, unpack(ROLL_FIELDS))
  local p = {state = values[1] or nil, attempt = values[2] or '0', owner = values[3] or nil}
  for i = 4, #ROLL_FIELDS do p[ROLL_FIELDS[i]] = tonumber(values[i] or '0') end
  return p
end

-- A parent's children by state, as its events and its snapshot carry them.
local function child_counts(p)
  local ended = p.kids_succeeded + p.kids_failed + p.kids_cancelled
  return {
    total = p.kids, waiting = math.max(0, p.kids - ended - p.kids_running), running = p.kids_running,
    succeeded = p.kids_succeeded, failed = p.kids_failed, cancelled = p.kids_cancelled,
  }
end

-- The rolled-up fraction in millionths: children that reported a total weigh their total, the
-- others the mean of those totals (1 each while none did). Never below what was published: a
-- large total reported late slows the bar instead of pulling it back.
local function rolled_ppm(p)
  if p.kids <= 0 then return p.roll_ppm end
  local w = p.roll_n > 0 and p.roll_t / p.roll_n or 1
  local total = p.roll_t + (p.kids - p.roll_n) * w
  local ppm = 0
  if total > 0 then ppm = math.floor((p.roll_c + p.roll_d * w) / total * 1000000) end
  return math.max(p.roll_ppm, math.min(ppm, 1000000))
end

-- Publish parent `id`'s rolled-up bar as its own progress event, with its children's counts.
local function publish_rollup(id, p)
  local ppm = rolled_ppm(p)
  local counts = child_counts(p)
  local ended = counts.succeeded + counts.failed + counts.cancelled
  local percent = math.floor(ppm / 100) / 100
  local progress = cjson.encode({
    current = percent, total = 100, percent = percent,
    message = ended .. ' of ' .. p.kids .. ' children ended',
  })
  local ts = iso_ms(NOW_MS)
  p.roll_ppm, p.rollup_at = ppm, NOW_MS
  publish(job_keys(id, p.owner), {
    id = id, type = L.event.progress, state = p.state, fence = -1,
    head = '{"job_id":' .. cjson.encode(id) .. ',"seq":',
    tail = ',"type":"progress","state":"' .. p.state .. '","ts":"' .. ts .. '","attempt":' .. p.attempt
      .. ',"progress":' .. progress .. ',"result":null,"error":null,"children":' .. cjson.encode(counts) .. '}',
    fields = {'progress', progress, 'roll_ppm', ppm, 'rollup_at', NOW_MS},
    -- A parent that is a child itself rolls up into its own parent.
    cur = percent, tot = 100,
  })
  redis.call('ZREM', L.rollup_due, id)
end

-- Publish the bar now if the progress rate allows, or once it does (rollup.lua publishes what is
-- due): however many children change, a parent sends at most JOBCAST_PROGRESS_RATE_HZ a second.
local function schedule_rollup(id, p)
  if NOW_MS - p.rollup_at >= L.rollup_ms then
    publish_rollup(id, p)
  else
    redis.call('ZADD', L.rollup_due, 'NX', p.rollup_at + L.rollup_ms, id)
  end
end

-- An event of a job's own making (a cancel, a failure, a requeue), as event_template writes it.
local function own_event(id, etype, state, attempt, error, progress)
  local ts = iso_ms(NOW_MS)
  local e = {
    id = id, type = etype, state = state, fence = -1,
    head = '{"job_id":' .. cjson.encode(id) .. ',"seq":',
    tail = ',"type":"' .. etype .. '","state":"' .. state .. '","ts":"' .. ts .. '","attempt":' .. attempt
      .. ',"progress":' .. (progress or 'null') .. ',"result":null,"error":' .. (error or 'null') .. '}',
    fields = {},
  }
  if is_terminal(state) then
    e.fields = {'finished_at', ts, 'result', 'null', 'error', error or 'null', 'next_attempt_at', ''}
  end
  return e
end

-- Cancel job `id` (keys `k`): one no worker holds ends now with event `e` and leaves its queue; a
-- running one is flagged and its worker told. Answers as cancel.lua.
local function cancel_job(k, id, e)
  local job = redis.call('HMGET', k.job, 'state', 'priority', 'kind', 'owner')
  local state = job[1]
  if not state then return {status = S.not_found} end
  if is_terminal(state) then return {status = S.ended, state = state} end
  redis.call('HSET', k.job, 'cancel_requested', NOW_MS)
  if state == L.state.running then
    redis.call(L.publish, L.cancel_channel, id)
    return {status = S.cancel_requested}
  end
  e.type, e.state, e.fence = L.event.cancelled, L.state.cancelled, -1
  local seq = publish(k, e)
  -- In its queue, no worker holds it: nothing will run it now. (Between attempts a worker may
  -- still be finishing the last one; it finds the job ended when it puts it back.)
  local priority, kind, owner = job[2] or nil, job[3] or nil, job[4] or nil
  if priority then dequeue(priority, id, owner) end
  -- Or parked, its kind paused; or held back by a limit.
  if kind then
    redis.call('ZREM', L.parked_prefix .. kind, id)
    redis.call('ZREM', L.kind_held_prefix .. kind .. L.kind_held_owner_infix .. (owner or ''), id)
  end
  if owner then redis.call('ZREM', L.owner_held_prefix .. owner, id) end
  return {status = S.cancelled, seq = seq}
end

-- A parent ended with children unfinished: cancel them (theirs in turn, through their own end).
local CANCELLED_WITH_PARENT = cjson.encode({type = 'Cancelled', message = 'cancelled with its parent'})
local function end_children(id)
  if tonumber(redis.call('HGET', L.job_prefix .. id, 'kids_pending') or '0') <= 0 then return end
  for _, child in ipairs(redis.call('LRANGE', L.children_prefix .. id, 0, -1)) do
    local c = redis.call('HMGET', L.job_prefix .. child, 'state', 'attempt', 'owner')
    if c[1] and not is_terminal(c[1]) then
      cancel_job(job_keys(child, c[3] or nil), child,
        own_event(child, L.event.cancelled, L.state.cancelled, c[2] or '0', CANCELLED_WITH_PARENT))
    end
  end
end

-- A parent whose children have all ended goes back to its queue, its continuation's attempts
-- counted from here.
local function continue_parent(id, p)
  local pk = L.job_prefix .. id
  local job = redis.call('HMGET', pk, 'priority', 'progress')
  local e = own_event(id, L.event.queued, L.state.queued, p.attempt, nil, job[2] or nil)
  e.fields = {'attempts_before', p.attempt}
  publish(job_keys(id, p.owner), e)
  enqueue(job[1], clock_score(L.queue_clock, NOW_MS), id, p.owner)
  redis.call(L.publish, L.wake_channel, '')
end

-- A child that fails with the fail-fast policy fails its parent at once (the parent's end then
-- cancels its other children); a parent still running its first part is told to stop.
local function fail_parent(id, p, why)
  local error = cjson.encode({type = 'ChildFailed', message = why})
  publish(job_keys(id, p.owner), own_event(id, L.event.failed, L.state.failed, p.attempt, error))
  if p.state == L.state.running then
    redis.call(L.publish, L.cancel_channel, id)
  elseif is_waiting(p.state) then
    -- Between attempts of its first part: out of its queue, as a cancelled job leaves it.
    dequeue(redis.call('HGET', L.job_prefix .. id, 'priority'), id, p.owner)
  end
end

-- What child event `e` (the child's record fields `f`, read by publish) does to its parent.
local function on_child(parent, e, old, f)
  local pk = L.job_prefix .. parent
  local p = read_parent(pk)
  if not p.state or is_terminal(p.state) then return end
  local ck = L.job_prefix .. e.id
  if e.type == L.event.progress then
    local total = tonumber(e.tot)
    if not total or total <= 0 then return end  -- counted by its end alone
    local current = math.max(0, math.min(tonumber(e.cur) or 0, total))
    local rolled = redis.call('HGET', ck, 'rolled')
    if rolled then
      local c0, t0 = string.match(rolled, '(%S+) (%S+)')
      p.roll_c, p.roll_t = p.roll_c - tonumber(c0) + current, p.roll_t - tonumber(t0) + total
    else
      p.roll_n, p.roll_c, p.roll_t = p.roll_n + 1, p.roll_c + current, p.roll_t + total
    end
    redis.call('HSET', ck, 'rolled', current .. ' ' .. total)
    redis.call('HSET', pk, 'roll_c', p.roll_c, 'roll_t', p.roll_t, 'roll_n', p.roll_n)
    schedule_rollup(parent, p)
    return
  end
  if e.state == old then return end
  p.kids_running = p.kids_running + (e.state == L.state.running and 1 or 0) - (old == L.state.running and 1 or 0)
  if not is_terminal(e.state) then
    redis.call('HSET', pk, 'kids_running', p.kids_running)
    schedule_rollup(parent, p)
    return
  end
  local ended = 'kids_' .. e.state
  p[ended], p.kids_pending = p[ended] + 1, p.kids_pending - 1
  -- Its share of the bar is whole, however it ended.
  local rolled = redis.call('HGET', ck, 'rolled')
  if rolled then
    local c0, t0 = string.match(rolled, '(%S+) (%S+)')
    p.roll_c = p.roll_c - tonumber(c0) + tonumber(t0)
  else
    p.roll_d = p.roll_d + 1
  end
  redis.call('HSET', pk, ended, p[ended], 'kids_pending', p.kids_pending, 'kids_running', p.kids_running,
    'roll_c', p.roll_c, 'roll_d', p.roll_d)
  if e.state == L.state.failed and redis.call('HGET', ck, 'ff') == '1' then
    fail_parent(parent, p, 'child ' .. e.id .. ' (' .. (f[5] or '?') .. ') failed')
    return
  end
  if p.kids_pending > 0 then
    schedule_rollup(parent, p)
    return
  end
  publish_rollup(parent, p)
  if p.state == L.state.waiting_children then continue_parent(parent, p) end
end

tree_event = function(e, old, f)
  if f[10] then on_child(f[10], e, old, f) end
  if f[11] and is_terminal(e.state) then end_children(e.id) end
end
