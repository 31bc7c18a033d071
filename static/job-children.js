// A parent's page: each child's bar kept live from the feed (one connection, whatever the number
// of children), and the counts line from the parent's own rolled-up progress events.
import { TERMINAL, watchFeed } from "./jobcast.js";
import { applyToJob, updateTiming } from "./ui.js";

const panel = document.getElementById("children");

export function showCounts(counts) {
  if (!panel || !counts) return;
  const { total, succeeded, failed, cancelled, running, waiting } = counts;
  document.getElementById("children-counts").textContent =
    `${total} in all: ${succeeded} succeeded, ${failed} failed, ${cancelled} cancelled, ${running} running, ${waiting} waiting.`;
}

// A page opened through a shared link has no feed to read: its parts stay as they were served.
if (panel && !panel.dataset.shared) {
  const rows = new Map([...panel.querySelectorAll("tr.job")].map((row) => [row.dataset.jobId, row]));
  const apply = (event) => {
    const row = rows.get(event.job_id ?? event.id);
    if (!row) return;
    applyToJob(row, event);
    const message = row.querySelector(".job-message");
    if (event.error && event.state !== "succeeded") message.textContent = `${event.error.type}: ${event.error.message}`;
    else if (event.progress?.message) message.textContent = event.progress.message;
  };
  const base = document.documentElement.dataset.base || "";
  const feed = watchFeed({
    base,
    onSnapshot: (snapshot) => snapshot.jobs.forEach(apply),
    onEvent: apply,
  });
  const tick = setInterval(() => {
    for (const row of rows.values()) updateTiming(row);
    // Every part has ended: nothing more will change here.
    if ([...rows.values()].every((row) => TERMINAL.has(row.dataset.state))) {
      clearInterval(tick);
      feed.stop();
    }
  }, 1000);
}
