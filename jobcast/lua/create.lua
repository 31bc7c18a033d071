-- Submit a job: idempotency check, waiting-jobs limit, record, indexes, `queued` event and arq's
-- job and queue entry, all at once, so a job is either fully submitted or not at all.
-- ARGV[5..]: id, kind, priority, ready ms, arq queue, arq job payload, idempotency key ('' for
--   none), request fingerprint, idempotency ttl (s), waiting limit (0: none), head, tail, the id
--   of the job this one retries ('' for none), then the record's field/value pairs.
-- Returns {1, seq} created; {2, id, fingerprint} the key was used before; {3, waiting} over limit;
-- for a retry: {4, id} already retried as id; {5} original gone; {6, state} original not retryable.
local id, kind, priority, ready_ms = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local queue, payload = ARGV[9], ARGV[10]
local idem_key, fingerprint, idem_ttl = ARGV[11], ARGV[12], tonumber(ARGV[13])
local limit = tonumber(ARGV[14])
local retry_of = ARGV[17]

if idem_key ~= '' then
  local seen = redis.call('GET', idem_key)
  if seen then
    local old_id, old_fingerprint = string.match(seen, '^([^\n]*)\n(.*)$')
    -- A key whose job has expired is free again.
    if redis.call('EXISTS', P .. ':job:' .. old_id) == 1 then return {2, old_id, old_fingerprint} end
  end
end

if retry_of ~= '' then
  local old = redis.call('HMGET', P .. ':job:' .. retry_of, 'state', 'retried_by')
  if not old[1] then return {5} end
  if old[2] and old[2] ~= '' then return {4, old[2]} end
  if old[1] ~= 'failed' and old[1] ~= 'cancelled' then return {6, old[1]} end
end

if limit > 0 then
  local waiting = 0
  for _, p in ipairs({'high', 'default', 'low'}) do
    waiting = waiting + redis.call('ZCARD', P .. ':waiting:' .. p)
  end
  if waiting >= limit then return {3, waiting} end
end

local jk = P .. ':job:' .. id
redis.call('HSET', jk, 'state', 'queued', 'seq', 0, 'attempt', 0, unpack(rest(18)))
local score = index_score()
redis.call('ZADD', P .. ':index:all', score, id)
redis.call('ZADD', P .. ':index:ids', 0, id)
redis.call('ZADD', P .. ':index:kind:' .. kind, score, id)
redis.call('ZADD', P .. ':index:state:queued', score, id)
redis.call('ZADD', P .. ':waiting:' .. priority, ready_ms, id)
-- Jobs submitted in the same millisecond leave in the order they came (see clock_score). Delayed
-- jobs, due at scattered times, take a plain counter as their fraction.
local dispatch_score
if ready_ms <= NOW_MS then
  dispatch_score = clock_score(P .. ':dispatch:clock', ready_ms)
else
  dispatch_score = string.format('%d.%03d', ready_ms, redis.call('INCR', P .. ':dispatch:order') % 1000)
end
redis.call('ZADD', P .. ':dispatch:' .. priority, dispatch_score, id)
redis.call('ZADD', queue, ready_ms, id)
-- Idle workers poll at once (a delayed job tells them when to poll next).
redis.call('PUBLISH', P .. ':wake', '')
redis.call('SET', 'arq:job:' .. id, payload, 'PX', math.max(ready_ms - NOW_MS, 0) + RETENTION_S * 1000)
local seq = publish(id, 'queued', 'queued', ARGV[15], ARGV[16], -1, ready_ms, {})
if retry_of ~= '' then
  redis.call('HSET', P .. ':job:' .. retry_of, 'retried_by', id)
end
if idem_key ~= '' then
  redis.call('SET', idem_key, id .. '\n' .. fingerprint, 'EX', idem_ttl)
end

-- Indexes forget jobs older than the retention (their records have expired by then).
local horizon = '(' .. (NOW_MS - RETENTION_S * 1000)
local expired = redis.call('ZRANGEBYSCORE', P .. ':index:all', '-inf', horizon)
for i = 1, #expired, 1000 do  -- unpack takes a bounded number of values at a time
  redis.call('ZREM', P .. ':index:ids', unpack(expired, i, math.min(i + 999, #expired)))
end
redis.call('ZREMRANGEBYSCORE', P .. ':index:all', '-inf', horizon)
redis.call('ZREMRANGEBYSCORE', P .. ':index:kind:' .. kind, '-inf', horizon)
for _, s in ipairs({'succeeded', 'failed', 'cancelled'}) do
  redis.call('ZREMRANGEBYSCORE', P .. ':index:state:' .. s, '-inf', horizon)
end
return {1, seq}
