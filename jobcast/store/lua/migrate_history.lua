-- Move a job's history from the sorted set earlier versions kept (`K.old`) to today's list
-- (`K.history`), with its expiry. Should the list have been started meanwhile (a job that ran
-- on during a rolling upgrade), the old records are dropped instead: its list then starts after
-- them, and a resume from before it gets a snapshot, as for a trimmed history.
-- K: old, history. Answers ok (moved: records moved).
if redis.call('TYPE', K.old)['ok'] ~= 'zset' then return answer({status = S.ok, moved = 0}) end
local moved = 0
if redis.call('EXISTS', K.history) == 0 then
  local ttl = redis.call('PTTL', K.old)
  while true do
    local records = redis.call('ZRANGE', K.old, moved, moved + 999)
    if #records == 0 then break end
    redis.call('RPUSH', K.history, unpack(records))
    moved = moved + #records
  end
  if ttl > 0 then redis.call('PEXPIRE', K.history, ttl) end
end
redis.call('DEL', K.old)
return answer({status = S.ok, moved = moved})
