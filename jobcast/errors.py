"""Domain errors: what went wrong, in jobcast's terms, whoever asked.

The web answers each with a problem document (`problem_for` in server/problems.py, the one place
that knows HTTP statuses) and the WebSocket with an error message (`ERROR_CODES` in server/ws.py).
"""

from __future__ import annotations


class JobcastError(Exception):
    """Base of jobcast's domain errors; `str(error)` is a message fit for a client."""


class JobNotFound(JobcastError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class AlreadyEnded(JobcastError):
    """The job has ended: it cannot be cancelled, or the watcher has seen its last event."""


class Unavailable(JobcastError):
    """A store or broker jobcast needs cannot be reached now; try again shortly."""


class QuotaExceeded(JobcastError):
    """Storing `adding` more bytes would take an owner past the disk quota."""

    def __init__(self, used: int, adding: int, quota: int) -> None:
        super().__init__(
            f"over the disk quota: {adding} more bytes on the {used} held would pass the {quota}-byte quota; "
            "delete finished jobs' files, or wait for them to expire"
        )
        self.used, self.adding, self.quota = used, adding, quota
