// The dashboard's jobs table: rows kept live from the feed, updates applied once per animation
// frame, sorting by column, and the selection the bulk actions act on.
import { applyToJob, updateTiming } from "./ui.js";

const STATE_ORDER = ["running", "waiting_children", "retrying", "queued", "failed", "cancelled", "succeeded"];
const PRIORITY_ORDER = ["high", "default", "low"];

// Columns whose natural first click is ascending (A to Z, running first, high first); the others
// (created, progress) start with the largest.
const ASCENDING_FIRST = new Set(["kind", "state", "priority"]);

const KEYS = {
  created: (row) => row.dataset.createdAt || "",
  kind: (row) => row.dataset.kind || "",
  state: (row) => STATE_ORDER.indexOf(row.dataset.state),
  priority: (row) => PRIORITY_ORDER.indexOf(row.dataset.priority),
  percent: (row) => Number(row.dataset.percent || 0),
};

export class JobsTable {
  constructor(table, template, base) {
    this.table = table;
    this.body = table.tBodies[0];
    this.template = template;
    this.base = base;
    this.maxRows = Number(table.dataset.maxRows) || 50;
    // Only the first page takes new jobs: an older page stays the page it was asked for.
    this.liveInserts = table.dataset.liveInserts !== "false";
    this.rows = new Map([...this.body.rows].map((row) => [row.dataset.jobId, row]));
    this.sort = { key: "created", direction: -1 };
    // Events waiting for the next frame, per job: non-progress events in order, and only the
    // latest progress (a job sends at most its rate per second; a frame needs the last).
    this.pending = new Map();
    this.frame = 0;
    this.onChange = () => {};
    table.tHead.addEventListener("click", (click) => {
      const button = click.target.closest("[data-sort]");
      if (button) this.sortBy(button.dataset.sort);
    });
    for (const row of this.rows.values()) updateTiming(row);
  }

  matches(job) {
    const { filterState, filterKind, filterPriority, filterOwner, filterParts } = this.table.dataset;
    return (
      // Another job's parts show only when asked for (each parent's page lists its own).
      (filterParts === "true" || !job.parent) &&
      (!filterState || job.state === filterState) &&
      (!filterKind || job.kind === filterKind) &&
      (!filterPriority || job.priority === filterPriority) &&
      (!filterOwner || job.owner === filterOwner)
    );
  }

  compare(a, b) {
    const key = KEYS[this.sort.key];
    const x = key(a);
    const y = key(b);
    const order = x < y ? -1 : x > y ? 1 : 0;
    // Ties fall back to newest first, so equal rows keep a stable, meaningful order.
    return order * this.sort.direction || (KEYS.created(a) < KEYS.created(b) ? 1 : -1);
  }

  /** A row for this snapshot (from the feed, or a submission's answer) if it belongs here. */
  add(job) {
    if (this.rows.has(job.id) || !this.liveInserts || !this.matches(job)) return;
    const row = this.template.content.firstElementChild.cloneNode(true);
    row.dataset.jobId = job.id;
    row.dataset.kind = job.kind;
    row.dataset.priority = job.priority;
    row.dataset.timeoutS = job.timeout_s ?? JSON.parse(this.table.dataset.timeouts || "{}")[job.kind] ?? "";
    row.dataset.createdAt = job.created_at || "";
    const short = job.id.slice(0, 8);
    row.querySelector(".job-link").href = `${this.base}/jobs/${job.id}`;
    row.querySelector(".job-kind").textContent = job.kind;
    row.querySelector(".job-kind").title = job.kind;
    row.querySelector(".job-id").textContent = short;
    const priority = row.querySelector(".job-priority");
    priority.textContent = priority.dataset.priority = job.priority;
    row.querySelector("progress").setAttribute("aria-label", `Progress of ${job.kind} job ${short}`);
    const pick = row.querySelector(".job-pick input");
    if (pick) {
      pick.value = job.id;
      pick.setAttribute("aria-label", `Select ${job.kind} job ${short}`);
    }
    const created = row.querySelector(".job-created");
    if (job.created_at) {
      const time = document.createElement("time");
      time.dateTime = job.created_at;
      time.title = job.created_at.replace("T", " ").replace("Z", " UTC");
      time.textContent = job.created_at.slice(11, 19);
      created.replaceChildren(time);
    }
    applyToJob(row, job);
    const after = [...this.body.rows].find((other) => this.compare(row, other) < 0);
    this.body.insertBefore(row, after ?? null);
    this.rows.set(job.id, row);
    // Past the page size the oldest rows go (by creation, whatever the sort).
    while (this.rows.size > this.maxRows) {
      const oldest = [...this.rows.values()].reduce((a, b) => (KEYS.created(a) <= KEYS.created(b) ? a : b));
      this.rows.delete(oldest.dataset.jobId);
      oldest.remove();
    }
    this.onChange();
  }

  has(id) {
    return this.rows.has(id);
  }

  get(id) {
    return this.rows.get(id);
  }

  /** Queue an event for its row; rows change once per animation frame, however many arrive. */
  update(event) {
    if (!this.rows.has(event.job_id)) return;
    let queued = this.pending.get(event.job_id);
    if (!queued) this.pending.set(event.job_id, (queued = []));
    const last = queued[queued.length - 1];
    if (last?.type === "progress" && event.type === "progress") queued[queued.length - 1] = event;
    else queued.push(event);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    for (const [id, events] of this.pending) {
      const row = this.rows.get(id);
      if (row) for (const event of events) applyToJob(row, event);
    }
    this.pending.clear();
  }

  tick() {
    for (const row of this.rows.values()) if (row.dataset.state === "running") updateTiming(row);
  }

  sortBy(key) {
    this.sort = {
      key,
      // A second click on the same column turns it around; a new column starts at its natural end.
      direction: this.sort.key === key ? -this.sort.direction : ASCENDING_FIRST.has(key) ? 1 : -1,
    };
    for (const th of this.table.tHead.rows[0].cells) {
      const button = th.querySelector("[data-sort]");
      if (!button) continue;
      const active = button.dataset.sort === key;
      th.setAttribute("aria-sort", active ? (this.sort.direction > 0 ? "ascending" : "descending") : "none");
    }
    const sorted = [...this.body.rows].sort((a, b) => this.compare(a, b));
    this.body.append(...sorted);
  }

  /** The ids of the selected rows. */
  selected() {
    return [...this.body.querySelectorAll(".job-pick input:checked")].map((box) => box.value);
  }
}
