// Types for @jobcast/client. The API's shapes (JobSnapshot, JobEvent, Progress, ...) are generated
// from the server's OpenAPI document into ./api.d.ts (scripts/js-types); this file types the
// client's own functions and options on top of them.
import type { JobEvent, JobSnapshot, ProblemDocument, Priority, QueueEvent, State as JobState } from "./api.js";

export type {
  BatchAnswer,
  BatchItem,
  BatchResult,
  BatchSnapshot,
  ChildCounts,
  ChildPage,
  ErrorInfo,
  FieldError,
  JobEvent,
  JobLinks,
  JobSnapshot,
  KindInfo,
  KindList,
  Priority,
  ProblemDocument,
  Progress,
  QueueEvent,
  Stats,
  StreamToken,
} from "./api.js";

/** A job's state: queued, running, retrying, waiting_children, succeeded, failed or cancelled. */
export type { JobState };

/** The states a job ends in. */
export type TerminalState = "succeeded" | "failed" | "cancelled";
export declare const TERMINAL: ReadonlySet<TerminalState>;

/** The connection's state, as `onState` reports it. */
export type ConnectionState = "connecting" | "live" | "reconnecting" | "offline" | "ended" | "stopped" | "error";
export declare const State: Readonly<{
  CONNECTING: "connecting";
  LIVE: "live";
  RECONNECTING: "reconnecting";
  OFFLINE: "offline";
  ENDED: "ended";
  STOPPED: "stopped";
  ERROR: "error";
}>;

/** An EventSource constructor: the browser's, or (Node) the `eventsource` package's. */
export type EventSourceLike = new (url: string) => {
  onopen: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  addEventListener(type: string, listener: (message: { data: string }) => void): void;
  close(): void;
};

/** A WebSocket constructor: the platform's (browsers, Node 22+), or (Node 20) the `ws` package's. */
export type WebSocketLike = new (url: string) => {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((message: { data: unknown }) => void) | null;
  onclose: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(): void;
};

export interface StreamOptions {
  /** `onState(state)`: the connection's state changed. */
  onState?: (state: ConnectionState, detail?: unknown) => void;
  /** `"sse"` (EventSource, the default where there is one) or `"ws"` (WebSocket). */
  transport?: "sse" | "ws";
  /** Another jobcast server, e.g. `"https://jobs.example.com"`. Required outside a browser. */
  base?: string;
  /** Owner mode: a stream token (the job's `stream_token`, or a feed token); kept fresh. */
  token?: string;
  /** Failed attempts in a row before the state says `offline` (6). */
  offlineAfter?: number;
  /** The EventSource to use where there is none (Node: `import { EventSource } from "eventsource"`). */
  EventSource?: EventSourceLike;
  /** The WebSocket to use where there is none (Node 20: `import { WebSocket } from "ws"`). */
  WebSocket?: WebSocketLike;
}

/** An event of a job's life (queued, started, progress, retrying and the terminal ones). */
export type LiveEvent = Omit<JobEvent, "type"> & { type: Exclude<JobEvent["type"], "snapshot"> };
/** A snapshot in the stream: the job as of `seq`, standing for every event up to it. */
export type SnapshotEvent = JobSnapshot & { type: "snapshot"; job_id: string; seq: number };
/** An event as `onEvent` gets it; `type` tells the two apart. */
export type WatchEvent = LiveEvent | SnapshotEvent;

/** A `queue` event as words: "12 ahead · starts in about 40 s". */
export declare function queuePlaceText(event: Pick<QueueEvent, "ahead" | "eta_s">): string;

export interface WatchJobOptions extends StreamOptions {
  /** Each event once, in seq order; a `snapshot` event stands for everything up to its seq. */
  onEvent?: (event: WatchEvent) => void;
  /** While the job waits: its place in line (`ahead`, null when not in line) and `eta_s`, or why it
   * is not in line (`waiting`: a limit, a paused kind), about once a second as it changes. Live
   * only: no seq, nothing to resume. */
  onQueue?: (event: QueueEvent) => void;
  /** Resume after this seq; `null` (the default) starts with a snapshot. */
  lastEventId?: number | null;
}

/** The feed's snapshot: the newest jobs, and where the feed stands. */
export interface FeedSnapshot {
  type: "snapshot";
  feed_seq: number;
  epoch: string;
  jobs: JobSnapshot[];
  /** A sharded deployment's (JOBCAST_REDIS_SHARDS): which shard's feed this is, of how many. */
  shard?: number;
  shards?: number;
}

export interface WatchFeedOptions extends StreamOptions {
  onSnapshot?: (snapshot: FeedSnapshot) => void;
  /** Every job's events after the snapshot: state changes once each (with `feed_seq`), progress live. */
  onEvent?: (event: LiveEvent) => void;
  /** Resume after this feed id, `<epoch>:<feed seq>` (a sharded deployment's: one a shard, comma-separated). */
  lastEventId?: string | null;
}

export interface Watcher<Position> {
  stop(): void;
  readonly lastEventId: Position | null;
  readonly state: ConnectionState | null;
}

export declare function watchJob(jobId: string, options?: WatchJobOptions): Watcher<number>;
export declare function watchFeed(options?: WatchFeedOptions): Watcher<string>;

/** An output stream too long for a snapshot: its length in bytes then, and where to read them. */
export interface OutputRef {
  length: number;
  href: string;
}

/** One attempt's text of one output stream, from a job's events (what jobOutput runs on). */
export declare class OutputText {
  constructor(stream?: string, attempt?: number | null);
  readonly stream: string;
  attempt: number | null;
  /** UTF-8 bytes of the stream given so far. */
  offset: number;
  /** The attempt followed has ended. */
  over: boolean;
  /** The new text an event brings, or a stream too long for its snapshot. */
  feed(event: WatchEvent): string | OutputRef;
}

export interface JobOutputOptions extends Omit<WatchJobOptions, "lastEventId"> {
  /** Which attempt (default: the one running, or the next to start). */
  attempt?: number;
  fetch?: typeof fetch;
  headers?: Record<string, string>;
}

/**
 * The text of one of a job's output streams as it is written: whole, in order and once across
 * reconnects, to the end of the attempt it follows.
 */
export declare function jobOutput(jobId: string, stream?: string, options?: JobOutputOptions): AsyncGenerator<string, void, undefined>;

export interface RequestOptions {
  base?: string;
  /** Added to the request: a Node backend's `Authorization: Bearer <API key>`. */
  headers?: Record<string, string>;
}

export interface SubmitOptions extends RequestOptions {
  priority?: Priority;
  delaySeconds?: number;
  idempotencyKey?: string;
}

/** What submitJob, cancelJob and retryJob reject with: the server's problem document. */
export interface JobcastError extends Error {
  problem: ProblemDocument | null;
  status: number;
}

export declare function submitJob(kind: string, params?: Record<string, unknown>, options?: SubmitOptions): Promise<JobSnapshot>;
export declare function cancelJob(jobId: string, options?: RequestOptions): Promise<JobSnapshot>;
export declare function retryJob(jobId: string, options?: RequestOptions): Promise<JobSnapshot>;
export declare function readJson<T = unknown>(response: Response): Promise<T>;

/** Seconds as "1m 05s" ("—" when unknown). */
export declare function formatDuration(seconds: number): string;
/**
 * Elapsed and remaining seconds (NaN when unknown): elapsed from the first attempt's start
 * (`startedAt`), `pace` the estimate left from the current attempt's (`attemptStartedAt`) and
 * percent, and `eta` that estimate or, when the attempt's time limit (`timeoutS`, a snapshot's
 * `timeout_s`) comes first, the time left to it (`timesOut`).
 */
export declare function timing(
  job: {
    startedAt?: string | null;
    attemptStartedAt?: string | null;
    finishedAt?: string | null;
    percent?: number | null;
    timeoutS?: number | null;
  },
  now?: number,
): { elapsed: number; eta: number; pace: number; timesOut: boolean };

/**
 * `<job-progress job-id base token transport label output>`: a live progress bar for one job
 * (with `output`, that output stream's text under it), registered when the module loads in a
 * browser. Fires `job-event` (detail: the event) for each event.
 */
export declare class JobProgressElement extends HTMLElement {
  static readonly observedAttributes: string[];
  show(event: WatchEvent): void;
}
