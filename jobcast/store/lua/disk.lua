-- The disk quota's bookkeeping, for the scripts that charge it (quota: files; output: jobs' output
-- kept in Redis). A job's charges are kept by job, so that the job's end gives back exactly what
-- it took; an anonymous owner's are charged to its client address too.

-- Charge `bytes` to `owner` (and `client`, when given) for `job`, unless either would pass its
-- quota (L.disk_quota, L.client_disk_quota; 0: none). Returns true and the owner's bytes after,
-- or false, the bytes held by the one in the way, and whether that was the client address.
local function disk_charge(job, owner, client, bytes)
  local used = tonumber(redis.call('HGET', L.disk_usage, owner) or '0')
  if L.disk_quota > 0 and used + bytes > L.disk_quota then return false, used, false end
  if client then
    local client_used = tonumber(redis.call('HGET', L.disk_usage, client) or '0')
    if L.client_disk_quota > 0 and client_used + bytes > L.client_disk_quota then
      return false, client_used, true
    end
    redis.call('HINCRBY', L.disk_usage, client, bytes)
  end
  local raw = redis.call('HGET', L.disk_charges, job)
  local charged = 0
  if raw then charged = cjson.decode(raw).bytes end
  redis.call('HSET', L.disk_charges, job, cjson.encode({owner = owner, client = client, bytes = charged + bytes}))
  return true, redis.call('HINCRBY', L.disk_usage, owner, bytes)
end
