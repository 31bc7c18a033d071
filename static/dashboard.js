// The dashboard: one feed stream for every job on the page, the submit form, counters, retry.
import { readJson, retryJob, watchFeed } from "./jobcast.js";
import { JobsTable } from "./jobs-table.js";
import { applyToJob, enableCopyButtons, followBulk, showConnection, timeElement, updateTiming } from "./ui.js";

// Where jobcast is mounted ("" at the root, "/jobs" inside another app): every URL starts here.
const base = document.documentElement.dataset.base || "";
// The form shows the chosen kind's fields only from here on (without JS, every kind's show).
document.documentElement.classList.add("js");

const table = new JobsTable(document.querySelector(".jobs-table"), document.getElementById("job-row"), base);
const form = document.getElementById("submit-form");
table.onChange = () => {
  document.querySelector(".jobs-panel .empty").hidden = true;
};

async function fetchJob(id) {
  return readJson(await fetch(`${base}/api/jobs/${id}`));
}

// Counters: refreshed after state changes (at most twice a second) and every 5 s for workers.
let statsTimer = null;
function refreshStatsSoon() {
  // Counters are for operators: in owner mode only an admin's dashboard has them.
  if (statsTimer || !document.getElementById("stats")) return;
  statsTimer = setTimeout(async () => {
    statsTimer = null;
    try {
      const stats = await readJson(await fetch(`${base}/api/stats`));
      for (const box of document.querySelectorAll("[data-stat]")) {
        const value = box.dataset.stat.split(".").reduce((found, key) => found?.[key], stats);
        // A count per priority (`delayed`) shows as its sum.
        const shown = value !== null && typeof value === "object" ? Object.values(value).reduce((a, b) => a + b, 0) : value;
        box.textContent = shown ?? "—";
      }
      showServing(stats.serving);
      showPaused(stats.paused);
      showWaiting(stats.waiting_by_kind);
    } catch {
      // The connection indicator already says when the server is away.
    }
  }, 500);
}
setInterval(refreshStatsSoon, 5000);

// Which worker serves which kinds (a kind no running worker serves is refused at submission).
function showServing(serving) {
  const list = document.getElementById("serving");
  if (!list || !serving) return;
  const items = serving.map(({ worker, kinds }) => {
    const item = document.createElement("li");
    const name = document.createElement("code");
    name.textContent = worker;
    item.append(name, ` serves ${kinds.join(", ")}`);
    return item;
  });
  if (!items.length) {
    const none = document.createElement("li");
    none.className = "none";
    none.textContent = "No worker is running: submitted jobs wait until one starts.";
    items.push(none);
  }
  list.replaceChildren(...items);
}

// Finished jobs over time (GET /api/finished), redrawn every few seconds: bars per bucket, the
// failed part stacked on top, with a summary and a table as its text alternative.
const SVG = "http://www.w3.org/2000/svg";
const spanSelect = document.getElementById("finished-span");
const kindFilter = document.getElementById("finished-kind");
async function drawFinished() {
  const svg = document.getElementById("finished-svg");
  if (!svg) return;
  let history;
  try {
    history = await readJson(await fetch(`${base}/api/finished?span=${spanSelect.value}`));
  } catch {
    return;
  }
  const rows = history.buckets.map((bucket) => {
    const sums = { succeeded: 0, failed: 0, cancelled: 0 };
    const kind = kindFilter.value;
    for (const states of kind ? [bucket.counts[kind] ?? {}] : Object.values(bucket.counts)) {
      for (const [state, n] of Object.entries(states)) sums[state] = (sums[state] ?? 0) + n;
    }
    return { start: bucket.start, ...sums, total: sums.succeeded + sums.failed + sums.cancelled };
  });
  const most = Math.max(1, ...rows.map((r) => r.total));
  const width = 600 / rows.length;
  const bars = [];
  // The jobs a bar stands for: the dashboard filtered to its state and its bucket's time.
  const bucketMs = (history.span === "hour" ? 60 : 3600) * 1000;
  const jobsOf = (row, state) => {
    const until = new Date(Date.parse(row.start) + bucketMs).toISOString();
    const query = new URLSearchParams({ state, since: row.start, until });
    if (kindFilter.value) query.set("kind", kindFilter.value);
    return `${base}/?${query}`;
  };
  rows.forEach((row, i) => {
    let top = 100;
    for (const state of ["succeeded", "failed", "cancelled"]) {
      const height = (row[state] / most) * 100;
      if (height <= 0) continue;
      top -= height;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", state);
      rect.setAttribute("x", String(i * width + width * 0.1));
      rect.setAttribute("width", String(width * 0.8));
      rect.setAttribute("y", String(top));
      rect.setAttribute("height", String(height));
      rect.dataset.href = jobsOf(row, state);
      bars.push(rect);
    }
  });
  svg.replaceChildren(...bars);
  document.getElementById("finished-max").textContent = `${most} per ${history.span === "hour" ? "min" : "hour"}`;
  const first = rows[0]?.start;
  document.getElementById("finished-from").textContent = first ? new Date(first).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  const total = rows.reduce((sum, r) => sum + r.total, 0);
  const failed = rows.reduce((sum, r) => sum + r.failed, 0);
  const cancelled = rows.reduce((sum, r) => sum + r.cancelled, 0);
  const unit = history.span === "hour" ? "minute" : "hour";
  const of = kindFilter.value ? ` ${kindFilter.value} jobs` : "";
  document.getElementById("finished-summary").textContent =
    `${total}${of} finished, ${failed} failed and ${cancelled} cancelled over the last ${history.span}; at most ${most === 1 && !total ? 0 : most} in one ${unit}.`;
  const clock = (iso) => iso.slice(history.span === "hour" ? 11 : 5, 16).replace("T", " ");
  document.getElementById("finished-table").replaceChildren(
    ...rows.filter((r) => r.total).map((r) => {
      const tr = document.createElement("tr");
      const from = document.createElement("td");
      from.textContent = clock(r.start);
      tr.append(from);
      for (const state of ["succeeded", "failed", "cancelled"]) {
        // Each count opens those jobs (the bars do the same for a pointer).
        const td = document.createElement("td");
        if (r[state]) {
          const link = document.createElement("a");
          link.href = jobsOf(r, state);
          link.textContent = String(r[state]);
          td.append(link);
        } else td.textContent = "0";
        tr.append(td);
      }
      return tr;
    }),
  );
}
if (spanSelect) {
  document.getElementById("finished-svg").addEventListener("click", (click) => {
    const href = click.target.dataset?.href;
    if (href) location.href = href;
  });
  spanSelect.addEventListener("change", drawFinished);
  kindFilter.addEventListener("change", drawFinished);
  drawFinished();
  setInterval(drawFinished, 5000);
}

// Each kind's intake, paused or running (POST /api/kinds/{kind}/pause and /resume): a paused
// kind's jobs wait, held back, until it resumes; running ones finish.
function showPaused(paused) {
  for (const item of document.querySelectorAll("#kind-intake [data-kind]")) {
    showIntake(item, paused?.[item.dataset.kind]);
  }
}

// Each kind's waiting jobs, in all and per priority.
function showWaiting(byKind) {
  for (const item of document.querySelectorAll("#kind-intake [data-kind]")) {
    const counts = byKind?.[item.dataset.kind] ?? {};
    const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
    const parts = Object.keys(counts).sort().map((priority) => `${priority} ${counts[priority]}`);
    item.querySelector(".kind-waiting").textContent = `${total} waiting${parts.length ? ` (${parts.join(", ")})` : ""}`;
  }
}

function showIntake(item, paused) {
  item.dataset.paused = String(Boolean(paused));
  const state = item.querySelector(".intake-state");
  if (!paused) state.textContent = "running";
  else {
    // What the pause holds, one click away: the kind's waiting jobs, each saying why.
    const held = document.createElement("a");
    held.href = `${base}/?${new URLSearchParams({ kind: item.dataset.kind, state: "queued" })}`;
    held.textContent = `${paused.parked} held back`;
    state.replaceChildren("paused ", timeElement(paused.since, true), paused.by ? ` by ${paused.by}` : "", ": ", held);
  }
  item.querySelector(".intake-toggle").textContent = `${paused ? "Resume" : "Pause"} ${item.dataset.kind}`;
  // The form a page without JS posts, kept in step for a reload.
  const form = item.querySelector(".intake-form");
  if (form) form.action = form.action.replace(/\/(pause|resume)(\?|$)/, `/${paused ? "resume" : "pause"}$2`);
}

document.getElementById("kind-intake")?.addEventListener("click", async (click) => {
  const button = click.target.closest(".intake-toggle");
  if (!button) return;
  click.preventDefault(); // the form is for a page without JS
  const item = button.closest("[data-kind]");
  const action = item.dataset.paused === "true" ? "resume" : "pause";
  const pausing = `Pause ${item.dataset.kind}? Its jobs start no more (running ones finish) until it resumes.`;
  if (action === "pause" && !window.confirm(pausing)) return;
  button.disabled = true;
  try {
    const url = `${base}/api/kinds/${encodeURIComponent(item.dataset.kind)}/${action}`;
    const answer = await readJson(await fetch(url, { method: "POST", headers: { Accept: "application/json" } }));
    showIntake(item, answer.paused ? answer : null);
  } catch (error) {
    item.querySelector(".intake-state").textContent = error.problem?.detail || "could not reach the server";
  } finally {
    button.disabled = false;
    refreshStatsSoon();
  }
});

function addFailed(job) {
  const failed = document.getElementById("failed");
  if (failed.querySelector(`[data-job-id="${job.id}"]`)) return;
  failed.querySelector(".empty")?.remove();
  const item = document.createElement("li");
  item.dataset.jobId = job.id;
  const link = document.createElement("a");
  link.href = `${base}/jobs/${job.id}`;
  link.textContent = `${job.kind} ${job.id.slice(0, 8)}`;
  const error = document.createElement("span");
  error.className = "error-text";
  error.textContent = job.error ? `${job.error.type}: ${job.error.message}` : "";
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.retry = job.id;
  button.textContent = "Retry";
  item.append(link, " ", error, " ", button);
  failed.prepend(item);
}

// A new job's row needs its snapshot (kind, priority); events that arrive while it is fetched are
// kept (the latest per job, and its `started`, which alone says when it started) and applied
// after, so a row never stays behind its job. The row may have been built meanwhile from the
// submission's answer (a queued job): the snapshot then updates it.
// A fetch that fails (the server going down) is tried again on the job's next state change.
const fetching = new Map();
const unfetched = new Set();
async function addFetchedRow(id) {
  fetching.set(id, {});
  try {
    const job = await fetchJob(id);
    unfetched.delete(id);
    table.add(job);
    const { latest, started } = fetching.get(id);
    const row = table.get(id);
    if (!row) return;
    if (job.last_event_id > Number(row.dataset.seq ?? -1)) applyToJob(row, job);
    // Only its time: the row may be further on already.
    if (started && started.seq > job.last_event_id && !row.dataset.startedAt) row.dataset.startedAt = started.ts;
    if (latest && latest.seq > Number(row.dataset.seq ?? -1)) applyToJob(row, latest);
    updateTiming(row);
  } catch {
    if (unfetched.size < 1000) unfetched.add(id);
  } finally {
    fetching.delete(id);
  }
}

watchFeed({
  base,
  onState: showConnection,
  onSnapshot: (snapshot) => {
    // Oldest first, since each new row goes on top: jobs we missed get their rows too.
    for (const job of [...snapshot.jobs].reverse()) {
      const row = table.get(job.id);
      if (row) applyToJob(row, job);
      else table.add(job);
    }
    refreshStatsSoon();
  },
  onEvent: async (event) => {
    const row = table.get(event.job_id);
    if (row) table.update(event);
    else if (fetching.has(event.job_id)) {
      const kept = fetching.get(event.job_id);
      kept.latest = event;
      if (event.type === "started") kept.started = event;
    }
    if (event.type === "progress") return;
    refreshStatsSoon();
    const missed = unfetched.has(event.job_id);
    if (!row && !fetching.has(event.job_id) && (event.type === "queued" || missed)) {
      await addFetchedRow(event.job_id);
    }
    if (event.type === "failed") {
      try {
        addFailed(await fetchJob(event.job_id));
      } catch {
        // The failed list is server-rendered too; the next page load shows it.
      }
    }
  },
});

setInterval(() => table.tick(), 1000);

// The submit form (absent where the deployment takes jobs from API keys and operators only).
if (form) setUpSubmitForm(form);

function setUpSubmitForm(form) {
  // On a phone the jobs come first and the form starts folded (one tap opens it).
  if (window.matchMedia("(max-width: 56rem)").matches && !form.querySelector(".form-problem")) {
    document.getElementById("submit-details").open = false;
  }

  // The form: the kind picks its fieldset; the server validates and its messages go next to fields.
  const kindSelect = document.getElementById("kind");
  function showKind() {
    for (const fieldset of form.querySelectorAll(".kind-params")) {
      const active = fieldset.dataset.kind === kindSelect.value;
      fieldset.hidden = !active;
      fieldset.disabled = !active;
      fieldset.toggleAttribute("data-inactive", !active);
    }
  }
  kindSelect.addEventListener("change", showKind);
  showKind();

  function clearErrors() {
    for (const box of form.querySelectorAll(".field-error")) box.textContent = "";
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    form.querySelector(".form-problem")?.remove();
  }

  function showErrors(problem) {
    const active = form.querySelector(`.kind-params[data-kind="${kindSelect.value}"]`);
    let shown = false;
    for (const error of problem.errors || []) {
      const box = active.querySelector(`[data-error-for="${error.field}"]`) || form.querySelector(`[data-error-for="${error.field}"]`);
      if (!box) continue;
      box.textContent = error.message;
      box.closest(".field")?.querySelector("input, select")?.setAttribute("aria-invalid", "true");
      shown = true;
    }
    if (!shown) status.textContent = problem.detail || "The job was not submitted.";
    form.querySelector("[aria-invalid]")?.focus();
  }

  const status = document.getElementById("submit-status");
  form.addEventListener("submit", async (submitEvent) => {
    submitEvent.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    clearErrors();
    status.textContent = "Submitting…";
    try {
      // form.action carries the page's CSRF token (owner mode), for browsers that send no Origin.
      const response = await fetch(form.action, { method: "POST", body: new FormData(form), headers: { Accept: "application/json" } });
      const job = await readJson(response);
      status.innerHTML = "";
      const link = document.createElement("a");
      link.href = job.links.page;
      link.textContent = `Submitted ${job.kind} ${job.id.slice(0, 8)}`;
      status.append(link);
      table.add(job);
    } catch (error) {
      status.textContent = "";
      if (error.problem) showErrors(error.problem);
      else status.textContent = "Could not reach the server.";
    } finally {
      button.disabled = false;
    }
  });
}

// One-click retry from the failed list.
document.getElementById("failed").addEventListener("click", async (click) => {
  const button = click.target.closest("[data-retry]");
  if (!button) return;
  click.preventDefault();
  button.disabled = true;
  try {
    const job = await retryJob(button.dataset.retry, { base });
    const link = document.createElement("a");
    link.href = job.links.page;
    link.textContent = "retried";
    (button.closest("form") || button).replaceWith(link);
    table.add(job);
  } catch (error) {
    button.disabled = false;
    button.textContent = error.problem?.detail || "Retry failed";
  }
});

enableCopyButtons();

// Bulk actions: on the selected rows, or (none selected) on every job the filter matches. Each is
// a job of the `bulk` kind: confirmed first, then followed here until it ends.
const bulkForm = document.getElementById("bulk");
if (bulkForm) {
  const scope = document.getElementById("bulk-scope");
  const bulkStatus = document.getElementById("bulk-status");
  const everyMatch = scope.textContent;
  const showScope = () => {
    const n = table.selected().length;
    scope.textContent = n ? `${n} selected: actions apply to these jobs.` : everyMatch;
  };
  document.getElementById("pick-all").addEventListener("change", (change) => {
    for (const box of document.querySelectorAll("#jobs .job-pick input")) box.checked = change.target.checked;
    showScope();
  });
  document.getElementById("jobs").addEventListener("change", (change) => {
    if (change.target.closest(".job-pick")) showScope();
  });
  const LABELS = { retry: "Retry the failed and cancelled jobs", cancel: "Cancel the waiting and running jobs", delete: "Delete the finished jobs, with their files," };
  bulkForm.addEventListener("click", async (click) => {
    const button = click.target.closest("[data-bulk]");
    if (!button) return;
    const action = button.dataset.bulk;
    const ids = table.selected();
    const filter = Object.fromEntries(
      Object.entries(JSON.parse(bulkForm.dataset.filter)).filter(([key, value]) => value && ["state", "kind", "priority", "owner", "since", "until", "text", "delayed", "group"].includes(key)),
    );
    const among = ids.length ? `among the ${ids.length} selected` : `among every job the filter matches${Object.keys(filter).length ? ` (${Object.entries(filter).map(([k, v]) => `${k} ${v}`).join(", ")})` : ""}`;
    const body = ids.length ? { action, ids } : { action, filter };
    button.disabled = true;
    try {
      // How many it will go through, asked first: the confirmation says it.
      bulkStatus.textContent = "Counting…";
      const counted = await readJson(
        await fetch(`${base}/api/bulk/count`, {
          method: "POST",
          body: JSON.stringify(body),
          headers: { "Content-Type": "application/json", Accept: "application/json" },
        }),
      );
      const many = counted.matches === 1 ? "1 job" : `${counted.matches} jobs`;
      const capped = counted.matches >= counted.limit ? ` (at most ${counted.limit} in one action)` : "";
      bulkStatus.textContent = "";
      if (!window.confirm(`${LABELS[action]} ${among}? It will go through ${many}${capped}.`)) return;
      bulkStatus.textContent = "Starting…";
      const response = await fetch(`${base}/api/bulk`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "Content-Type": "application/json", Accept: "application/json" },
      });
      const job = await readJson(response);
      followBulk(job, bulkStatus);
      for (const box of document.querySelectorAll(".job-pick input")) box.checked = false;
      showScope();
    } catch (error) {
      bulkStatus.textContent = error.problem?.detail || "Could not reach the server.";
    } finally {
      button.disabled = false;
    }
  });
}

