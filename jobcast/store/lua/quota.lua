-- Each owner's stored bytes (uploads and result files) against the disk quota, and an anonymous
-- owner's client address's against that times the identities an address may share it between.
-- A job's charges are kept by job, so that deleting its files gives back exactly what it took.
-- A: job, owner, bytes, refund, and client (`@<address>`, for an anonymous owner). With refund,
-- give back everything the job was charged (owner and bytes are not needed); otherwise charge
-- `bytes` to `owner` (and `client`) for the job, unless that would take either past its quota
-- (L.disk_quota, L.client_disk_quota; 0: none).
-- Answers ok (used: the owner's bytes after the call) or over_quota (used, before the call; client:
-- the address's quota was the one in the way).
if A.refund then
  local raw = redis.call('HGET', L.disk_charges, A.job)
  if not raw then return answer({status = S.ok, used = 0}) end
  local charge = cjson.decode(raw)
  redis.call('HDEL', L.disk_charges, A.job)
  local used = 0
  for _, who in ipairs({charge.owner, charge.client or false}) do
    if who then
      local left = redis.call('HINCRBY', L.disk_usage, who, -charge.bytes)
      if left <= 0 then
        redis.call('HDEL', L.disk_usage, who)
        left = 0
      end
      if who == charge.owner then used = left end
    end
  end
  return answer({status = S.ok, used = used})
end
local used = tonumber(redis.call('HGET', L.disk_usage, A.owner) or '0')
if L.disk_quota > 0 and used + A.bytes > L.disk_quota then
  return answer({status = S.over_quota, used = used})
end
if A.client then
  local client_used = tonumber(redis.call('HGET', L.disk_usage, A.client) or '0')
  if L.client_disk_quota > 0 and client_used + A.bytes > L.client_disk_quota then
    return answer({status = S.over_quota, used = client_used, client = true})
  end
  redis.call('HINCRBY', L.disk_usage, A.client, A.bytes)
end
local raw = redis.call('HGET', L.disk_charges, A.job)
local charged = 0
if raw then charged = cjson.decode(raw).bytes end
redis.call('HSET', L.disk_charges, A.job,
  cjson.encode({owner = A.owner, client = A.client, bytes = charged + A.bytes}))
return answer({status = S.ok, used = redis.call('HINCRBY', L.disk_usage, A.owner, A.bytes)})
