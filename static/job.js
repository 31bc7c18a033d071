// Watches one job over SSE. EventSource resends the last id it saw when it reconnects, so a
// dropped stream resumes with no gap; the server answers 204 after the end, which stops it.
const root = document.getElementById("job");
const bar = document.getElementById("bar");
const state = document.getElementById("state");
const message = document.getElementById("message");
const log = document.getElementById("log");
const connection = document.getElementById("connection");
const source = new EventSource(root.dataset.events);

function show(event) {
  const data = JSON.parse(event.data);
  const progress = data.progress;
  if (progress && progress.percent !== null) bar.value = progress.percent;
  if (progress && progress.message) message.textContent = progress.message;
  state.textContent = data.state;
  const item = document.createElement("li");
  item.textContent = `#${event.lastEventId} ${event.type} ${data.state}` +
    (data.error ? ` — ${data.error.type}: ${data.error.message}` : "");
  log.append(item);
}

for (const type of ["snapshot", "queued", "started", "progress", "retrying", "succeeded", "failed", "cancelled"]) {
  source.addEventListener(type, show);
}
source.onopen = () => { connection.textContent = ""; };
source.onerror = () => {
  connection.textContent = source.readyState === EventSource.CLOSED ? "" : "reconnecting…";
};
