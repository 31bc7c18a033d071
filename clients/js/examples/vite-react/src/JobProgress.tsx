import type { JobSnapshot } from "@jobcast/client";
import { useJob } from "@jobcast/client/react";

interface Props {
  jobId: string | null;
  base: string;
  token?: string;
}

function percentOf(snapshot: JobSnapshot | null): number {
  return snapshot?.progress.percent ?? 0;
}

/** A live progress bar for one job. */
export function JobProgress({ jobId, base, token }: Props) {
  const { snapshot, state, error } = useJob(jobId, { base, token });
  if (error) return <p role="alert">{error.message}</p>;
  const percent = percentOf(snapshot);
  return (
    <section aria-live="polite">
      <h1>{snapshot?.kind ?? "job"}</h1>
      <progress max={100} value={percent} aria-label="Job progress" />
      <p>
        <span data-testid="job-state">{snapshot?.state ?? "waiting"}</span> ·{" "}
        <span data-testid="percent">{Math.round(percent)}%</span> · <span data-testid="connection">{state}</span>
      </p>
      {snapshot?.progress.message && <p>{snapshot.progress.message}</p>}
    </section>
  );
}
