// The scheduled page: choose every job shown at once; cancelling or running the chosen ones asks
// first, saying how many; and the list kept current, as jobs start, end or get scheduled.
const choice = document.getElementById("scheduled-choice");
const boxes = () => [...document.querySelectorAll('input[name="job"][form="scheduled-choice"]')];
const base = document.documentElement.dataset.base || "";
const REFRESH_MS = 5000;

document.getElementById("choose-all")?.addEventListener("change", (change) => {
  for (const box of boxes()) box.checked = change.target.checked;
});

choice?.addEventListener("submit", (submit) => {
  const n = boxes().filter((box) => box.checked).length;
  const jobs = `${n} scheduled job${n === 1 ? "" : "s"}`;
  const question = submit.submitter?.id === "run-chosen" ? `Run ${jobs} now?` : `Cancel ${jobs}?`;
  if (n === 0 || !window.confirm(question)) submit.preventDefault();
});

// Rows of jobs no longer scheduled go; new ones come with a reload, unless the operator has
// chosen some rows (a reload would lose the choice).
async function refresh() {
  const kind = document.querySelector("[data-kind]")?.dataset.kind ?? new URLSearchParams(location.search).get("kind") ?? "";
  try {
    const response = await fetch(`${base}/api/scheduled${kind ? `?kind=${encodeURIComponent(kind)}` : ""}`, {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    const now = new Set((await response.json()).jobs.map((job) => job.id));
    const rows = [...document.querySelectorAll("#scheduled tr[data-job-id]")];
    for (const row of rows) if (!now.has(row.dataset.jobId)) row.remove();
    const shown = new Set(rows.map((row) => row.dataset.jobId));
    const added = [...now].some((id) => !shown.has(id));
    const emptied = rows.length > 0 && !document.querySelector("#scheduled tr[data-job-id]");
    if ((added || emptied) && !boxes().some((box) => box.checked)) location.reload();
  } catch {
    // The server is away for a moment: the next refresh tries again.
  }
}
setInterval(refresh, REFRESH_MS);
