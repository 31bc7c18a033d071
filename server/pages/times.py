"""Times as people read them: relative to now ("in 10 minutes", "3 hours ago"), the absolute time
on hover. The pages write them so on the server, for a page without JS; static/ui.js keeps them
current and puts the absolute time in the viewer's own time zone."""

from __future__ import annotations

from datetime import datetime

from jobcast.protocol import utcnow

# Up to each limit (seconds), the unit a distance is said in: the same steps as static/ui.js.
UNITS = ((60, 1, "second"), (3600, 60, "minute"), (86400, 3600, "hour"), (float("inf"), 86400, "day"))


def relative(iso: str, now: datetime | None = None) -> str:
    """`iso` (ISO 8601) from `now`, in words: "in 40 seconds", "3 minutes ago", "now"."""
    seconds = (datetime.fromisoformat(iso) - (now or utcnow())).total_seconds()
    size, unit = next((size, unit) for limit, size, unit in UNITS if abs(seconds) < limit)
    n = round(seconds / size)
    if n == 0:
        return "now"
    words = f"{abs(n)} {unit}{'' if abs(n) == 1 else 's'}"
    return f"in {words}" if n > 0 else f"{words} ago"
