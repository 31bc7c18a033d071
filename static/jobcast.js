// jobcast's JS client: watch one job or the whole feed over SSE or WebSocket, with resume.
// An ES module with no dependencies, for browsers and Node 20+. Documented in docs/js-client.md.
//
//   import { watchJob, watchFeed } from "@jobcast/client"; // or "/static/jobcast.js"
//   const watcher = watchJob(id, { onEvent, onState, transport: "sse" });
//   watcher.stop();
//
// The one source is clients/js/src/jobcast.js (the npm package @jobcast/client); every jobcast
// server serves a copy of it as /static/jobcast.js (`npm run build` in clients/js writes it, and a
// test fails when the two differ).

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const EVENT_TYPES = [
  "snapshot", "queued", "queue", "started", "progress", "output", "retrying", "waiting_children", "succeeded", "failed", "cancelled",
];

// Connection states, as onState reports them.
export const State = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  OFFLINE: "offline", // many attempts failed in a row: the server looks gone (still retrying, slowly)
  ENDED: "ended", // the job's terminal event arrived: nothing more will come
  STOPPED: "stopped", // the caller stopped watching
  ERROR: "error", // the server said no for good (unknown job)
});

// A connection counts as good, and resets the backoff, once it delivers an event or stays open
// this long: a stream that opens and ends at once is a failure, so a tab never hammers a server.
const STABLE_MS = 5000;

class Backoff {
  constructor(baseMs = 250, maxMs = 15000) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.failures = 0;
  }
  // Exponential with jitter (half to full), so a fleet of pages does not reconnect in lockstep.
  next() {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** this.failures);
    this.failures += 1;
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }
  reset() {
    this.failures = 0;
  }
}

// A URL under the server root, made absolute against the page. Outside a page (Node) there is
// nothing to resolve against: the root must be a whole URL.
function absolute(path) {
  const page = typeof location === "undefined" ? undefined : location.href;
  if (page === undefined && !/^https?:\/\//.test(path)) {
    throw new TypeError(`jobcast: outside a browser, pass base (the jobcast server's URL); got "${path}"`);
  }
  return new URL(path, page);
}

// The WebSocket URL under a server root: "" (this origin), "/jobs" (mounted under a prefix) or
// "https://jobs.example.com".
function wsUrl(root) {
  const url = absolute(`${root}/api/ws`);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

// SSE where there is an EventSource; else a WebSocket (Node 22+ has one built in, no EventSource).
function defaultTransport(options) {
  const has = (name) => typeof (options[name] ?? globalThis[name]) === "function";
  return !has("EventSource") && has("WebSocket") ? "ws" : "sse";
}

// The transport's constructor: the one passed in (Node: the `eventsource` or `ws` package), else
// the platform's own. Checked when the watch starts, so a missing one fails at the call.
function transportImpl(transport, options) {
  const name = transport === "ws" ? "WebSocket" : "EventSource";
  const impl = options[name] ?? globalThis[name];
  if (typeof impl !== "function") {
    throw new TypeError(
      `jobcast: no ${name} here; pass options.${name} (Node: ${transport === "ws" ? 'import { WebSocket } from "ws"' : 'import { EventSource } from "eventsource"'})`,
    );
  }
  return impl;
}

// One logical stream (a job, or the feed) that outlives its connections. `position()` says where
// to resume; `accept(data, type)` decides whether an event is new and handles it.
class Stream {
  constructor({ root, sseUrl, probeUrl, wsSubscribe, position, accept, isDone, transport, impl, onState, offlineAfter, token }) {
    this.root = root;
    // A stream token (owner mode, watching without the owner's cookie), kept fresh; or null.
    this.token = token || null;
    this.sseUrl = sseUrl;
    this.probeUrl = probeUrl;
    this.wsSubscribe = wsSubscribe;
    this.position = position;
    this.accept = accept;
    this.isDone = isDone;
    this.transport = transport === "ws" ? "ws" : "sse";
    this.impl = impl;
    this.onState = onState || (() => {});
    this.offlineAfter = offlineAfter ?? 6;
    this.backoff = new Backoff();
    this.state = null;
    this.source = null;
    this.socket = null;
    this.timer = null;
    this.stopped = false;
    this.openedAt = null;
  }

  // The connection is up; it resets the backoff only once it proves itself (see STABLE_MS).
  opened() {
    this.openedAt = Date.now();
    this.setState(State.LIVE);
  }

  setState(state, detail) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state, detail);
  }

  start() {
    this.setState(State.CONNECTING);
    this.connect();
    if (this.token) this.token.start(this);
    return this;
  }

  stop(state = State.STOPPED) {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.token) this.token.stop();
    this.close();
    this.setState(state);
  }

  close() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      // Its onerror stays: closing a socket that is still connecting fires an error too.
      socket.onclose = socket.onmessage = null;
      socket.close();
    }
  }

  connect() {
    if (this.stopped) return;
    if (this.transport === "ws") this.connectWs();
    else this.connectSse();
  }

  // The connection is gone (or never came): try again later from where we are.
  retry() {
    this.close();
    if (this.stopped) return;
    if (this.openedAt !== null && Date.now() - this.openedAt >= STABLE_MS) this.backoff.reset();
    this.openedAt = null;
    const offline = this.backoff.failures >= this.offlineAfter;
    this.setState(offline ? State.OFFLINE : State.RECONNECTING);
    this.timer = setTimeout(() => this.connect(), this.backoff.next());
  }

  deliver(data, type) {
    this.backoff.reset();
    this.accept(data, type);
    if (this.isDone()) this.stop(State.ENDED);
  }

  connectSse() {
    const url = absolute(this.sseUrl);
    const pos = this.position();
    if (pos !== null && pos !== undefined) url.searchParams.set("last_event_id", String(pos));
    if (this.token) url.searchParams.set("token", this.token.value);
    // Each connection is a new EventSource that we own: the browser's own reconnect does not
    // back off with jitter, and it gives up for good after some errors (a 502 during a deploy).
    const source = new this.impl(url.toString());
    this.source = source;
    let opened = false;
    source.onopen = () => {
      opened = true;
      this.opened();
    };
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (message) => {
        if (this.source !== source) return;
        this.deliver(JSON.parse(message.data), type);
      });
    }
    source.onerror = () => {
      if (this.source !== source) return;
      if (!opened && (this.probeUrl || this.token)) this.probe(source);
      else this.retry();
    };
  }

  // EventSource hides why a stream was refused. Ask the status URL (with a token, its renewal:
  // the snapshot needs the owner's cookie): an unknown (or expired) job, or a token refused for
  // good, is an answer; anything else (a 502 during a deploy, no server) is worth a retry.
  async probe(source) {
    source.close();
    let status = 0;
    try {
      status = this.token
        ? await this.token.renew()
        : (await fetch(this.probeUrl, { headers: { Accept: "application/json" } })).status;
    } catch {
      // no server: retry below
    }
    if (this.source !== source || this.stopped) return;
    if (status === 404 || status === 401) this.stop(State.ERROR);
    else this.retry();
  }

  connectWs() {
    const socket = new this.impl(wsUrl(this.root));
    this.socket = socket;
    socket.onopen = () => {
      const message = this.wsSubscribe(this.position());
      if (this.token) message.token = this.token.value;
      socket.send(JSON.stringify(message));
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "subscribed") {
        this.opened();
      } else if (data.type === "error") {
        if (data.code === "ended") this.stop(State.ENDED);
        else if (data.code === "not_found" || data.code === "bad_token") this.stop(State.ERROR);
        else if (data.code === "unavailable") this.retry();
      } else if (data.type !== "unsubscribed" && data.type !== "cancel_accepted") {
        this.deliver(data, data.type);
      }
    };
    socket.onclose = () => {
      if (this.socket === socket) this.retry();
    };
    // The close that follows an error retries. Listening matters in Node: the `ws` package throws
    // an error (a refused connection, say) that has no listener as an uncaught exception.
    socket.onerror = () => {};
  }
}

// A stream token kept fresh: renewed (in exchange for itself) well before it expires, so a page
// watching a job for hours keeps being able to reconnect. Renewals that fail are retried.
class StreamToken {
  constructor(value, renewUrl) {
    this.value = value;
    this.renewUrl = renewUrl;
    this.timer = null;
    this.backoff = new Backoff(1000, 30000);
  }

  // The first renewal says how long tokens last; later ones come at 80% of that.
  start(stream) {
    this.stream = stream;
    this.schedule(0);
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.stream = null;
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.renew(), ms);
  }

  // Resolves to the renewal's HTTP status (0: no answer).
  async renew() {
    let response;
    try {
      response = await fetch(this.renewUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ token: this.value }),
      });
    } catch {
      if (this.stream) this.schedule(this.backoff.next());
      return 0;
    }
    if (response.ok) {
      const { stream_token: value, expires_at: expiresAt } = await response.json();
      this.value = value;
      this.backoff.reset();
      if (this.stream) this.schedule(Math.max(1000, (expiresAt * 1000 - Date.now()) * 0.8));
    } else if (response.status !== 401 && response.status !== 404 && this.stream) {
      this.schedule(this.backoff.next());
    }
    return response.status;
  }
}

// The WebSocket subscribe message's resume field: none before the first event.
function resumeFrom(pos) {
  return pos === null || pos === undefined ? {} : { last_event_id: pos };
}

function serverBase(base) {
  return base ? String(base).replace(/\/$/, "") : "";
}

/**
 * Watch one job. `onEvent(event)` gets each event once, in order (a `snapshot` event stands for
 * everything up to its seq); `onQueue({ahead, eta_s})` gets its place in line while it waits
 * (`ahead` null: no longer in line); `onState(state)` gets the connection state. Resumes after the last
 * seq seen on every reconnect; stops by itself after the terminal event.
 */
export function watchJob(jobId, options = {}) {
  const { onEvent = () => {}, onQueue = () => {}, onState, transport = defaultTransport(options), base = "", lastEventId = null, token } = options;
  let lastSeq = lastEventId;
  let done = false;
  const root = serverBase(base);
  const stream = new Stream({
    root,
    token: token ? new StreamToken(token, `${root}/api/jobs/${jobId}/token`) : null,
    sseUrl: `${root}/api/jobs/${jobId}/events`,
    probeUrl: `${root}/api/jobs/${jobId}`,
    wsSubscribe: (pos) => ({ type: "subscribe", job_id: jobId, ...resumeFrom(pos) }),
    position: () => lastSeq,
    accept: (event, type) => {
      // A waiting job's place in the queue is live only: it has no seq, and moves no position.
      if (type === "queue") {
        if (!done) onQueue(event);
        return;
      }
      // Never twice, never backwards: a snapshot may repeat the current seq, events may not.
      if (lastSeq !== null && (type === "snapshot" ? event.seq < lastSeq : event.seq <= lastSeq)) return;
      lastSeq = event.seq;
      if (TERMINAL.has(event.state)) done = true;
      onEvent(event);
    },
    isDone: () => done,
    transport,
    impl: transportImpl(transport, options),
    onState,
    offlineAfter: options.offlineAfter,
  });
  return started(stream, () => lastSeq);
}

/**
 * One attempt's text of one output stream, from a job's events: the snapshot's text (or what the
 * reader lacks of it), then each chunk of the stream. `feed(event)` answers the new text, or
 * `{length, href}` for a stream too long for a snapshot (read `offset`..`length` there), and sets
 * `over` once the attempt has ended.
 */
export class OutputText {
  constructor(stream = "output", attempt = null) {
    this.stream = stream;
    this.attempt = attempt;
    this.offset = 0; // UTF-8 bytes of the stream given so far
    this.over = false;
  }

  feed(event) {
    const attempt = event.attempt ?? 0;
    if (event.type === "snapshot") {
      const state = event.state;
      if (this.attempt === null) {
        const begun = (state === "running" || TERMINAL.has(state)) && attempt;
        this.attempt = begun ? attempt : attempt + 1;
      }
      if (attempt !== this.attempt) {
        this.over = attempt > this.attempt || TERMINAL.has(state);
        return "";
      }
      this.over = TERMINAL.has(state) || state === "retrying";
      const held = event.output?.[this.stream];
      if (held && typeof held === "object") return held;
      const bytes = UTF8.encode(held ?? "");
      const fresh = bytes.subarray(this.offset);
      this.offset = Math.max(this.offset, bytes.length);
      return DECODE(fresh);
    }
    if (this.attempt === null) return "";
    if (event.type === "output") {
      if (event.stream !== this.stream || attempt !== this.attempt) return "";
      this.offset += UTF8.encode(event.data).length;
      return event.data;
    }
    if (event.type === "started") this.over = attempt > this.attempt;
    else this.over = event.type === "retrying" || TERMINAL.has(event.state);
    return "";
  }
}

const UTF8 = new TextEncoder();
const DECODE = (bytes) => new TextDecoder().decode(bytes);

/**
 * The text of one of a job's output streams as it is written, as an async iterator of strings:
 * whole, in order and once across reconnects (it rides on watchJob). It follows one attempt, the
 * one running (or the next to start), and ends with it. Breaking out of the loop stops watching.
 *
 *   for await (const text of jobOutput(id, "output")) answer.textContent += text;
 */
export async function* jobOutput(jobId, stream = "output", options = {}) {
  const text = new OutputText(stream, options.attempt ?? null);
  const root = serverBase(options.base);
  const queue = [];
  let wake = null;
  let failure = null;
  const push = (item) => {
    queue.push(item);
    wake?.();
  };
  const watcher = watchJob(jobId, {
    ...options,
    onEvent: (event) => {
      const fresh = text.feed(event);
      if (fresh && typeof fresh === "object") {
        // Too long for the snapshot: read what is lacking, in its place in the order.
        const query = `attempt=${text.attempt}&offset=${text.offset}&end=${fresh.length}`;
        const url = `${root}/api/jobs/${jobId}/output/${stream}?${query}${options.token ? `&token=${encodeURIComponent(options.token)}` : ""}`;
        const fetchImpl = options.fetch ?? globalThis.fetch;
        push(fetchImpl(absolute(url), { headers: options.headers }).then((r) => r.text()));
        text.offset = fresh.length;
      } else if (fresh) {
        push(fresh);
      }
      if (text.over) push(null);
      options.onEvent?.(event);
    },
    onState: (state, detail) => {
      if (state === State.ERROR) {
        failure = new Error(`jobcast: job ${jobId} is unknown or no longer kept`);
        push(null);
      } else if (state === State.ENDED) {
        push(null);
      }
      options.onState?.(state, detail);
    },
  });
  try {
    while (true) {
      if (!queue.length) await new Promise((resolve) => (wake = resolve));
      wake = null;
      const item = await queue.shift();
      if (item === null) break;
      if (item) yield item;
    }
    if (failure) throw failure;
  } finally {
    watcher.stop();
  }
}

// A feed position as the server writes it in the SSE `id:`: `<epoch>:<feed seq>`.
function parseFeedId(id) {
  const match = /^([0-9A-Za-z]{1,16}):(\d+)$/.exec(id ?? "");
  return match ? { epoch: match[1], seq: Number(match[2]) } : { epoch: null, seq: null };
}

// The feed is as good as its worst shard's stream.
const WORST_FIRST = [State.ERROR, State.OFFLINE, State.RECONNECTING, State.CONNECTING, State.LIVE, State.ENDED, State.STOPPED];

/**
 * Watch every job at once: one connection whatever the number of jobs. `onSnapshot({feed_seq,
 * epoch, jobs})` gets the newest jobs when the stream starts (or could not resume); `onEvent(event)`
 * gets every job's events after it (state changes once each, progress live). Each job's events
 * come in order; events a snapshot already covers are skipped. Feed seqs count within an epoch,
 * which changes when the server lost the feed's history; resuming from another epoch gives a
 * snapshot. `lastEventId` (and the watcher's `lastEventId`) is a feed id, `<epoch>:<feed seq>`.
 *
 * A sharded deployment (JOBCAST_REDIS_SHARDS) has one feed of every job a shard: the first
 * snapshot says how many (`shards`), and the watcher opens the others then, one connection each.
 * Its `lastEventId` lists each shard's feed id, comma-separated, in shard order.
 */
export function watchFeed(options = {}) {
  const { onEvent = () => {}, onSnapshot = () => {}, onState, transport = defaultTransport(options), base = "", token } = options;
  const jobSeqs = new Map();
  const root = serverBase(base);
  const shards = [];
  const states = [];
  let reported = null;
  const report = (index, state, detail) => {
    states[index] = state;
    const worst = WORST_FIRST.find((s) => states.includes(s)) ?? state;
    if (worst === reported) return;
    reported = worst;
    onState?.(worst, detail);
  };
  const open = (index, position) => {
    let { epoch, seq: feedSeq } = position;
    const feedId = () => (feedSeq === null ? null : `${epoch}:${feedSeq}`);
    const stream = new Stream({
      root,
      // Owner mode's feeds (a token's) are one stream: an owner's jobs are all on one shard.
      token: index === 0 && token ? new StreamToken(token, `${root}/api/events/token`) : null,
      sseUrl: `${root}/api/events${index ? `?shard=${index}` : ""}`,
      wsSubscribe: () => ({
        type: "subscribe_feed",
        ...(index ? { shard: index } : {}),
        ...(feedSeq === null ? {} : { last_event_id: feedSeq, epoch }),
      }),
      position: feedId,
      accept: (event, type) => {
        if (type === "snapshot") {
          feedSeq = event.feed_seq;
          epoch = event.epoch;
          for (const job of event.jobs) jobSeqs.set(job.id, job.last_event_id);
          for (let n = shards.length; n < (event.shards ?? 1); n++) open(n, { epoch: null, seq: null });
          onSnapshot(event);
          return;
        }
        if (event.feed_seq !== undefined) {
          if (feedSeq !== null && event.epoch === epoch && event.feed_seq <= feedSeq) return;
          feedSeq = event.feed_seq;
          epoch = event.epoch;
        }
        const seen = jobSeqs.get(event.job_id);
        if (seen !== undefined && event.seq <= seen) return;
        jobSeqs.set(event.job_id, event.seq);
        if (jobSeqs.size > 5000) jobSeqs.delete(jobSeqs.keys().next().value); // bounded
        onEvent(event);
      },
      isDone: () => false,
      transport,
      impl: transportImpl(transport, options),
      onState: (state, detail) => report(index, state, detail),
      offlineAfter: options.offlineAfter,
    });
    shards.push({ stream, feedId });
    stream.start();
  };
  (options.lastEventId ?? "").split(",").forEach((id, index) => open(index, parseFeedId(id)));
  return {
    stop: () => shards.forEach(({ stream }) => stream.stop()),
    get lastEventId() {
      const ids = shards.map(({ feedId }) => feedId());
      return ids.length === 1 ? ids[0] : ids.map((id) => id ?? "").join(",");
    },
    get state() {
      return reported;
    },
  };
}

/** Start a stream and hand the caller its controls. */
function started(stream, position) {
  stream.start();
  return {
    stop: () => stream.stop(),
    get lastEventId() {
      return position();
    },
    get state() {
      return stream.state;
    },
  };
}

/**
 * Submit a job; resolves to its snapshot, or rejects with the problem document (`.problem`).
 * `headers` are added to the request (a Node backend's `Authorization: Bearer <API key>`).
 */
export async function submitJob(kind, params = {}, { priority, delaySeconds, base = "", idempotencyKey, headers: extra } = {}) {
  const headers = { ...extra, "Content-Type": "application/json", Accept: "application/json" };
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const body = { kind, params };
  if (priority) body.priority = priority;
  if (delaySeconds) body.delay_s = delaySeconds;
  const response = await fetch(`${serverBase(base)}/api/jobs`, { method: "POST", headers, body: JSON.stringify(body) });
  return readJson(response);
}

/** Cancel a job; resolves to its snapshot (state `cancelled`, or `cancel_requested`). */
export async function cancelJob(jobId, { base = "", headers } = {}) {
  return readJson(await fetch(`${serverBase(base)}/api/jobs/${jobId}/cancel`, { method: "POST", headers }));
}

/** Retry a failed or cancelled job; resolves to the new job's snapshot. */
export async function retryJob(jobId, { base = "", headers } = {}) {
  return readJson(await fetch(`${serverBase(base)}/api/jobs/${jobId}/retry`, { method: "POST", headers }));
}

export async function readJson(response) {
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((body && body.detail) || `HTTP ${response.status}`);
    error.problem = body;
    error.status = response.status;
    throw error;
  }
  return body;
}

/** Seconds as "1m 05s". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

/**
 * Elapsed and remaining seconds of a job. Elapsed counts from `startedAt`, the first attempt's
 * start; the estimate left uses the current attempt alone (`attemptStartedAt`, when a retry began
 * later), since its percent started again from nothing.
 */
export function timing({ startedAt, attemptStartedAt, finishedAt, percent, timeoutS }, now = Date.now()) {
  if (!startedAt) return { elapsed: NaN, eta: NaN, pace: NaN, timesOut: false };
  const end = finishedAt ? Date.parse(finishedAt) : now;
  const elapsed = (end - Date.parse(startedAt)) / 1000;
  const running = (end - Date.parse(attemptStartedAt || startedAt)) / 1000;
  const pace = finishedAt ? 0 : percent > 0 && percent < 100 ? (running * (100 - percent)) / percent : NaN;
  // An attempt ends at its time limit whatever its pace: an estimate past the limit is when it
  // would time out, not when it finishes.
  const left = timeoutS > 0 ? Math.max(timeoutS - running, 0) : Infinity;
  const timesOut = Number.isFinite(pace) && pace > left;
  return { elapsed, eta: timesOut ? left : pace, pace, timesOut };
}

const ELEMENT_STYLE = `
  :host { display: block; font: var(--job-progress-font, inherit); color: var(--job-progress-text, inherit); }
  .row { display: flex; justify-content: space-between; gap: .5em; font-size: .9em; margin-bottom: .25em; }
  .state { font-weight: 600; }
  progress { width: 100%; height: var(--job-progress-height, .75rem); appearance: none; border: 0;
    border-radius: var(--job-progress-radius, 999px); overflow: hidden;
    background: var(--job-progress-track, #e5e7eb); accent-color: var(--job-progress-accent, #2563eb); }
  progress::-webkit-progress-bar { background: var(--job-progress-track, #e5e7eb); }
  progress::-webkit-progress-value { background: var(--job-progress-accent, #2563eb); transition: width .2s; }
  progress::-moz-progress-bar { background: var(--job-progress-accent, #2563eb); }
  :host([state="succeeded"]) progress::-webkit-progress-value { background: var(--job-progress-success, #16a34a); }
  :host([state="failed"]) progress::-webkit-progress-value,
  :host([state="cancelled"]) progress::-webkit-progress-value { background: var(--job-progress-danger, #dc2626); }
  .message { font-size: .85em; opacity: .8; min-height: 1.2em; }
  pre { margin: .5em 0 0; max-height: var(--job-progress-output-height, 16em); overflow: auto;
    white-space: pre-wrap; overflow-wrap: anywhere; font: .9em/1.4 ui-monospace, monospace; }
`;

// Outside a page (Node, SSR) there is no HTMLElement: the class is then an inert placeholder
// and nothing is registered.
/**
 * <job-progress job-id="..." [base="https://jobs.example"] [token="..."] [transport="ws"] [label="Export"] [output="output"]>
 * A live progress bar for one job; with `output`, that output stream's text under it, as it is
 * written (a new attempt's replaces the last's). Styled with CSS custom properties: --job-progress-accent,
 * --job-progress-track, --job-progress-success, --job-progress-danger, --job-progress-height,
 * --job-progress-radius, --job-progress-font, --job-progress-text. Reflects the job's state in its
 * `state` attribute and fires `job-event` (detail: the event) for each event, and `job-queue`
 * (detail: `{ahead, eta_s}`) as its place in line changes while it waits.
 */
export class JobProgressElement extends (globalThis.HTMLElement ?? class {}) {
  static get observedAttributes() {
    return ["job-id", "output"];
  }

  constructor() {
    super();
    const shadow = this.attachShadow({ mode: "open" });
    shadow.innerHTML = `<style>${ELEMENT_STYLE}</style>
      <div class="row"><span class="label" part="label"></span><span class="state" part="state">connecting</span></div>
      <progress part="bar" max="100" value="0"></progress>
      <div class="row"><span class="message" part="message"></span><span class="percent" part="percent">0%</span></div>
      <pre part="output" tabindex="0" role="region" aria-label="Output" hidden></pre>`;
    this.bar = shadow.querySelector("progress");
    this.stateText = shadow.querySelector(".state");
    this.percentText = shadow.querySelector(".percent");
    this.messageText = shadow.querySelector(".message");
    this.outputBox = shadow.querySelector("pre");
    this.output = null;
    this.watcher = null;
    this.queue = null; // the last `queue` event while the job waits in line
    this.lastEvent = null;
  }

  connectedCallback() {
    this.shadowRoot.querySelector(".label").textContent = this.getAttribute("label") || "";
    this.bar.setAttribute("aria-label", this.getAttribute("label") || "Job progress");
    this.start();
  }

  disconnectedCallback() {
    this.watcher?.stop();
    this.watcher = null;
  }

  attributeChangedCallback() {
    if (this.isConnected) this.start();
  }

  start() {
    this.watcher?.stop();
    const jobId = this.getAttribute("job-id");
    const stream = this.getAttribute("output");
    this.output = stream ? new OutputText(stream) : null;
    this.outputBox.hidden = !stream;
    this.outputBox.textContent = "";
    this.queue = this.lastEvent = null;
    if (!jobId) return;
    this.watcher = watchJob(jobId, {
      base: this.getAttribute("base") || "",
      token: this.getAttribute("token") || undefined,
      transport: this.getAttribute("transport") || "sse",
      onEvent: (event) => this.show(event),
      onQueue: (event) => this.showQueue(event),
      onState: (state) => {
        if (state === State.RECONNECTING || state === State.OFFLINE) this.stateText.textContent = state + "…";
        else if (state === State.ERROR) this.stateText.textContent = "unknown job";
      },
    });
  }

  showOutput(event) {
    if (!this.output) return;
    if (event.type === "started" && this.output.attempt !== null && event.attempt > this.output.attempt) {
      this.output = new OutputText(this.output.stream, event.attempt); // a new attempt writes afresh
      this.outputBox.textContent = "";
    }
    const fresh = this.output.feed(event);
    if (fresh && typeof fresh === "object") {
      const output = this.output;
      const base = this.getAttribute("base") || "";
      output.offset = fresh.length; // what follows is appended after the text read here
      const reading = fetch(absolute(`${serverBase(base)}${fresh.href.replace(/^.*?(\/api\/)/, "/api/")}`)).then((r) => r.text());
      this.pending = (this.pending ?? Promise.resolve()).then(() => reading).then((text) => {
        if (this.output === output) this.outputBox.textContent = text + this.outputBox.textContent;
      });
    } else if (fresh) {
      const follow = this.outputBox.scrollTop + this.outputBox.clientHeight >= this.outputBox.scrollHeight - 4;
      this.outputBox.append(fresh);
      if (follow) this.outputBox.scrollTop = this.outputBox.scrollHeight;
    }
  }

  showQueue(event) {
    this.queue = event.ahead === null && !event.waiting ? null : event;
    if (!this.lastEvent?.progress?.message && !this.lastEvent?.error) {
      this.messageText.textContent = this.waitingText(this.lastEvent);
    }
    this.dispatchEvent(new CustomEvent("job-queue", { detail: event }));
  }

  show(event) {
    this.showOutput(event);
    if (event.type === "output") {
      this.dispatchEvent(new CustomEvent("job-event", { detail: event }));
      return;
    }
    this.lastEvent = event;
    if (event.state !== "queued" && event.state !== "retrying") this.queue = null;
    const percent = event.progress?.percent ?? (event.state === "succeeded" ? 100 : null);
    if (percent !== null && percent !== undefined) {
      this.bar.value = percent;
      this.percentText.textContent = `${Math.round(percent)}%`;
    }
    this.stateText.textContent = event.state;
    this.setAttribute("state", event.state);
    const message = event.error ? `${event.error.type}: ${event.error.message}` : event.progress?.message;
    this.messageText.textContent = message || this.waitingText(event);
    this.dispatchEvent(new CustomEvent("job-event", { detail: event }));
  }

  // What a job that has not started says while it waits: why it is not in line (a limit, a
  // paused kind), or its place in line and about when it starts.
  waitingText(event) {
    if (!event || (event.state !== "queued" && event.state !== "retrying")) return "";
    const why = this.queue ? this.queue.waiting : event.waiting; // a snapshot says it first
    if (why) return `waiting: ${why}`;
    return this.queue ? queuePlaceText(this.queue) : "";
  }
}

/**
 * A `queue` event's place in line as words: "12 ahead · starts in about 40 s" ("next in line",
 * without an estimate when there is none).
 */
export function queuePlaceText({ ahead, eta_s: etaS }) {
  const place = ahead === 0 ? "next in line" : `${ahead} ahead`;
  if (etaS === null || etaS === undefined) return place;
  const seconds = Math.max(1, Math.round(etaS));
  const when = seconds < 90 ? `${seconds} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`;
  return `${place} · starts in about ${when}`;
}

if (typeof customElements !== "undefined" && !customElements.get("job-progress")) {
  customElements.define("job-progress", JobProgressElement);
}
