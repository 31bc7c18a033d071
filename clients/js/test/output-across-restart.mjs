// Follows one job's output across a restart of the web server, for tests/test_js_client.py:
// prints `{"ready": true}` once some text has come (the test then restarts the server), and at the
// end `{"text": ...}`, everything jobOutput gave.
import { jobOutput } from "@jobcast/client";

import { BASE, transports } from "./helpers.js";

const [jobId, transport] = process.argv.slice(2);
let text = "";
let told = false;
for await (const chunk of jobOutput(jobId, "output", { ...transports, base: BASE, transport })) {
  text += chunk;
  if (!told) {
    told = true;
    console.log(JSON.stringify({ ready: true }));
  }
}
console.log(JSON.stringify({ text }));
