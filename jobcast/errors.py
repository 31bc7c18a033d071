"""jobcast's one family of errors, all `JobcastError`s: what went wrong, in jobcast's terms.

- Domain errors (`JobNotFound`, `AlreadyEnded`, `Unavailable`, `QuotaExceeded`), raised wherever
  the store or the fan-out meets them. The web answers each with a problem document
  (`problem_for` in server/http/problems.py, the one place that knows HTTP statuses) and the
  WebSocket with an error message (`ERROR_CODES` in server/transports/ws.py).
- `SubmitRefused` and its kinds: why a submission or a retry created no job.
- `Problem` (server/http/problems.py): an HTTP answer a handler gives up with.
- `ApiError` (jobcast/client/api.py): the error answer a client got from a jobcast server.

So `except JobcastError` catches whatever jobcast itself raises, on either side of the wire.
"""

from __future__ import annotations


class JobcastError(Exception):
    """Base of every error jobcast raises; `str(error)` is a message fit for a client."""


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


class OutputLimitExceeded(JobcastError):
    """A job's output went past what one attempt may write (`JOBCAST_MAX_OUTPUT_BYTES`), or past
    its number of streams; raised in job code by the write that went past it. Watchers were told
    (an `output` event with `limit_reached`)."""


class SubmitRefused(JobcastError):
    """Base of the reasons a submission (or a retry) creates no job."""


class IdempotentReplay(SubmitRefused):
    def __init__(self, job_id: str, same_request: bool) -> None:
        super().__init__(job_id)
        self.job_id = job_id
        self.same_request = same_request


class ActiveDuplicate(SubmitRefused):
    """A job of the same unique key is waiting or running: it answers instead of a new one."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class TooManyWaiting(SubmitRefused):
    """Over a waiting-jobs limit: the jobs due now, the delayed ones, or the owner's own."""

    def __init__(self, waiting: int, delayed: bool = False, owner: bool = False) -> None:
        super().__init__(f"{waiting} {'delayed ' if delayed else ''}jobs are waiting")
        self.waiting = waiting
        self.delayed = delayed
        self.owner = owner


class RateLimited(SubmitRefused):
    """The owner submitted `JOBCAST_MAX_SUBMISSIONS_PER_MINUTE` jobs this minute already."""

    def __init__(self, retry_after_s: float, budget: bool = False) -> None:
        what = "your CPU budget for this hour is spent" if budget else "too many submissions"
        super().__init__(f"{what}; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class NotRetryable(SubmitRefused):
    """The job to retry is gone (state None) or has not failed or been cancelled."""

    def __init__(self, state: str | None) -> None:
        super().__init__(state)
        self.state = state


class AlreadyRetried(SubmitRefused):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class ParentEnded(SubmitRefused):
    """A child was asked of a parent that has ended (or expired)."""

    def __init__(self, parent: str) -> None:
        super().__init__(f"job {parent} has ended: it can have no more children")
        self.parent = parent


class TooManyChildren(SubmitRefused):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a job may have at most {limit} children (JOBCAST_TREE_MAX_CHILDREN)")
        self.limit = limit


class ScheduleError(JobcastError, ValueError):
    """A schedule that cannot be: a bad cron expression, an unknown timezone, a bad id. `field`
    names what is wrong, for the 422 that answers it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
