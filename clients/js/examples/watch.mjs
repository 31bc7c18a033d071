// Submit a job and watch it to its end from Node (20+):
//
//   npm install @jobcast/client ws
//   JOBCAST_URL=http://localhost:8000 node watch.mjs demo '{"steps": 10}'
//
// Node 22+ has a WebSocket of its own; Node 20 takes the `ws` package's (or pass an EventSource
// from the `eventsource` package and transport "sse"). Behind an API key, add
// `headers: { Authorization: "Bearer " + key }` to submitJob and watch with the job's stream_token.
import { submitJob, watchJob } from "@jobcast/client";
import { WebSocket } from "ws";

const base = process.env.JOBCAST_URL ?? "http://localhost:8000";
const [kind = "demo", params = "{}"] = process.argv.slice(2);

const job = await submitJob(kind, JSON.parse(params), { base });
console.log(`job ${job.id} (${job.links.page})`);

const end = await new Promise((resolve) => {
  watchJob(job.id, {
    base,
    transport: "ws",
    WebSocket: globalThis.WebSocket ?? WebSocket,
    token: job.stream_token ?? undefined,
    onEvent: (event) => {
      const percent = event.progress?.percent;
      console.log(`${event.seq} ${event.type}${percent == null ? "" : ` ${Math.round(percent)}%`}`);
      if (event.type === "succeeded" || event.type === "failed" || event.type === "cancelled") resolve(event);
    },
    onState: (state) => {
      if (state === "error") resolve(null);
    },
  });
});
process.exit(end?.type === "succeeded" ? 0 : 1);
