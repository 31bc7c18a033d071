// The Failures page: retry a group of failed jobs as one bulk job, asked first with its count, its
// progress and outcome shown in place.
import { readJson } from "./jobcast.js";
import { followBulk } from "./ui.js";

const base = document.documentElement.dataset.base || "";

document.getElementById("failure-groups")?.addEventListener("click", async (click) => {
  const button = click.target.closest(".retry-group");
  if (!button) return;
  const row = button.closest("tr");
  const ids = button.dataset.ids.split(",").filter(Boolean);
  const error = row.querySelector(".error-text").textContent;
  if (!window.confirm(`Retry ${ids.length} failed job${ids.length === 1 ? "" : "s"} (${error})?`)) return;
  const status = row.querySelector(".group-status");
  button.disabled = true;
  status.textContent = "Starting…";
  try {
    const response = await fetch(`${base}/api/bulk`, {
      method: "POST",
      body: JSON.stringify({ action: "retry", ids }),
      headers: { "Content-Type": "application/json", Accept: "application/json" },
    });
    followBulk(await readJson(response), status, base);
  } catch (failure) {
    status.textContent = failure.problem?.detail || "Could not reach the server.";
    button.disabled = false;
  }
});
