-- Publish one event (see `publish` in events.lua). K: job, history, channel.
-- A: the event (id, type, state, head, tail, fence, fields; release: {owner, priority}).
-- With A.release, a terminal event also ends the lease of the worker, as
-- finish.lua would, provided A.release.owner holds the lease: one script call where the end of a
-- job took two.
-- Answers published (with seq, and released), refused (the job ended, or the attempt is stale)
-- or not_found.
local seq = publish(K, A)
if seq > 0 then return answer({status = S.published, seq = seq, released = end_lease(A, A.release)}) end
if seq == 0 then return answer({status = S.refused}) end
return answer({status = S.not_found})
