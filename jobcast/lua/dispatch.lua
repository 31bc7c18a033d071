-- The jobs a worker should try to start next: due jobs of the highest priority first, oldest
-- first within a priority. The per-priority dispatch sets mirror arq's queue (which is ordered by
-- time only); entries that left arq's queue are dropped, entries arq deferred (a retry's
-- backoff) are moved to their new time, and running jobs (arq's in-progress key) are skipped, so
-- a job whose worker died is picked up again once its lease lapses.
-- ARGV[5..]: arq queue, how many ids at most, how many entries to examine at most.
-- Returns {ids, when the next job not yet due becomes due (ms; -1: none)}.
local queue, want, budget = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
-- Scores are ready_ms plus a fraction that orders ties (see create.lua): due means below now + 1.
local due_below = '(' .. (NOW_MS + 1)
local out = {}
for _, p in ipairs({'high', 'default', 'low'}) do
  local dk = P .. ':dispatch:' .. p
  local offset = 0
  while #out < want and budget > 0 do
    local ids = redis.call('ZRANGEBYSCORE', dk, '-inf', due_below, 'LIMIT', offset, math.min(budget, 100))
    if #ids == 0 then break end
    offset = offset + #ids
    budget = budget - #ids
    for _, id in ipairs(ids) do
      local score = redis.call('ZSCORE', queue, id)
      if not score then
        redis.call('ZREM', dk, id)
        offset = offset - 1
      elseif tonumber(score) > NOW_MS then
        redis.call('ZADD', dk, score, id)
        offset = offset - 1
      elseif redis.call('EXISTS', 'arq:in-progress:' .. id) == 0 then
        out[#out + 1] = id
        if #out >= want then break end
      end
    end
  end
end
local next_ms = -1
for _, p in ipairs({'high', 'default', 'low'}) do
  local first = redis.call('ZRANGEBYSCORE', P .. ':dispatch:' .. p, NOW_MS + 1, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  local at = first[2] and math.floor(tonumber(first[2]))
  if at and (next_ms < 0 or at < next_ms) then next_ms = at end
end
return {out, next_ms}
