// A parent's page: each child's bar kept live from the feed (one connection, whatever the number
// of children), and the counts line from the parent's own rolled-up progress events. Children
// made after the page was served bring the section (or its missing rows) from the server.
import { TERMINAL, watchFeed } from "./jobcast.js";
import { applyToJob, updateTiming } from "./ui.js";

const panel = document.getElementById("children");
// A page opened through a shared link has no feed to read: its parts stay as they were served.
const live = panel && !panel.dataset.shared;
const PAGE = 200;
let rows = new Map();
let feed = null;
let tick = null;
let refreshing = null;

function collect() {
  rows = new Map([...panel.querySelectorAll("tr.job")].map((row) => [row.dataset.jobId, row]));
}

function apply(event) {
  const row = rows.get(event.job_id ?? event.id);
  if (!row) return;
  applyToJob(row, event);
  const message = row.querySelector(".job-message");
  if (event.error && event.state !== "succeeded") message.textContent = `${event.error.type}: ${event.error.message}`;
  else if (event.progress?.message) message.textContent = event.progress.message;
}

function follow() {
  if (feed || rows.size === 0) return;
  const base = document.documentElement.dataset.base || "";
  feed = watchFeed({ base, onSnapshot: (snapshot) => snapshot.jobs.forEach(apply), onEvent: apply });
  tick = setInterval(() => {
    for (const row of rows.values()) updateTiming(row);
    // Every part has ended: nothing more will change here.
    if ([...rows.values()].every((row) => TERMINAL.has(row.dataset.state))) {
      clearInterval(tick);
      feed.stop();
    }
  }, 1000);
}

// The section as the server renders it now (this page's own URL: the same page of parts).
async function refresh() {
  const response = await fetch(location.href, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("children");
  if (!fresh) return;
  panel.replaceChildren(...fresh.childNodes);
  panel.hidden = fresh.hidden;
  collect();
  follow();
}

export function showCounts(counts) {
  if (!live || !counts) return;
  if (rows.size < Math.min(counts.total, PAGE) && !refreshing) {
    refreshing = refresh().finally(() => setTimeout(() => (refreshing = null), 1000));
  }
  const line = document.getElementById("children-counts");
  if (!line) return;
  const { total, succeeded, failed, cancelled, running, waiting } = counts;
  line.textContent = `${total} in all: ${succeeded} succeeded, ${failed} failed, ${cancelled} cancelled, ${running} running, ${waiting} waiting.`;
}

if (live) {
  collect();
  follow();
}
