-- A parent's first part has ended having made children: the job waits for them without a worker
-- slot. Publishes its `waiting_children` event (K and A as publish.lua; A.release: the worker's
-- lease, which ends here) and, if every child has ended already, puts it back in its queue at
-- once (tree.lua's continue_parent; otherwise the last child's end does).
-- Answers published (seq, released), refused or not_found, as publish.lua.
-- Asked to cancel after its code returned, before this: it ends here, and its children with it,
-- rather than waiting for them and being cancelled only once they end.
local asked = redis.call('HGET', K.job, 'cancel_requested')
if asked and asked ~= '' then
  local f = redis.call('HMGET', K.job, 'attempt', 'owner')
  local e = own_event(A.id, L.event.cancelled, L.state.cancelled, f[1] or '0',
    cjson.encode({type = 'Cancelled', message = 'cancelled on request'}))
  A.head, A.tail, A.fields, A.type, A.state, A.fence = e.head, e.tail, e.fields, e.type, e.state, -1
end
local seq = publish(K, A)
if seq == 0 then return answer({status = S.refused}) end
if seq < 0 then return answer({status = S.not_found}) end
local released = false
if A.release and redis.call('HGET', L.leases, A.id) == A.release.owner then
  redis.call('HDEL', L.leases, A.id)
  redis.call('ZREM', L.running[A.release.priority], A.id)
  released = true
end
local p = read_parent(K.job)
if p.state == L.state.waiting_children and p.kids_pending <= 0 then
  publish_rollup(A.id, p)
  continue_parent(A.id, p)
end
return answer({status = S.published, seq = seq, released = released})
