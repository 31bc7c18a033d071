-- Each owner's stored bytes (uploads and result files) against the disk quota.
-- A job's charges are kept by job, so that deleting its files gives back exactly what it took.
-- A: job, owner, bytes, refund. With refund, give back everything the job was charged (owner and
-- bytes are not needed); otherwise charge `bytes` to `owner` for the job, unless that would take
-- the owner past L.disk_quota (0: no quota).
-- Answers ok (used: the owner's bytes after the call) or over_quota (used, before the call).
if A.refund then
  local raw = redis.call('HGET', L.disk_charges, A.job)
  if not raw then return answer({status = S.ok, used = 0}) end
  local charge = cjson.decode(raw)
  redis.call('HDEL', L.disk_charges, A.job)
  local used = redis.call('HINCRBY', L.disk_usage, charge.owner, -charge.bytes)
  if used <= 0 then
    redis.call('HDEL', L.disk_usage, charge.owner)
    used = 0
  end
  return answer({status = S.ok, used = used})
end
local used = tonumber(redis.call('HGET', L.disk_usage, A.owner) or '0')
if L.disk_quota > 0 and used + A.bytes > L.disk_quota then
  return answer({status = S.over_quota, used = used})
end
local raw = redis.call('HGET', L.disk_charges, A.job)
local charged = 0
if raw then charged = cjson.decode(raw).bytes end
redis.call('HSET', L.disk_charges, A.job, cjson.encode({owner = A.owner, bytes = charged + A.bytes}))
return answer({status = S.ok, used = redis.call('HINCRBY', L.disk_usage, A.owner, A.bytes)})
