-- A page of a history (a job's, or a feed's), read at one moment: the records after A.after (at
-- most A.limit; 0: all), with the head seq (the `seq` of the job's record or of the feed's
-- position), a job's compacted history (once it has one) and the oldest seq the list still
-- holds. A history's records are consecutive seqs, each starting with its own (publish appends
-- each event; only the oldest are trimmed), so the page's place in the list is arithmetic.
-- K: head (the job's record, or the feed's position), history. A: after, limit.
-- Answers a Redis array rather than JSON (the records are kilobytes of JSON each, which encoding
-- would escape): {head seq or false, compacted or false, oldest seq or false, record...}.
local head = redis.call('HMGET', K.head, 'seq', 'compacted')
local out = {head[1], head[2], false}
local oldest = redis.call('LINDEX', K.history, 0)
if oldest then
  local first = tonumber(string.match(oldest, '^%d+'))
  out[3] = first
  local start = math.max(A.after + 1 - first, 0)
  local stop = -1
  if A.limit > 0 then stop = start + A.limit - 1 end
  local records = redis.call('LRANGE', K.history, start, stop)
  for i = 1, #records do out[i + 3] = records[i] end
end
return out
