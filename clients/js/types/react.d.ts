import type {
  ConnectionState,
  FeedSnapshot,
  JobOutputOptions,
  JobSnapshot,
  LiveEvent,
  WatchEvent,
  WatchFeedOptions,
  WatchJobOptions,
} from "./jobcast.js";

export interface JobView {
  /** The job's snapshot with every later event applied; null until the first event. */
  snapshot: JobSnapshot | null;
  /** The most recent events, oldest first (at most `maxEvents`). */
  events: WatchEvent[];
  /** The connection's state; null when no job is watched. */
  state: ConnectionState | null;
  /** Set when the server says no for good (an unknown or expired job). */
  error: (Error & { code?: string }) | null;
}

export interface FeedView {
  /** The feed's snapshot with every later event applied to its jobs (newest first). */
  snapshot: FeedSnapshot | null;
  events: LiveEvent[];
  state: ConnectionState | null;
  error: Error | null;
}

export interface UseJobOptions extends WatchJobOptions {
  /** How many recent events `events` keeps (500). */
  maxEvents?: number;
}

export interface UseFeedOptions extends WatchFeedOptions {
  maxEvents?: number;
  /** How many jobs the snapshot keeps (1000). */
  maxJobs?: number;
}

/** Watch one job while the component is mounted. A null or empty `jobId` watches nothing. */
export declare function useJob(jobId: string | null | undefined, options?: UseJobOptions): JobView;
export interface JobOutputView {
  /** The stream's text so far: whole, in order, without repeats across reconnects. */
  text: string;
  /** The attempt followed has ended (or the server said no: see `error`). */
  done: boolean;
  error: Error | null;
}

/** One of a job's output streams while the component is mounted. A null or empty `jobId` follows nothing. */
export declare function useJobOutput(
  jobId: string | null | undefined,
  stream?: string,
  options?: JobOutputOptions,
): JobOutputView;
/** Watch every job (the feed) while the component is mounted. */
export declare function useFeed(options?: UseFeedOptions): FeedView;
/** The snapshot as of an event (what useJob applies). */
export declare function applyEvent(snapshot: JobSnapshot | null, event: WatchEvent): JobSnapshot;
