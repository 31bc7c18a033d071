// The workers page: the list from GET /api/workers every few seconds, and the running jobs' bars
// live from the feed in between.
import { watchFeed } from "./jobcast.js";
import { applyToJob, showConnection, timeElement } from "./ui.js";

const base = document.documentElement.dataset.base || "";
const box = document.getElementById("workers");
const REFRESH_MS = 3000;

function jobItem(job) {
  const item = document.createElement("li");
  item.className = "job";
  item.dataset.jobId = job.id;
  item.dataset.state = job.state ?? "";
  const link = document.createElement("a");
  link.className = "job-link";
  link.href = `${base}/jobs/${job.id}`;
  const kind = document.createElement("span");
  kind.className = "job-kind";
  kind.textContent = job.kind ?? "";
  const id = document.createElement("code");
  id.className = "job-id";
  id.textContent = job.id.slice(0, 8);
  link.append(kind, " ", id);
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = job.progress?.percent ?? 0;
  bar.setAttribute("aria-label", `Progress of ${job.kind} job ${job.id.slice(0, 8)}`);
  const percent = document.createElement("span");
  percent.className = "job-percent";
  percent.textContent = `${Math.round(job.progress?.percent ?? 0)}%`;
  const started = document.createElement("span");
  started.className = "job-started";
  started.append("since ", timeElement(job.started_at, true));
  item.append(link, " ", bar, " ", percent, " ", started);
  return item;
}

function show(workers) {
  for (const worker of workers) {
    const section = box.querySelector(`[data-worker="${CSS.escape(worker.name)}"]`);
    if (!section) {
      // A worker not on the list yet: the server renders its whole panel. A worker's own page
      // shows that worker alone.
      if (box.dataset.all === "true") {
        location.reload();
        return;
      }
      continue;
    }
    section.dataset.gone = String(worker.gone);
    const badge = section.querySelector(".badge");
    badge.textContent = worker.gone ? "gone" : "live";
    badge.dataset.state = worker.gone ? "failed" : "running";
    section.querySelector(".heartbeat").textContent = `${worker.heartbeat_age_s} s ago`;
    const h = worker.last_hour ?? {};
    section.querySelector(".last-hour").textContent =
      `${h.succeeded ?? 0} succeeded, ${h.failed ?? 0} failed, ${h.cancelled ?? 0} cancelled`;
    const list = section.querySelector(".jobs");
    const items = worker.jobs.map((job) => list.querySelector(`[data-job-id="${job.id}"]`) ?? jobItem(job));
    if (!items.length) {
      const none = document.createElement("li");
      none.className = "none";
      none.textContent = "Idle.";
      items.push(none);
    }
    list.replaceChildren(...items);
  }
}

async function refresh() {
  try {
    const response = await fetch(`${base}/api/workers`, { headers: { Accept: "application/json" } });
    if (response.ok) show((await response.json()).workers);
  } catch {
    // The connection indicator says when the server is away.
  }
}
setInterval(refresh, REFRESH_MS);

watchFeed({
  base,
  onState: showConnection,
  onEvent: (event) => {
    const item = box.querySelector(`[data-job-id="${event.job_id}"]`);
    if (item) applyToJob(item, event);
  },
});
