"""The URLs of a job, as its snapshot's `links` give them (under the app's URL prefix)."""

from __future__ import annotations


def job_links(prefix: str, job_id: str) -> dict[str, str]:
    api = f"{prefix}/api/jobs/{job_id}"
    return {
        "self": api,
        "events": f"{api}/events",
        "cancel": f"{api}/cancel",
        "retry": f"{api}/retry",
        "result": f"{api}/result",
        "page": f"{prefix}/jobs/{job_id}",
    }
