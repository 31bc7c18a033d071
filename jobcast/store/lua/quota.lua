-- Each owner's stored bytes (uploads and result files; output is charged by output.lua) against
-- the disk quota, and an anonymous owner's client address's against that times the identities an
-- address may share it between (disk.lua keeps the books).
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
local ok, used, client = disk_charge(A.job, A.owner, A.client or false, A.bytes)
if not ok then return answer({status = S.over_quota, used = used, client = client}) end
return answer({status = S.ok, used = used})
