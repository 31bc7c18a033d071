-- Cancel a job. A job no worker holds (queued, delayed, waiting between attempts or for its
-- children) ends now with a `cancelled` event and leaves its queue; a running one is flagged and its
-- worker told, and the worker publishes `cancelled` once the job code has stopped. The flag lives
-- in the job's own record (not in a global registry like arq's aborts), so it can never touch
-- another job and expires with it. A parent's end cancels its unfinished children (tree.lua).
-- K: job, history, channel. A: event (for `publish`: id, head, tail, fields).
-- Answers not_found; ended (state); cancelled (seq); cancel_requested.
return answer(cancel_job(K, A.event.id, A.event))
