-- Shared by every jobcast script. ARGV[1..4] are the same for all of them:
--   prefix, history max events, retention (s), now (ms).
-- Keys are built from the prefix, so jobcast needs one Redis server (or a primary with replicas),
-- not a cluster.
local P = ARGV[1]
local HISTORY_MAX = tonumber(ARGV[2])
local RETENTION_S = tonumber(ARGV[3])
local NOW_MS = tonumber(ARGV[4])

local function is_terminal(state)
  return state == 'succeeded' or state == 'failed' or state == 'cancelled'
end

-- A score that orders entries by time and, within one millisecond, by arrival: `ms` with a
-- counter in the fraction, never behind the last score this clock gave (web processes' clocks may
-- differ by a little; an entry may then be scored that little later than asked). Redis orders
-- equal scores by member, here a random id, so plain ms would shuffle entries made together.
-- Formatted here: Lua would print the number with 14 significant digits, losing the fraction.
local function clock_score(clock, at_ms)
  local last = redis.call('HMGET', clock, 'ms', 'n')
  local ms, n = tonumber(last[1]) or 0, (tonumber(last[2]) or 0) + 1
  if at_ms > ms then
    ms, n = at_ms, 0
  elseif n > 999 then
    ms, n = ms + 1, 0
  end
  redis.call('HSET', clock, 'ms', ms, 'n', n)
  return string.format('%d.%03d', ms, n)
end

-- The score of a job in the indexes (`GET /api/jobs` lists by it, newest first).
local function index_score()
  return clock_score(P .. ':index:clock', NOW_MS)
end

-- The next feed seq and the feed's epoch. Both live in one hash, so they are lost together (a
-- Redis that restarts empty, a FLUSHALL): the new epoch then tells a client that its feed id
-- belongs to a history that no longer exists. Readers create the epoch the same way (HSETNX).
local function feed_next()
  local position = P .. ':feed:position'
  local fseq = redis.call('HINCRBY', position, 'seq', 1)
  local epoch = redis.call('HGET', position, 'epoch')
  if not epoch then
    epoch = string.format('%x', NOW_MS)
    redis.call('HSET', position, 'epoch', epoch)
  end
  return fseq, epoch
end

-- Publish one event of job `id`: assign its seq, append it to history, update the snapshot and
-- the indexes, PUBLISH it. `fence` guards attempts: for `started` it is the attempt the caller
-- saw (compare-and-set: a second worker starting the same attempt is refused); for other events
-- it is the caller's attempt (an older attempt is refused); -1 means no fence.
-- Returns the seq, 0 when refused (job ended, or stale attempt), -1 when the job does not exist.
local function publish(id, etype, newstate, head, tail, fence, ready_ms, fields)
  local jk = P .. ':job:' .. id
  local state = redis.call('HGET', jk, 'state')
  if not state then return -1 end
  if is_terminal(state) then return 0 end
  if fence >= 0 then
    local current = tonumber(redis.call('HGET', jk, 'attempt') or '0')
    if etype == 'started' then
      if current ~= fence then return 0 end
      redis.call('HSET', jk, 'attempt', fence + 1)
    elseif fence < current then
      return 0
    end
  end
  local seq = redis.call('HINCRBY', jk, 'seq', 1)
  local record = seq .. '\n' .. etype .. '\n' .. head .. seq .. tail
  local hk = P .. ':history:' .. id
  redis.call('ZADD', hk, seq, record)
  redis.call('ZREMRANGEBYRANK', hk, 0, -(HISTORY_MAX + 1))
  if #fields > 0 then
    redis.call('HSET', jk, 'state', newstate, unpack(fields))
  else
    redis.call('HSET', jk, 'state', newstate)
  end
  if newstate ~= state then
    redis.call('ZREM', P .. ':index:state:' .. state, id)
    redis.call('ZADD', P .. ':index:state:' .. newstate, index_score(), id)
    local waiting = P .. ':waiting:' .. (redis.call('HGET', jk, 'priority') or 'default')
    if newstate == 'queued' or newstate == 'retrying' then
      redis.call('ZADD', waiting, ready_ms, id)
    else
      redis.call('ZREM', waiting, id)
    end
  end
  redis.call('PUBLISH', P .. ':events:' .. id, record)
  -- The dashboard feed: every job's events on one channel. State changes get a feed seq and a
  -- place in the feed's history (for resuming); progress is live only (it is superseded anyway).
  local json = head .. seq .. tail
  if etype == 'progress' then
    redis.call('PUBLISH', P .. ':feed', '0\nprogress\n' .. id .. '\n' .. json)
  else
    local fseq, epoch = feed_next()
    local frecord = fseq .. '\n' .. etype .. '\n' .. id .. '\n' .. epoch .. '\n{"feed_seq":' .. fseq
      .. ',"epoch":"' .. epoch .. '",' .. string.sub(json, 2)
    redis.call('ZADD', P .. ':feed:history', fseq, frecord)
    redis.call('ZREMRANGEBYRANK', P .. ':feed:history', 0, -(HISTORY_MAX + 1))
    redis.call('PUBLISH', P .. ':feed', frecord)
  end
  if etype ~= 'progress' then
    redis.call('EXPIRE', jk, RETENTION_S)
    redis.call('EXPIRE', hk, RETENTION_S)
  end
  return seq
end

-- ARGV[first..] as a table (snapshot field/value pairs).
local function rest(first)
  local out = {}
  for i = first, #ARGV do out[#out + 1] = ARGV[i] end
  return out
end
