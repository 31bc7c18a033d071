// useJob and useFeed, rendered with Testing Library in jsdom against a real jobcast server.
import { EventSource } from "eventsource";
import { act, cleanup, render, screen, waitFor } from "@testing-library/react";
import { createElement as h, StrictMode, useState } from "react";
import { afterEach, expect, test } from "vitest";

import { cancelJob, submitJob } from "@jobcast/client";
import { useFeed, useJob, useJobOutput } from "@jobcast/client/react";
import { WebSocket } from "ws";

const BASE = process.env.JOBCAST_URL;
// jsdom has no EventSource, and Node's own WebSocket cannot dispatch jsdom's events: a jsdom test
// passes the packages' (as a team's own tests of its components would).
const transports = { EventSource, WebSocket };

afterEach(cleanup);

function Job({ id, transport }) {
  const { snapshot, events, state, error } = useJob(id, { transport, ...transports });
  return h(
    "div",
    null,
    h("p", { "data-testid": "state" }, state ?? "none"),
    h("p", { "data-testid": "job" }, snapshot ? `${snapshot.state} ${snapshot.progress?.percent ?? 0}%` : "—"),
    h("p", { "data-testid": "seqs" }, events.map((event) => event.seq).join(",")),
    h("p", { "data-testid": "error" }, error ? error.code : ""),
  );
}

function Answer({ id, transport }) {
  const { text, done, error } = useJobOutput(id, "output", { transport, ...transports });
  return h(
    "div",
    null,
    h("pre", { "data-testid": "text" }, text),
    h("p", { "data-testid": "done" }, done ? "done" : "writing"),
    h("p", { "data-testid": "error" }, error ? error.message : ""),
  );
}

for (const transport of ["ws", "sse"]) {
  test(`useJobOutput shows a streamed answer as it is written, under StrictMode, over ${transport}`, async () => {
    const params = { paragraphs: 30, max_words: 150, tokens_per_s: 300 };
    const job = await submitJob("summarize", params, { base: BASE });
    render(h(StrictMode, null, h(Answer, { id: job.id, transport })));
    await waitFor(() => expect(screen.getByTestId("text").textContent.length).toBeGreaterThan(0), { timeout: 20_000 });
    await waitFor(() => expect(screen.getByTestId("done").textContent).toBe("done"), { timeout: 20_000 });
    const whole = await (await fetch(`${BASE}/api/jobs/${job.id}/output/output`)).text();
    // StrictMode mounted the hook twice: the text is still whole, once.
    expect(screen.getByTestId("text").textContent).toBe(whole);
    expect(screen.getByTestId("error").textContent).toBe("");
  });
}

test("useJob on a parent shows its rolled-up bar and its children's counts", async () => {
  const children = [1, 2, 3].map((i) => ({ kind: "demo", params: { steps: 2 * i, step_ms: 30 } }));
  const answer = await fetch(`${BASE}/api/jobs`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ kind: "demo", params: { steps: 1, step_ms: 0 }, children }),
  });
  const parent = await answer.json();
  function Parent({ id }) {
    const { snapshot, events } = useJob(id, { transport: "sse", ...transports });
    const counts = events.findLast((event) => event.children)?.children;
    return h(
      "div",
      null,
      h("p", { "data-testid": "bar" }, snapshot ? `${snapshot.state} ${snapshot.progress?.percent ?? 0}%` : "—"),
      h("p", { "data-testid": "counts" }, counts ? `${counts.succeeded} of ${counts.total}` : ""),
    );
  }
  render(h(Parent, { id: parent.id }));
  await waitFor(() => expect(screen.getByTestId("bar").textContent).toBe("succeeded 100%"), { timeout: 20_000 });
  expect(screen.getByTestId("counts").textContent).toBe("3 of 3");
});

// The open streams the server counts (SSE and WebSocket), from its /metrics.
async function openStreams() {
  const text = await (await fetch(`${BASE}/metrics`)).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith("jobcast_open_streams{"))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
}

for (const transport of ["ws", "sse"]) {
  test(`useJob follows a job to its end, under StrictMode, over ${transport}`, async () => {
    const job = await submitJob("demo", { steps: 5, step_ms: 40 }, { base: BASE });
    render(h(StrictMode, null, h(Job, { id: job.id, transport })));
    await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("ended"), { timeout: 20_000 });
    expect(screen.getByTestId("job").textContent).toBe("succeeded 100%");
    // StrictMode mounted the hook twice: still each seq once, in order, from one snapshot.
    const seqs = screen.getByTestId("seqs").textContent.split(",").map(Number);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0] + i));
  });
}

test("an unmounted useJob leaves no connection open, StrictMode included", async () => {
  const job = await submitJob("demo", { steps: 200, step_ms: 50 }, { base: BASE });
  const before = await openStreams();
  const view = render(h(StrictMode, null, h(Job, { id: job.id, transport: "ws" })));
  await waitFor(() => expect(screen.getByTestId("job").textContent).toMatch(/^running/), { timeout: 20_000 });
  expect(await openStreams()).toBe(before + 1); // StrictMode's first watcher is gone
  view.unmount();
  await waitFor(async () => expect(await openStreams()).toBe(before), { timeout: 10_000 });
  await cancelJob(job.id, { base: BASE });
});

test("useJob says when a job is unknown", async () => {
  render(h(Job, { id: "f".repeat(32), transport: "ws" }));
  await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("error"));
  expect(screen.getByTestId("error").textContent).toBe("not_found");
});

test("useJob follows a new job id when it changes", async () => {
  const first = await submitJob("demo", { steps: 2, step_ms: 0 }, { base: BASE });
  const second = await submitJob("demo", { steps: 3, step_ms: 0 }, { base: BASE });
  let pick;
  function Switch() {
    const [id, setId] = useState(first.id);
    pick = setId;
    return h(Job, { id, transport: "ws" });
  }
  render(h(Switch));
  await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("ended"));
  act(() => pick(second.id));
  await waitFor(() => expect(screen.getByTestId("job").textContent).toBe("succeeded 100%"));
  await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("ended"));
  // The events are the second job's only.
  expect(screen.getByTestId("seqs").textContent).not.toBe("");
});

function Feed() {
  const { snapshot, state } = useFeed({ transport: "ws", ...transports });
  return h(
    "ul",
    { "data-state": state },
    (snapshot?.jobs ?? []).map((job) => h("li", { key: job.id, "data-testid": job.id }, job.state)),
  );
}

test("useFeed lists jobs and follows their state", async () => {
  const view = render(h(StrictMode, null, h(Feed)));
  await waitFor(() => expect(view.container.querySelector("ul").dataset.state).toBe("live"));
  const job = await submitJob("demo", { steps: 2, step_ms: 0 }, { base: BASE });
  await waitFor(() => expect(screen.getByTestId(job.id).textContent).toBe("succeeded"), { timeout: 20_000 });
});
