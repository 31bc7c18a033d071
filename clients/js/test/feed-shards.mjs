// Watches every job's feed of a sharded deployment, for tests/test_js_client.py. Once the feed is
// live, submits `count` jobs and waits for each to succeed (by its event, or as a later shard's
// snapshot shows it); then stops, submits `count` more while nobody watches, waits for them to end,
// and resumes from the first watcher's lastEventId. Prints what each watcher saw.
import { State, submitJob, watchFeed } from "@jobcast/client";

import { BASE, transports } from "./helpers.js";

const [count, transport] = [Number(process.argv[2]), process.argv[3]];
const demo = () => submitJob("demo", { steps: 1, step_ms: 0 }, { base: BASE });

function watch(lastEventId, onLive) {
  const seen = { snapshots: [], events: [], succeeded: new Set() };
  let live = false;
  const watcher = watchFeed({
    ...transports,
    base: BASE,
    transport,
    lastEventId,
    onSnapshot: (snapshot) => {
      seen.snapshots.push({ shard: snapshot.shard ?? null, shards: snapshot.shards ?? null });
      for (const job of snapshot.jobs) if (job.state === "succeeded") seen.succeeded.add(job.id);
    },
    onEvent: (event) => {
      if (event.type === "progress") return;
      seen.events.push({ job_id: event.job_id, type: event.type, feed_seq: event.feed_seq, epoch: event.epoch });
      if (event.type === "succeeded") seen.succeeded.add(event.job_id);
    },
    onState: (state) => {
      if (state === State.LIVE && !live) {
        live = true;
        onLive?.();
      }
    },
  });
  return { watcher, seen };
}

// A state with no event to await (a watcher's set, a job's state): looked at every 20 ms.
async function until(check, what) {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`no ${what} in 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

let first = [];
const { watcher, seen } = watch(undefined, async () => {
  for (let i = 0; i < count; i++) first.push((await demo()).id);
});
await until(() => first.length === count && first.every((id) => seen.succeeded.has(id)), "end of the first jobs");
const lastEventId = watcher.lastEventId;
watcher.stop();

const later = [];
for (let i = 0; i < count; i++) later.push((await demo()).id);
const ended = async (id) => (await (await fetch(`${BASE}/api/jobs/${id}`)).json()).state === "succeeded";
for (const id of later) await until(() => ended(id), `end of job ${id}`);
const resumed = watch(lastEventId);
await until(() => later.every((id) => resumed.seen.succeeded.has(id)), "end of the later jobs");
resumed.watcher.stop();

const plain = (s) => ({ snapshots: s.snapshots, events: s.events });
console.log(JSON.stringify({ first, later, lastEventId, watched: plain(seen), resumed: plain(resumed.seen) }));
process.exit(0);
