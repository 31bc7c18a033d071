"""jobcast: accept long-running work at once, run it on arq workers, stream live progress.

The public API for job code is what this module exports, and it is kept stable:

    from jobcast import Kind, JobContext, PermanentError, Schedule

`jobcast.server` is the web server, `jobcast.jobs` the workers; both share the settings, the wire
protocol and the Redis store that live beside this file.
"""

from jobcast.kind import JobContext, Kind, PermanentError
from jobcast.schedule import Missed, Schedule
from jobcast.tree import Child, ChildOutcome

__all__ = ["Child", "ChildOutcome", "JobContext", "Kind", "Missed", "PermanentError", "Schedule"]
