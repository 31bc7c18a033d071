// Shared by the dashboard and the job page: connection status, job rows, timing, copy buttons.
import { State, formatDuration, timing, watchJob } from "./jobcast.js";

const CONNECTION_LABELS = {
  [State.CONNECTING]: "connecting…",
  [State.LIVE]: "live",
  [State.RECONNECTING]: "reconnecting…",
  [State.OFFLINE]: "server unreachable — retrying",
  [State.ENDED]: "job ended",
  [State.STOPPED]: "not live",
  [State.ERROR]: "unknown job",
};

export function showConnection(state) {
  const box = document.getElementById("connection");
  if (!box) return;
  box.dataset.state = state;
  box.querySelector(".label").textContent = CONNECTION_LABELS[state] || state;
}

/**
 * A timestamp as people read it (UTC), with the exact ISO time for machines; like the pages'.
 * `ago`: relative to now ("in 10 minutes"), the absolute time in the viewer's zone on hover.
 */
/** A job waiting for its time (`at`), as the server's rows say it. */
function waitsFor(event, at) {
  if (event.state === "retrying") {
    return ["retrying ", timeElement(at, true), ...(event.error ? [` after ${event.error.type}`] : [])];
  }
  return ["delayed, runs ", timeElement(at, true)];
}

/** Why a due job is held back and since when: "held: aggregate paused by ops, 4 min ago". */
export function heldText(event) {
  return [`held: ${event.waiting}`, ...(event.waiting_since ? [", ", timeElement(event.waiting_since, true)] : [])];
}

export function timeElement(iso, ago = false) {
  if (!iso) return document.createTextNode("—");
  const element = document.createElement("time");
  element.dateTime = iso;
  element.textContent = iso.replace("T", " ").replace("Z", " UTC");
  if (ago) {
    element.dataset.relative = "";
    showRelative(element);
  }
  return element;
}

// The steps server/pages/times.py says a distance in, in the viewer's language.
const UNITS = [[60, 1, "second"], [3600, 60, "minute"], [86400, 3600, "hour"], [Infinity, 86400, "day"]];
const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
// "long": the time with its zone.
const ABSOLUTE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });

/** `iso` from now, in words: "in 40 seconds", "3 minutes ago", "now". */
export function relativeText(iso, now = Date.now()) {
  const seconds = (Date.parse(iso) - now) / 1000;
  const [, size, unit] = UNITS.find(([limit]) => Math.abs(seconds) < limit);
  const n = Math.round(seconds / size);
  return n === 0 ? "now" : RELATIVE.format(n, unit);
}

function showRelative(element) {
  const text = relativeText(element.dateTime);
  if (element.textContent !== text) element.textContent = text;
  const absolute = ABSOLUTE.format(new Date(element.dateTime));
  if (element.title !== absolute) element.title = absolute;
}

/** Bring every relative time under `root` up to now (the pages do it every few seconds). */
export function showRelativeTimes(root = document) {
  for (const element of root.querySelectorAll("time[data-relative]")) showRelative(element);
}

export function setBadge(badge, state) {
  badge.dataset.state = state;
  badge.textContent = state;
}

// Writes only what changed: an unchanged attribute or text written again still costs the
// browser a style or layout pass, and the dashboard applies hundreds of events a second.
function setData(root, name, value) {
  if (value !== undefined && value !== null && root.dataset[name] !== String(value)) root.dataset[name] = value;
}

function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

/** Apply an event (or a snapshot) to a job row or the job page: bar, badge, message, times. */
export function applyToJob(root, event) {
  setData(root, "state", event.state);
  setData(root, "seq", event.seq ?? event.last_event_id);
  // startedAt: the first attempt's start (elapsed counts from it); attemptStartedAt: this one's.
  if (event.type === "started") {
    if (event.attempt === 1 || !root.dataset.startedAt) setData(root, "startedAt", event.ts);
    setData(root, "attemptStartedAt", event.ts);
    setData(root, "finishedAt", "");
  }
  if (event.started_at) {
    setData(root, "startedAt", event.first_started_at || event.started_at);
    setData(root, "attemptStartedAt", event.started_at);
  }
  if (event.finished_at || ["succeeded", "failed", "cancelled"].includes(event.type)) {
    setData(root, "finishedAt", event.finished_at || event.ts);
  }
  // A parent's count of parts (its snapshot and its rolled-up progress carry it).
  const parts = root.querySelector(".job-parts");
  if (parts && event.children) {
    parts.textContent = `${event.children.total} parts`;
    parts.hidden = false;
  }
  const badge = root.querySelector(".badge");
  if (badge && badge.dataset.state !== event.state) setBadge(badge, event.state);
  const progress = event.progress || {};
  let percent = progress.percent;
  if (event.state === "succeeded") percent = 100;
  if (percent !== null && percent !== undefined) {
    const bar = root.querySelector("progress");
    if (bar.value !== percent) {
      bar.value = percent;
      bar.textContent = `${percent}%`;
    }
    setData(root, "percent", percent);
    setText(root.querySelector(".job-percent, #percent"), `${Math.round(percent * 100) / 100}%`);
  }
  // A job waiting for its time says when it runs (delayed, or backing off between attempts); one
  // held back, why and since when.
  const when = root.querySelector(".job-when");
  if (when) {
    const waits = ["queued", "retrying"].includes(event.state);
    const held = waits && event.waiting ? event.waiting_since || "" : null;
    const at = waits && held === null ? event.next_attempt_at || event.run_at : null;
    const shown = held ?? at;
    if (when.hidden !== (shown === null || shown === undefined)) when.hidden = shown === null || shown === undefined;
    if (held !== null) {
      if (when.dataset.held !== event.waiting) {
        when.dataset.held = event.waiting;
        when.replaceChildren(...heldText(event));
      }
    } else if ((when.querySelector("time")?.dateTime || null) !== (at || null) || when.dataset.held) {
      delete when.dataset.held;
      when.replaceChildren(...(at ? waitsFor(event, at) : []));
    }
  }
  const message = root.querySelector(".job-message, #message");
  if (message) {
    if (event.error && event.state !== "succeeded") setText(message, `${event.error.type}: ${event.error.message}`);
    else if (progress.message) setText(message, progress.message);
  }
  updateTiming(root);
}

export function updateTiming(root) {
  const percent = Number(root.dataset.percent ?? root.querySelector("progress")?.value ?? 0);
  const { elapsed, eta, pace, timesOut } = timing({
    startedAt: root.dataset.startedAt,
    attemptStartedAt: root.dataset.attemptStartedAt,
    finishedAt: root.dataset.finishedAt,
    percent,
    timeoutS: Number(root.dataset.timeoutS) || 0,
  });
  const elapsedBox = root.querySelector(".job-elapsed, #elapsed");
  const etaBox = root.querySelector(".job-eta, #eta");
  if (elapsedBox) setText(elapsedBox, Number.isFinite(elapsed) ? formatDuration(elapsed) : "—");
  if (etaBox) {
    // The job page labels the box itself ("ETA"); a dashboard row does not.
    const labelled = etaBox.id === "eta";
    const known = Number.isFinite(eta) && eta > 0;
    let text = known ? `${labelled ? "" : "ETA "}${formatDuration(eta)}` : labelled ? "—" : "";
    if (known && timesOut) {
      // At this pace the attempt would outlast its time limit: it times out first.
      text = labelled
        ? `times out in ${formatDuration(eta)} (at this pace it needs ${formatDuration(pace)})`
        : `times out in ${formatDuration(eta)}`;
    }
    setText(etaBox, text);
  }
}

export function enableCopyButtons(root = document) {
  for (const button of root.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select and copy";
      }
      setTimeout(() => (button.textContent = "Copy"), 1500);
    });
  }
}

// A bulk job's progress and outcome, in words next to the buttons.
export function followBulk(job, box, base = document.documentElement.dataset.base || "") {
  const link = document.createElement("a");
  link.href = job.links.page;
  link.textContent = `bulk ${job.id.slice(0, 8)}`;
  const text = document.createElement("span");
  text.textContent = ": queued";
  box.replaceChildren(link, text);
  // The watcher stops by itself after the job's last event.
  watchJob(job.id, {
    base,
    onEvent: (event) => {
      const r = event.result;
      if (event.state === "succeeded" && r) {
        const skipped = r.skipped ? ` (${r.skipped} did not apply)` : "";
        text.textContent = `: ${r.action} done on ${r.done} of ${r.matched} jobs${skipped}.`;
      } else if (event.state === "failed") text.textContent = `: failed: ${event.error?.message}`;
      else if (event.progress?.message) text.textContent = `: ${event.progress.message}`;
      else text.textContent = `: ${event.state}`;
    },
  });
}
