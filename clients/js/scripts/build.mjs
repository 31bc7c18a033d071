// The one source of the client is src/jobcast.js; every jobcast server serves a copy of it as
// /static/jobcast.js. This writes that copy (tests/test_js_client.py fails when they differ).
import { copyFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const source = fileURLToPath(new URL("../src/jobcast.js", import.meta.url));
const served = fileURLToPath(new URL("../../../static/jobcast.js", import.meta.url));
copyFileSync(source, served);
console.log(`copied ${source} to ${served}`);
