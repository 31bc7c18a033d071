-- Shared by every jobcast script (prepended to each; jobcast/store/scripts.py says how they are called).
-- L: the deployment's layout (key names that are not per call, priorities in dispatch order,
--    states, event types, limits, answer statuses); A: the call's named arguments; K: the call's
--    KEYS by name. No script holds a key name: Python owns the Redis layout. (Where a script
--    must reach a key it cannot be given, a job's by its id, it joins the id to a prefix that
--    the layout gives.)
-- L is written into the source as a table literal when a process registers the script
-- (jobcast/store/scripts.py `lua_table`): building it costs Redis about a microsecond a call, where
-- decoding the same JSON from ARGV cost about seven. Unfilled, the script does not compile.
local L = __LAYOUT__
local A = cjson.decode(ARGV[1])
local K = {}
for i, name in ipairs(A.keys or {}) do K[name] = KEYS[i] end
local S = L.status
local NOW_MS = A.now_ms

local function answer(t)
  return cjson.encode(t)
end

local function is_terminal(state)
  return L.terminal[state] == true
end

-- Queued or between attempts: what the per-owner waiting count counts.
local function is_waiting(state)
  return state == L.state.queued or state == L.state.retrying
end

-- A waiting job's place: its priority's queue and, with fair dispatch between owners (L.fair),
-- its owner's queue for that priority, with the owner in the priority's ring (see
-- `Keys.owner_queue`). An owner new to the ring takes the lowest turn in it: it is next, but
-- gets no credit for the time it had nothing waiting. `add(key, score, member)` writes the
-- sorted-set entries (create.lua defers them); by default, at once.
-- An owner's queue expires with the retention, as its jobs do (an anonymous owner who never comes
-- back leaves nothing); create.lua, which defers its writes, sets it once they are written
-- (OWNER_QUEUES_WRITTEN).
local RING_SEEN = {}
local OWNER_QUEUES_WRITTEN = {}
local function zadd_now(key, score, member) redis.call('ZADD', key, score, member) end
local function enqueue(p, score, id, owner, add)
  add = add or zadd_now
  add(L.queues[p], score, id)
  if not L.fair then return end
  owner = owner or ''
  local queue = L.owner_queue_prefix[p] .. owner
  add(queue, score, id)
  local ring = L.owner_rings[p]
  if not RING_SEEN[ring .. '\n' .. owner] then
    RING_SEEN[ring .. '\n' .. owner] = true
    local lowest = redis.call('ZRANGE', ring, 0, 0, 'WITHSCORES')
    redis.call('ZADD', ring, 'NX', lowest[2] or 0, owner)
    -- 0: not written yet (deferred).
    if redis.call('EXPIRE', queue, L.retention_s) == 0 then
      OWNER_QUEUES_WRITTEN[#OWNER_QUEUES_WRITTEN + 1] = queue
    end
  end
end

-- Take a job out of its queues (the owner's ring entry goes when a claim finds its queue empty).
local function dequeue(p, id, owner)
  redis.call('ZREM', L.queues[p], id)
  if L.fair then redis.call('ZREM', L.owner_queue_prefix[p] .. (owner or ''), id) end
end
