"""The Python client of jobcast's HTTP API: `Client` (async), `SyncClient`, and `watch` with resume.
It imports nothing of the server or the workers, nor Redis.

An error answer raises `ApiError` (its `status` and problem+json body); `except JobcastError`
catches it too, as it catches every error jobcast raises.
"""

from jobcast.client.api import ApiError, Client, JobEvent, SseMessage, SyncClient, sse_messages
from jobcast.errors import JobcastError

__all__ = ["ApiError", "Client", "JobEvent", "JobcastError", "SseMessage", "SyncClient", "sse_messages"]
