-- Publish one event (see `publish` in common.lua). K: job, history, channel.
-- A: the event (id, type, state, head, tail, fence, fields).
-- Answers published (with seq), refused (the job ended, or the attempt is stale) or not_found.
local seq = publish(K, A)
if seq > 0 then return answer({status = S.published, seq = seq}) end
if seq == 0 then return answer({status = S.refused}) end
return answer({status = S.not_found})
