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
