"""What the web adds to a job's snapshot: its URLs under the app's prefix and, in owner mode, a
stream token (server/security/tokens.py), which `links.events` carries too."""

from __future__ import annotations

from urllib.parse import quote

from jobcast.server.security.tokens import StreamTokens
from jobcast.snapshot import SnapshotLinks


def job_links(prefix: str, tokens: StreamTokens, job_id: str) -> SnapshotLinks:
    api = f"{prefix}/api/jobs/{job_id}"
    token = tokens.for_job(job_id) if tokens.enabled else None
    events = f"{api}/events" if token is None else f"{api}/events?token={quote(token)}"
    links = {
        "self": api,
        "events": events,
        "cancel": f"{api}/cancel",
        "retry": f"{api}/retry",
        "result": f"{api}/result",
        "token": f"{api}/token",
        "page": f"{prefix}/jobs/{job_id}",
    }
    return {"links": links, "stream_token": token}
