-- Publish the rolled-up bars that are due (tree.lua's schedule_rollup put them off to keep a
-- parent within the progress rate). A: max (parents a call publishes).
-- Answers ok with published and next_ms (when the next is due; -1: none).
local due = redis.call('ZRANGEBYSCORE', L.rollup_due, '-inf', NOW_MS, 'LIMIT', 0, A.max)
for _, id in ipairs(due) do
  redis.call('ZREM', L.rollup_due, id)
  local p = read_parent(L.job_prefix .. id)
  if p.state and not is_terminal(p.state) then publish_rollup(id, p) end
end
local next_due = redis.call('ZRANGE', L.rollup_due, 0, 0, 'WITHSCORES')[2]
return answer({status = S.ok, published = #due, next_ms = next_due and math.floor(tonumber(next_due)) or -1})
