// The client in Node against real `jobcast web` and `jobcast worker` processes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { State, submitJob, timing, watchFeed, watchJob } from "@jobcast/client";

import { BASE, collect, transports } from "./helpers.js";

// After the snapshot, every seq once and in order, up to a terminal event.
function assertWholeStream(events, end = "succeeded") {
  assert.equal(events[0].type, "snapshot");
  const seqs = events.map((event) => event.seq);
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `seq ${seqs[i]} after ${seqs[i - 1]}`);
  assert.equal(events.at(-1).type, end);
}

for (const transport of ["sse", "ws"]) {
  test(`submit and watch a job to its end over ${transport}`, async () => {
    const job = await submitJob("demo", { steps: 5, step_ms: 20 }, { base: BASE });
    assert.match(job.id, /^[0-9a-f]{32}$/);
    const { events, states, watcher } = await collect((options) => watchJob(job.id, options), { transport });
    assertWholeStream(events);
    assert.equal(events.filter((event) => event.type === "progress").at(-1).progress.percent, 100);
    assert.deepEqual([states[0], states.at(-1)], [State.CONNECTING, State.ENDED]);
    assert.equal(watcher.lastEventId, events.at(-1).seq);
  });

  test(`an unknown job ends the watch with an error over ${transport}`, async () => {
    const { events, states } = await collect((options) => watchJob("0".repeat(32), options), { transport });
    assert.deepEqual(events, []);
    assert.equal(states.at(-1), State.ERROR);
  });

  test(`a watch resumed after a seq gets the events after it only, over ${transport}`, async () => {
    const job = await submitJob("demo", { steps: 3, step_ms: 0 }, { base: BASE });
    const whole = await collect((options) => watchJob(job.id, options), { transport });
    const last = whole.events.at(-1).seq;
    const { events } = await collect((options) => watchJob(job.id, options), { transport, lastEventId: 2 });
    // Events, not a snapshot: 3 up to the terminal one, each once.
    assert.deepEqual(events.map((event) => event.seq), Array.from({ length: last - 2 }, (_, i) => 3 + i));
    assert.ok(events.every((event) => event.type !== "snapshot"));
    assert.equal(events.at(-1).type, "succeeded");
  });
}

for (const transport of ["sse", "ws"]) {
  test(`a parent's watcher gets its rolled-up bar and its children's counts, over ${transport}`, async () => {
    const children = [1, 2, 3].map((i) => ({ kind: "demo", params: { steps: 2 * i, step_ms: 20 } }));
    const answer = await fetch(`${BASE}/api/jobs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ kind: "demo", params: { steps: 1, step_ms: 0 }, children }),
    });
    assert.equal(answer.status, 202);
    const parent = await answer.json();
    assert.equal(parent.state, "waiting_children");
    const { events } = await collect((options) => watchJob(parent.id, options), { transport });
    assertWholeStream(events);
    const bar = events.filter((event) => event.type === "progress" && event.children);
    assert.ok(bar.length > 0);
    assert.deepEqual(bar.at(-1).children, { total: 3, waiting: 0, running: 0, succeeded: 3, failed: 0, cancelled: 0 });
    assert.equal(bar.at(-1).progress.percent, 100);
  });
}

test("the feed carries a submitted job's state changes", async () => {
  // Every job's state changes, by job: the job's own may come before its submission answers.
  const seen = new Map();
  let job;
  let watcher;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`feed saw ${JSON.stringify([...seen])}`)), 30_000);
    const done = () => {
      if (job && seen.get(job.id)?.includes("succeeded")) {
        clearTimeout(timer);
        resolve();
      }
    };
    watcher = watchFeed({
      EventSource: transports.EventSource,
      base: BASE,
      onState: async (state) => {
        if (state !== State.LIVE || job) return;
        job = await submitJob("demo", { steps: 2, step_ms: 0 }, { base: BASE });
        done();
      },
      onEvent: (event) => {
        if (event.type === "progress") return;
        seen.set(event.job_id, [...(seen.get(event.job_id) ?? []), event.type]);
        done();
      },
    });
  });
  watcher.stop();
  assert.deepEqual(seen.get(job.id), ["queued", "started", "succeeded"]);
});

for (const transport of ["sse", "ws"]) {
  test(`a waiting job's watcher hears its place in line until it starts, over ${transport}`, async () => {
    // More jobs than the worker's ten slots: the last ones wait for the first to end.
    const jobs = [];
    for (let i = 0; i < 14; i++) jobs.push(await submitJob("demo", { steps: 10, step_ms: 150 }, { base: BASE }));
    const seen = [];
    let started = false;
    const { events } = await collect((options) => watchJob(jobs.at(-1).id, options), {
      transport,
      onEvent: (event) => {
        if (event.type === "started") started = true;
      },
      onQueue: (place) => seen.push({ place, started }),
    });
    const places = seen.map(({ place }) => place);
    assert.ok(places.some((place) => place.ahead >= 1 && place.ahead < 14), JSON.stringify(places));
    assert.ok(places.every((place) => place.type === "queue" && place.seq === undefined), "a place in line has no seq");
    // Gone once it starts: nothing after `started` says it is in line.
    assert.ok(seen.every(({ place, started }) => !started || place.ahead === null), JSON.stringify(seen));
    assertWholeStream(events);
  });
}

test("a bad submission rejects with the problem document", async () => {
  await assert.rejects(submitJob("no-such-kind", {}, { base: BASE }), (error) => {
    assert.equal(error.status, 422);
    assert.equal(error.problem.status, 422);
    return true;
  });
});

test("outside a browser, base is required and a missing transport is named", () => {
  assert.throws(() => watchJob("0".repeat(32), { ...transports }), /pass base/);
  if (typeof globalThis.EventSource === "undefined") {
    assert.throws(() => watchJob("0".repeat(32), { base: BASE, transport: "sse" }), /pass options\.EventSource/);
  }
});

test("timing says when an attempt would outlast its time limit", () => {
  const now = Date.parse("2026-01-01T00:01:00Z");
  const job = { startedAt: "2026-01-01T00:00:00Z", attemptStartedAt: "2026-01-01T00:00:00Z", percent: 25 };
  // 60 s for a quarter: 180 s more at this pace.
  assert.deepEqual(timing(job, now), { elapsed: 60, eta: 180, pace: 180, timesOut: false });
  assert.deepEqual(timing({ ...job, timeoutS: 300 }, now), { elapsed: 60, eta: 180, pace: 180, timesOut: false });
  // A 100 s limit ends the attempt 40 s from now, long before the estimate.
  assert.deepEqual(timing({ ...job, timeoutS: 100 }, now), { elapsed: 60, eta: 40, pace: 180, timesOut: true });
});
