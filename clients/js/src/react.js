// React bindings: useJob, useJobOutput and useFeed, live state from one jobcast watcher per mounted hook.
//
// Each hook owns its watcher through one effect: StrictMode's mount, unmount and mount again
// stops the first watcher before the second starts, and unmounting stops it, so no connection
// outlives its component. Callbacks are read through a ref, so a new options object on each
// render does not reconnect; only the job, the server, the transport and the token do.
import { useEffect, useRef, useState } from "react";

import { State, jobOutput, watchFeed, watchJob } from "./jobcast.js";

const MAX_EVENTS = 500;
const MAX_JOBS = 1000;

// The snapshot as of an event: a `snapshot` event is one; any other updates the fields it carries.
export function applyEvent(snapshot, event) {
  if (event.type === "snapshot") {
    const { type: _type, job_id: _jobId, seq, ...fields } = event;
    return { ...fields, last_event_id: seq };
  }
  const next = { ...(snapshot ?? { id: event.job_id }), state: event.state ?? snapshot?.state, attempt: event.attempt, last_event_id: event.seq };
  if (event.progress) next.progress = event.progress;
  if (event.type === "started") {
    next.started_at = event.ts;
    // Elapsed time counts from the first attempt's start, as the server's snapshot says.
    if (!next.first_started_at) next.first_started_at = event.ts;
    next.finished_at = null;
  }
  if (event.type === "succeeded" || event.type === "failed" || event.type === "cancelled") {
    next.finished_at = event.ts;
    if (event.type === "succeeded") next.progress = { ...(next.progress ?? {}), percent: 100 };
  }
  if ("result" in event && event.result !== undefined && event.result !== null) next.result = event.result;
  if (event.error) next.error = event.error;
  return next;
}

function unknownJob(jobId) {
  const error = new Error(`jobcast: job ${jobId} is unknown or no longer kept`);
  error.code = "not_found";
  return error;
}

function useLatest(value) {
  const ref = useRef(value);
  ref.current = value;
  return ref;
}

/**
 * Watch one job: `{snapshot, events, state, error}`, updated as events arrive. `snapshot` is the
 * job's snapshot with every later event applied; `events` the most recent events (at most
 * `options.maxEvents`, 500 by default); `state` the connection state (`State`); `error` set when
 * the server says no for good (an unknown job). A null or empty `jobId` watches nothing.
 */
export function useJob(jobId, options = {}) {
  const { base = "", transport, token, maxEvents = MAX_EVENTS } = options;
  const latest = useLatest(options);
  const [view, setView] = useState(() => ({ snapshot: null, events: [], state: null, error: null }));
  useEffect(() => {
    setView({ snapshot: null, events: [], state: jobId ? State.CONNECTING : null, error: null });
    if (!jobId) return undefined;
    const watcher = watchJob(jobId, {
      ...latest.current,
      base,
      transport,
      token,
      onEvent: (event) => {
        setView((view) => ({
          ...view,
          snapshot: applyEvent(view.snapshot, event),
          events: [...view.events.slice(-(maxEvents - 1)), event],
        }));
        latest.current.onEvent?.(event);
      },
      onState: (state, detail) => {
        setView((view) => ({ ...view, state, error: state === State.ERROR ? unknownJob(jobId) : view.error }));
        latest.current.onState?.(state, detail);
      },
    });
    return () => watcher.stop();
  }, [jobId, base, transport, token, maxEvents, latest]);
  return view;
}

// The feed's jobs, newest first, with an event applied (a job not seen yet goes first).
function applyFeedEvent(snapshot, event, maxJobs) {
  const jobs = snapshot?.jobs ?? [];
  const at = jobs.findIndex((job) => job.id === event.job_id);
  const job = applyEvent(at >= 0 ? jobs[at] : null, event);
  const next = at >= 0 ? jobs.with(at, job) : [job, ...jobs].slice(0, maxJobs);
  return { ...snapshot, jobs: next };
}

/**
 * Watch every job at once (the feed): `{snapshot, events, state, error}`. `snapshot` is the feed's
 * snapshot (`{feed_seq, epoch, jobs}`) with every later event applied to its jobs (at most
 * `options.maxJobs`, 1000 by default, newest first); `events` the most recent events.
 */
export function useFeed(options = {}) {
  const { base = "", transport, token, maxEvents = MAX_EVENTS, maxJobs = MAX_JOBS } = options;
  const latest = useLatest(options);
  const [view, setView] = useState(() => ({ snapshot: null, events: [], state: State.CONNECTING, error: null }));
  useEffect(() => {
    setView({ snapshot: null, events: [], state: State.CONNECTING, error: null });
    const watcher = watchFeed({
      ...latest.current,
      base,
      transport,
      token,
      onSnapshot: (snapshot) => {
        setView((view) => ({ ...view, snapshot: { ...snapshot, jobs: snapshot.jobs.slice(0, maxJobs) } }));
        latest.current.onSnapshot?.(snapshot);
      },
      onEvent: (event) => {
        setView((view) => ({
          ...view,
          snapshot: applyFeedEvent(view.snapshot, event, maxJobs),
          events: [...view.events.slice(-(maxEvents - 1)), event],
        }));
        latest.current.onEvent?.(event);
      },
      onState: (state, detail) => {
        setView((view) => ({ ...view, state, error: state === State.ERROR ? new Error("jobcast: the feed was refused") : view.error }));
        latest.current.onState?.(state, detail);
      },
    });
    return () => watcher.stop();
  }, [base, transport, token, maxEvents, maxJobs, latest]);
  return view;
}

/**
 * One of a job's output streams as it is written: `{text, done, error}`. `text` grows chunk by
 * chunk, whole and without repeats across reconnects; `done` turns true when the attempt it
 * follows (the one running, or the next to start) has ended; `error` is set when the server says
 * no for good. A null or empty `jobId` follows nothing.
 */
export function useJobOutput(jobId, stream = "output", options = {}) {
  const { base = "", transport, token } = options;
  const latest = useLatest(options);
  const [view, setView] = useState(() => ({ text: "", done: false, error: null }));
  useEffect(() => {
    setView({ text: "", done: false, error: null });
    if (!jobId) return undefined;
    let live = true;
    const chunks = jobOutput(jobId, stream, { ...latest.current, base, transport, token });
    (async () => {
      try {
        for await (const text of chunks) {
          if (!live) break;
          setView((view) => ({ ...view, text: view.text + text }));
        }
        if (live) setView((view) => ({ ...view, done: true }));
      } catch (error) {
        if (live) setView((view) => ({ ...view, error, done: true }));
      }
    })();
    return () => {
      live = false;
      chunks.return(undefined); // stops its watcher
    };
  }, [jobId, stream, base, transport, token, latest]);
  return view;
}
