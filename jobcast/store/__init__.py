"""The job store: job records, histories, queues and indexes in Redis, each change one Lua script
(lua/), called through scripts.py with named keys and answers."""

from jobcast.deprecation import moved


def __getattr__(name: str) -> object:
    # This package was one module until 0.2.0: its names still resolve, with a warning.
    return moved(__name__, name, ("jobcast.errors", "jobcast.store.jobs"))
