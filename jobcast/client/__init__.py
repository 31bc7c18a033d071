"""The Python client of jobcast's HTTP API: `Client` (async), `SyncClient`, and `watch` with resume.
It imports nothing of the server or the workers, nor Redis."""

from jobcast.client.api import Client, JobcastError, JobEvent, SseMessage, SyncClient, sse_messages

__all__ = ["Client", "JobEvent", "JobcastError", "SseMessage", "SyncClient", "sse_messages"]
