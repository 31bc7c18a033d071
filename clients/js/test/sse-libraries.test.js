// The SSE streams as the common Node libraries read them, against real `jobcast web` and
// `jobcast worker` processes (heartbeats every 50 ms there, see tests/test_js_client.py): every
// event of a job once and none empty, then a resume from the middle. No library may turn the
// `retry:` line or a heartbeat into an event the app would have to skip.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fetchEventSource } from "@microsoft/fetch-event-source";
import { EventSource } from "eventsource";

import { submitJob } from "@jobcast/client";

import { BASE } from "./helpers.js";

// The event types a job's stream carries (a named event reaches EventSource's listeners only).
const TYPES = ["snapshot", "queued", "queue", "started", "progress", "output", "retrying", "succeeded", "failed", "cancelled"];
const ENDS = new Set(["succeeded", "failed", "cancelled"]);

function withEventSource(url) {
  return new Promise((resolve, reject) => {
    const got = [];
    const source = new EventSource(url);
    const timer = setTimeout(() => {
      source.close();
      reject(new Error(`no end in 30 s: ${JSON.stringify(got)}`));
    }, 30_000);
    const take = (message) => {
      got.push({ event: message.type, data: message.data, id: message.lastEventId });
      if (ENDS.has(message.type)) {
        clearTimeout(timer);
        source.close();
        resolve(got);
      }
    };
    for (const type of [...TYPES, "message"]) source.addEventListener(type, take);
  });
}

// fetch-event-source is written for browsers: it reads `window` for its timers, and `document`
// for the page's visibility (which `openWhenHidden` ignores, but its clean-up still calls).
globalThis.window ??= globalThis;
globalThis.document ??= { hidden: false, addEventListener() {}, removeEventListener() {} };

async function withFetchEventSource(url, lastEventId) {
  const got = [];
  const done = new AbortController();
  const timer = setTimeout(() => done.abort(), 30_000);
  await fetchEventSource(url, {
    signal: done.signal,
    openWhenHidden: true,
    headers: lastEventId === undefined ? {} : { "Last-Event-ID": lastEventId },
    onmessage(message) {
      got.push({ event: message.event, data: message.data, id: message.id });
      if (ENDS.has(message.event)) done.abort();
    },
    onclose() {
      done.abort();
    },
    onerror(error) {
      throw error; // no retry: the test wants the stream it got
    },
  }).catch((error) => {
    if (!done.signal.aborted) throw error;
  });
  clearTimeout(timer);
  return got;
}

const libraries = {
  eventsource: (url, lastEventId) =>
    withEventSource(lastEventId === undefined ? url : `${url}?last_event_id=${lastEventId}`),
  "fetch-event-source": withFetchEventSource,
};

for (const [name, read] of Object.entries(libraries)) {
  test(`${name} gets every event of a job once and no empty one, and resumes`, async () => {
    const job = await submitJob("demo", { steps: 6, step_ms: 150 }, { base: BASE });
    const url = `${BASE}/api/jobs/${job.id}/events`;
    const live = await read(url);
    assert.ok(live.every((m) => m.event && m.data), `empty events: ${JSON.stringify(live.filter((m) => !m.data))}`);
    const events = live.map((m) => JSON.parse(m.data));
    assert.deepEqual(live.map((m) => Number(m.id)), events.map((e) => e.seq));
    assert.equal(events[0].type, "snapshot");
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seqs[0] + i));
    assert.equal(events.at(-1).type, "succeeded");

    const middle = seqs[Math.floor(seqs.length / 2)];
    const resumed = await read(url, String(middle));
    assert.ok(resumed.every((m) => m.event && m.data));
    assert.deepEqual(
      resumed.map((m) => JSON.parse(m.data).seq),
      Array.from({ length: seqs.at(-1) - middle }, (_, i) => middle + 1 + i),
    );
  });
}
