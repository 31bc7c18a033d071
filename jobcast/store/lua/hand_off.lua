-- A job's terminal event that ends its worker's lease (as publish.lua) and hands the slot it frees
-- to a job the job's end lets start: one its kind's limit, or its owner's, holds back. Without
-- it, a binding limit costs a claim of its own for nearly every job: the worker whose job ended
-- is the one with room, and it would claim at once. K and A as publish.lua; A.claim: the claim's
-- arguments (claim.lua; want is the slots to fill, usually 1), and ended: {kind, owner} of the
-- job that ends.
-- Answers as publish.lua, and with jobs and held (as dispatch.lua's) when it released the lease.
local seq = publish(K, A)
if seq == 0 then return answer({status = S.refused}) end
if seq < 0 then return answer({status = S.not_found}) end
local released = end_lease(A, A.release)
local held
if released and LIM and C.want > 0 then
  -- The job's kind and owner, as its worker read them at the claim (C.ended).
  local kind, owner = C.ended.kind, C.ended.owner
  local tokens = {}
  -- The held jobs its end may let start: its kind's, its owner's. (The job left the running sets
  -- the limits count with its lease: A.release.leave, events.lua.)
  local limit = kind and kind_limit(kind)
  local kind_held = limit and limit.max_running and redis.call('SISMEMBER', L.held, 'kind=' .. kind) == 1
  if kind_held then tokens[#tokens + 1] = 'kind=' .. kind end
  if owner and LIM.owner > 0 and redis.call('SISMEMBER', L.held, 'owner=' .. owner) == 1 then
    tokens[#tokens + 1] = 'owner=' .. owner
  end
  release_held(tokens)
  if #jobs > 0 then redis.call('INCRBY', L.claimed, #jobs) end
  -- Past its share of the kind's limit, the worker leaves the slot to the others: wake them.
  if #jobs == 0 and kind_held and C.shares and (C.shares[kind] or 1) <= 0 then
    redis.call(L.publish, L.wake_channel, '')
  end
  held = redis.call('EXISTS', L.held) == 1
end
return answer({status = S.published, seq = seq, released = released, jobs = jobs, held = held})
