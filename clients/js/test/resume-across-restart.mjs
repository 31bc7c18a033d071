// Watches one job across a restart of the web server, for tests/test_js_client.py: prints
// `{"ready": seq}` once it has seen some progress (the test then restarts the server), and at the
// end `{"events": [...], "states": [...]}`.
import { watchJob } from "@jobcast/client";

import { BASE, transports } from "./helpers.js";

const [jobId, transport] = process.argv.slice(2);
const events = [];
const states = [];
let told = false;
watchJob(jobId, {
  ...transports,
  base: BASE,
  transport,
  onEvent: (event) => {
    events.push({ seq: event.seq, type: event.type });
    if (!told && event.type === "progress") {
      told = true;
      console.log(JSON.stringify({ ready: event.seq }));
    }
  },
  onState: (state) => {
    states.push(state);
    if (state === "ended" || state === "error") {
      console.log(JSON.stringify({ events, states }));
      process.exit(0);
    }
  },
});
