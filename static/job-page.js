// The job page: the job's own stream (resuming after the events the server rendered).
import { TERMINAL, cancelJob, formatDuration, queuePlaceText, retryJob, watchJob } from "./jobcast.js";
import { showCounts } from "./job-children.js";
import { applyToJob, enableCopyButtons, heldText, showConnection, timeElement, updateTiming } from "./ui.js";

const base = document.documentElement.dataset.base || "";

const page = document.getElementById("job");
const jobId = page.dataset.jobId;
const log = document.getElementById("log");
const cancelButton = document.getElementById("cancel");
const nextAttempt = document.getElementById("next-attempt");
const retryButton = document.getElementById("retry");
const actionStatus = document.getElementById("action-status");

// The log keeps every state change but only the newest progress rows: a long job must not grow
// the page without bound.
const MAX_PROGRESS_ROWS = 1000;
let progressRows = log.querySelectorAll("tr[data-type=progress]").length;

// The log follows its live end while the reader is there; scrolled up, it stays put.
const logBox = log.closest(".table-wrap");
const atEnd = () => logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 8;
logBox.scrollTop = logBox.scrollHeight;

function logRow(event) {
  // A page of earlier events stays as it is; the latest page follows the job.
  if (log.dataset.live === "false") return;
  const following = atEnd();
  const row = document.createElement("tr");
  row.dataset.seq = event.seq;
  let detail = "";
  if (event.error) detail = `${event.error.type}: ${event.error.message}`;
  else if (event.progress?.message) detail = event.progress.message;
  row.dataset.type = event.type;
  for (const content of [event.seq, event.type, timeElement(event.ts), event.attempt ?? "", detail]) {
    const cell = document.createElement("td");
    cell.append(content);
    row.append(cell);
  }
  log.append(row);
  if (event.type === "progress" && ++progressRows > MAX_PROGRESS_ROWS) {
    log.querySelector("tr[data-type=progress]")?.remove();
    progressRows -= 1;
  }
  if (following) logBox.scrollTop = logBox.scrollHeight;
}

function showEnd(event) {
  showNextAttempt(null);
  // (A page opened through a shared link has neither: it watches, it does not act.)
  if (cancelButton) cancelButton.disabled = true;
  if (retryButton) retryButton.disabled = !["failed", "cancelled"].includes(event.state);
  // "Cancel requested" and the like: the job has ended, the ending says the rest.
  actionStatus.textContent = "";
  if (event.state === "cancelled") {
    // A cancel someone asked for is an outcome, not an error.
    document.getElementById("error").hidden = true;
    document.getElementById("cancelled-note").hidden = false;
  } else if (event.error && event.state !== "succeeded") {
    document.getElementById("error-type").textContent = event.error.type;
    document.getElementById("error-message").textContent = event.error.message;
    document.getElementById("error").hidden = false;
  }
  if (event.state === "succeeded") {
    document.getElementById("result").hidden = false;
    document.getElementById("result-json").textContent = JSON.stringify(event.result, null, 2);
    const file = event.result?.file;
    // Through a shared link the page watches only: a token opens no result file.
    if (file && !page.dataset.token) {
      document.getElementById("result-file").hidden = false;
      document.getElementById("download").textContent = `Download ${file.name}`;
      const main = document.getElementById("download-main");
      main.querySelector("a").textContent = `Download ${file.name}`;
      main.hidden = false;
    }
  }
  document.getElementById("finished-at").replaceChildren(timeElement(event.finished_at || event.ts, true));
  notifyEnd(event);
}

// The job's state in plain words, as server/pages/plain_state.py writes it, with the time left.
function plainState(event) {
  const percent = event.progress?.percent ?? 0;
  switch (event.state) {
    case "queued":
      return `Waiting to start${event.waiting ? `: ${event.waiting}` : ""}`;
    case "retrying":
      return "Something went wrong; trying again shortly";
    case "running": {
      const eta = document.getElementById("eta").textContent;
      let left = eta && eta !== "—" ? (eta.startsWith("times out") ? `; ${eta}` : `, about ${eta} left`) : "";
      if (eta === "0s") left = ", almost done";
      return `Running: ${Math.round(percent * 100) / 100}% done${left}`;
    }
    case "waiting_children":
      return `Running in parts: ${Math.round(percent * 100) / 100}% done`;
    case "succeeded":
      return "Done";
    case "failed":
      return event.error ? `Failed: ${event.error.message}` : "Failed";
    default:
      return "Cancelled";
  }
}

// "Notify me when it ends": the browser asks for permission only after this click.
const notifyButton = document.getElementById("notify");
let notifyWanted = false;
if ("Notification" in window && !TERMINAL.has(page.dataset.state)) {
  notifyButton.hidden = false;
  notifyButton.addEventListener("click", async () => {
    notifyWanted = (await Notification.requestPermission()) === "granted";
    notifyButton.textContent = notifyWanted ? "You will be notified" : "Notifications are blocked";
    notifyButton.disabled = true;
  });
}
function notifyEnd(event) {
  notifyButton.hidden = true;
  if (!notifyWanted) return;
  const title = document.querySelector(".job-title h1").textContent.trim();
  new Notification(`${title}: ${event.state}`, { body: plainState(event) });
}

// The attempts table follows the events: a `started` opens a row, the event that ends the attempt
// (retrying, or the terminal one) fills it in.
const attemptsBody = document.getElementById("attempts");
function showAttempt(event) {
  if (event.type === "started") {
    const row = document.createElement("tr");
    row.dataset.attempt = event.attempt;
    const name = event.worker?.split("#")[0];
    const code = document.createElement("code");
    code.textContent = name ?? "—";
    let worker = code;
    if (name) {
      worker = document.createElement("a");
      worker.href = `${base}/workers/${encodeURIComponent(name)}`;
      worker.append(code);
    }
    const cells = [event.attempt, worker, timeElement(event.ts), "", "running", ""];
    for (const [i, content] of cells.entries()) {
      const cell = document.createElement("td");
      cell.className = ["", "worker", "", "ended", "outcome", "attempt-error"][i];
      cell.append(content);
      row.append(cell);
    }
    attemptsBody.append(row);
    return;
  }
  const row = attemptsBody.querySelector(`tr[data-attempt="${event.attempt}"]`);
  if (!row || !["retrying", ...TERMINAL].includes(event.type) || row.querySelector(".outcome").textContent !== "running") return;
  row.querySelector(".ended").replaceChildren(timeElement(event.ts));
  row.querySelector(".outcome").textContent = event.type;
  if (event.error) row.querySelector(".attempt-error").textContent = `${event.error.type}: ${event.error.message}`;
}

// When a job backing off runs again, as people read it: "at 17:42:16 UTC, in 4s", counting down.
function showNextAttempt(at) {
  nextAttempt.dataset.at = at || "";
  nextAttempt.hidden = !at;
  if (at) {
    const time = document.createElement("time");
    time.dateTime = at;
    time.textContent = at.slice(11, 19);
    nextAttempt.querySelector(".next-at").replaceChildren("Next attempt at ", time, " UTC");
  }
  countDown();
}

function countDown() {
  const at = nextAttempt.dataset.at;
  const left = at ? (Date.parse(at) - Date.now()) / 1000 : NaN;
  nextAttempt.querySelector(".next-in").textContent = left >= 1 ? `, in ${formatDuration(left)}` : at ? ", any moment now" : "";
}

// -- output: each stream's text as it is written, and the job's log ------------------------------

const outputs = document.getElementById("outputs");
const outputStreams = document.getElementById("output-streams");
const jobLog = document.getElementById("job-log");
const levelFilter = document.getElementById("log-level");
// The page keeps at most this much of a stream (its end), as the server renders it.
const OUTPUT_BYTES = Number(page.dataset.outputBytes) || 1024 * 1024;
let logTail = ""; // the log's last line while it is still being written
let outputAttempt = Number(page.dataset.attempt) || 0;

function atBottom(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 8;
}

function outputPanel(stream) {
  const existing = outputStreams.querySelector(`.output[data-stream="${CSS.escape(stream)}"]`);
  if (existing) return existing.querySelector("pre");
  const id = `output-${stream}`;
  const panel = document.createElement("div");
  panel.className = "output";
  panel.dataset.stream = stream;
  const head = document.createElement("div");
  head.className = "output-head";
  const title = document.createElement("h3");
  title.textContent = stream;
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.dataset.copy = id;
  copy.textContent = "Copy";
  const download = document.createElement("a");
  download.className = "download";
  download.href = `${base}/api/jobs/${jobId}/output/${encodeURIComponent(stream)}?attempt=${outputAttempt}`;
  download.download = `${jobId.slice(0, 8)}-${stream}.txt`;
  download.textContent = "Download";
  head.append(title, copy, download);
  const cut = document.createElement("p");
  cut.className = "hint output-cut";
  cut.hidden = true;
  cut.textContent = "Showing the end: download the whole.";
  const pre = document.createElement("pre");
  pre.id = id;
  pre.className = "output-text";
  pre.tabIndex = 0;
  pre.setAttribute("role", "region");
  pre.setAttribute("aria-label", `${stream} output`);
  panel.append(head, cut, pre);
  outputStreams.append(panel);
  outputs.hidden = false;
  enableCopyButtons(panel);
  return pre;
}

// Each panel's characters shown, kept here: reading a long text back from the DOM costs as much
// as the text.
const shownLength = new WeakMap();

function appendOutput(stream, text) {
  const pre = outputPanel(stream);
  const following = atBottom(pre);
  pre.append(text);
  let length = (shownLength.get(pre) ?? pre.textContent.length - text.length) + text.length;
  // A long stream keeps its end: the page must stay fast however much a job writes. Cut back to
  // three quarters of the bound, so that the cut (a relayout of the text) is rare.
  if (length > OUTPUT_BYTES) {
    let excess = length - Math.floor(OUTPUT_BYTES * 0.75);
    while (excess > 0 && pre.firstChild) {
      const node = pre.firstChild;
      const size = node.textContent.length;
      if (size <= excess) {
        node.remove();
        excess -= size;
        length -= size;
      } else {
        node.textContent = node.textContent.slice(excess);
        length -= excess;
        excess = 0;
      }
    }
    pre.parentElement.querySelector(".output-cut").hidden = false;
  }
  shownLength.set(pre, length);
  if (following) pre.scrollTop = pre.scrollHeight;
}

function logLevel(name) {
  return { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 }[name] ?? 0;
}

function appendLog(text) {
  const box = jobLog.closest(".table-wrap");
  const following = atBottom(box);
  const lines = (logTail + text).split("\n");
  logTail = lines.pop(); // a record is whole once its newline has come
  for (const line of lines) {
    const match = /^(\S+) ([A-Z]+) (.*)$/.exec(line);
    const last = jobLog.lastElementChild;
    if (!match) {
      if (line.startsWith("  ") && last) last.querySelector(".log-message").append("\n" + line.slice(2));
      continue;
    }
    const row = document.createElement("tr");
    row.dataset.level = logLevel(match[2]);
    const level = document.createElement("td");
    level.className = `level level-${match[2].toLowerCase()}`;
    level.textContent = match[2];
    const message = document.createElement("td");
    message.className = "log-message";
    message.textContent = match[3];
    const time = document.createElement("td");
    time.append(timeElement(match[1]));
    row.append(time, level, message);
    row.hidden = Number(row.dataset.level) < Number(levelFilter.value);
    jobLog.append(row);
  }
  document.getElementById("job-log-panel").hidden = false;
  if (following) box.scrollTop = box.scrollHeight;
}

function showOutput(event) {
  if (event.attempt !== outputAttempt) return;
  if (event.limit_reached) {
    appendOutput(event.stream, "\n[the job's output reached its limit: nothing more is kept]\n");
    return;
  }
  if (event.stream === "log") appendLog(event.data);
  else appendOutput(event.stream, event.data);
}

// A new attempt writes its output afresh: the last one's folds away, as the server renders it.
function newAttempt(attempt) {
  const panels = [...outputStreams.children];
  if (panels.length) {
    const earlier = document.createElement("details");
    earlier.className = "earlier-output";
    earlier.dataset.attempt = outputAttempt;
    const summary = document.createElement("summary");
    summary.textContent = `Attempt ${outputAttempt}'s output`;
    earlier.append(summary);
    for (const panel of panels) {
      const pre = panel.querySelector("pre");
      pre.id = `output-${outputAttempt}-${panel.dataset.stream}`;
      panel.querySelector(".copy").dataset.copy = pre.id;
      earlier.append(panel);
    }
    outputStreams.after(earlier);
  }
  jobLog.replaceChildren();
  logTail = "";
  outputAttempt = attempt;
}

levelFilter.addEventListener("change", () => {
  for (const row of jobLog.rows) row.hidden = Number(row.dataset.level) < Number(levelFilter.value);
});
for (const pre of document.querySelectorAll(".output-text, #job-log-panel .table-wrap")) pre.scrollTop = pre.scrollHeight;

// Why a job that is due is not in line (a limit, a paused kind), or else its place in line: the
// snapshot says it first, `queue` events as it changes.
const waitingLine = document.getElementById("waiting");
function showWaiting(event) {
  if (event.type === "queue") {
    if (event.waiting) waitingLine.replaceChildren(...heldText(event));
    else waitingLine.textContent = event.ahead === null ? "" : `In line: ${queuePlaceText(event)}`;
  } else if (event.state !== "queued" && event.state !== "retrying") {
    waitingLine.textContent = "";
  } else if (event.type === "snapshot") {
    waitingLine.replaceChildren(...(event.waiting ? heldText(event) : []));
  }
  waitingLine.hidden = !waitingLine.textContent;
}

function apply(event) {
  if (event.type === "output") {
    showOutput(event);
    return;
  }
  showWaiting(event);
  if (event.type === "started" && event.attempt > outputAttempt) newAttempt(event.attempt);
  if (event.type !== "snapshot") {
    logRow(event);
    showAttempt(event);
  }
  applyToJob(page, event);
  showCounts(event.children);
  if (event.type !== "output") document.getElementById("plain-state").textContent = plainState(event);
  document.getElementById("state").textContent = event.state;
  const attempt = document.getElementById("attempt");
  attempt.textContent = attempt.textContent.replace(/^\d+/, String(event.attempt));
  // The first attempt's start: later attempts have theirs in the attempts table.
  if (event.type === "started" && event.attempt === 1) document.getElementById("started-at").replaceChildren(timeElement(event.ts, true));
  if (event.type === "retrying" && event.error) {
    document.getElementById("error-type").textContent = event.error.type;
    document.getElementById("error-message").textContent = event.error.message;
    document.getElementById("error").hidden = false;
    showNextAttempt(event.next_attempt_at);
  }
  if (event.type === "started") {
    document.getElementById("error").hidden = true;
    showNextAttempt(null);
  }
  if (TERMINAL.has(event.state)) showEnd(event);
}

if (!TERMINAL.has(page.dataset.state)) {
  // Through a shared link the page has no session for the job: its stream token opens the stream.
  const token = page.dataset.token || undefined;
  watchJob(jobId, { base, token, lastEventId: Number(page.dataset.seq), onEvent: apply, onQueue: showWaiting, onState: showConnection });
  countDown();
  setInterval(() => {
    updateTiming(page);
    countDown();
  }, 1000);
} else {
  showConnection("ended");
}
updateTiming(page);

cancelButton?.addEventListener("click", async (click) => {
  click.preventDefault();
  if (!window.confirm("Cancel this job? It stops where it is; it can be retried as a new job.")) return;
  cancelButton.disabled = true;
  actionStatus.textContent = "Cancelling…";
  try {
    const job = await cancelJob(jobId, { base });
    // Unless the job's end arrived first (its stream says how it ended).
    if (!TERMINAL.has(page.dataset.state)) {
      actionStatus.textContent = job.state === "cancelled" ? "Cancelled." : "Cancel requested; the job is stopping.";
    }
  } catch (error) {
    actionStatus.textContent = error.problem?.detail || "Could not cancel.";
  }
});

retryButton?.addEventListener("click", async (click) => {
  click.preventDefault();
  retryButton.disabled = true;
  try {
    const job = await retryJob(jobId, { base });
    window.location.assign(job.links.page);
  } catch (error) {
    actionStatus.textContent = error.problem?.detail || "Could not retry.";
    retryButton.disabled = false;
  }
});

enableCopyButtons();

// A read-only link to share: copied, or every such link of the job revoked.
document.getElementById("copy-share")?.addEventListener("click", async () => {
  const field = document.getElementById("share-link");
  field.select();
  const status = document.getElementById("share-status");
  try {
    await navigator.clipboard.writeText(field.value);
    status.textContent = "Copied. It works until it expires, or until you stop sharing.";
  } catch {
    status.textContent = "Selected: copy it with your keyboard.";
  }
});
document.getElementById("stop-sharing")?.addEventListener("click", async () => {
  const status = document.getElementById("share-status");
  const response = await fetch(`${base}/api/jobs/${jobId}/token`, { method: "DELETE" });
  status.textContent = response.ok ? "Every link shared so far has stopped working." : "Could not stop sharing.";
});
