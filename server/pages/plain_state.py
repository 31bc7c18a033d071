"""A job's state in plain words for the people waiting on it ("Running: 45% done"), as the job
page says it before its script runs; static/job-page.js says it the same way as events come."""

from __future__ import annotations

from jobcast.snapshot import JobSnapshot


def plain_state(job: JobSnapshot) -> str:
    state, error = job["state"], job["error"]
    percent = job["progress"].get("percent") or 0
    if state == "queued":
        return "Waiting to start" + (f": {job['waiting']}" if job.get("waiting") else "")
    if state == "retrying":
        return "Something went wrong; trying again shortly"
    if state == "running":
        return f"Running: {percent:g}% done"
    if state == "waiting_children":
        # Its parts run as jobs of their own; the bar is theirs, rolled up.
        return f"Running in parts: {percent:g}% done"
    if state == "succeeded":
        return "Done"
    if state == "failed":
        return f"Failed: {error['message']}" if error else "Failed"
    return "Cancelled"
