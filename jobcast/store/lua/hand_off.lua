-- A job's terminal event that ends its worker's lease (as publish.lua) and hands the slot it frees
-- to a job the job's end lets start: one its kind's limit, or its owner's, holds back. Without
-- it, a binding limit costs a claim of its own for nearly every job: the worker whose job ended
-- is the one with room, and it would claim at once. K and A as publish.lua; A.claim: the claim's
-- arguments (claim.lua; want is the slots to fill, usually 1).
-- Answers as publish.lua, and with jobs (as dispatch.lua's) when it released the lease.
local seq = publish(K, A)
if seq == 0 then return answer({status = S.refused}) end
if seq < 0 then return answer({status = S.not_found}) end
local released = end_lease(A, A.release)
if released and LIM and C.want > 0 then
  local job = redis.call('HMGET', K.job, 'kind', 'owner')
  -- Out of the running sets the limits count (claim.lua), so that counting them needs no lookups.
  if job[1] and kind_limit(job[1]) then redis.call('SREM', L.kind_running_prefix .. job[1], A.id) end
  if job[2] and LIM.owner > 0 then redis.call('SREM', L.owner_running_prefix .. job[2], A.id) end
  local tokens = {}
  for _, token in ipairs({job[1] and 'kind=' .. job[1], job[2] and 'owner=' .. job[2]}) do
    if token and redis.call('SISMEMBER', L.held, token) == 1 then tokens[#tokens + 1] = token end
  end
  release_held(tokens)
  if #jobs > 0 then redis.call('INCRBY', L.claimed, #jobs) end
end
return answer({status = S.published, seq = seq, released = released, jobs = jobs})
