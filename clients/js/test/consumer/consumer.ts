// A typed consumer of the package, checked by `tsc --noEmit` (tests/test_js_client.py). The lines
// marked as expected errors are misuses the types must refuse: were anything typed `any`, the
// marker itself would be an error.
import {
  type ConnectionState,
  type LiveEvent,
  type JobSnapshot,
  type WatchEvent,
  State,
  jobOutput,
  submitJob,
  watchFeed,
  watchJob,
} from "@jobcast/client";
import { JobProgressElement } from "@jobcast/client/element";
import { type JobOutputView, type JobView, useFeed, useJob, useJobOutput } from "@jobcast/client/react";

export async function typed(): Promise<void> {
  const job: JobSnapshot = await submitJob("demo", { steps: 3 }, { base: "http://localhost:8000", priority: "high" });
  const percent: number | null | undefined = job.progress.percent;
  // @ts-expect-error: a snapshot has no such field
  job.nonsense;
  // @ts-expect-error: priorities are a closed set
  await submitJob("demo", {}, { priority: "urgent" });

  const watcher = watchJob(job.id, {
    base: "http://localhost:8000",
    transport: "ws",
    onEvent: (event: WatchEvent) => {
      const seq: number = event.seq;
      if (event.type === "snapshot") {
        const snapshot: JobSnapshot = event;
        void snapshot.links.events;
      }
      void seq;
    },
    onState: (state: ConnectionState) => void (state === State.ENDED),
  });
  const last: number | null = watcher.lastEventId;
  // @ts-expect-error: transports are sse or ws
  watchJob(job.id, { transport: "polling" });

  watchFeed({ onSnapshot: (feed) => feed.jobs.map((j) => j.id), onEvent: (event: LiveEvent) => event.feed_seq });
  for await (const text of jobOutput(job.id, "output", { base: "http://localhost:8000" })) {
    const chunk: string = text;
    void chunk;
  }
  // @ts-expect-error: a stream's name is a string
  jobOutput(job.id, 42);
  void percent;
  void last;
  void JobProgressElement;
}

export function Hooks(): string {
  const view: JobView = useJob("0".repeat(32), { base: "http://localhost:8000", maxEvents: 10 });
  const state: JobSnapshot["state"] | undefined = view.snapshot?.state;
  // @ts-expect-error: events are typed
  view.events[0]?.nonsense;
  const feed = useFeed({ maxJobs: 5 });
  const answer: JobOutputView = useJobOutput("0".repeat(32), "output", { base: "http://localhost:8000" });
  const text: string = answer.text;
  // @ts-expect-error: done is a boolean
  const done: string = answer.done;
  return `${state} ${feed.snapshot?.jobs.length} ${text} ${done}`;
}
