import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { JobProgress } from "./JobProgress";

// The job to show and the jobcast server, from the query: ?job=<id>&base=<url>&token=<stream token>.
const query = new URLSearchParams(location.search);

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <JobProgress jobId={query.get("job")} base={query.get("base") ?? ""} token={query.get("token") ?? undefined} />
  </StrictMode>,
);
