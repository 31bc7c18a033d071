"""An event as the hub passes it around: one object per event, shared by every watcher.

The event carries what ordering and routing need (its topic's seq, an epoch for the feed, its type,
whether it ends the watch) and the JSON `data` every transport sends. Its wire encodings are built
by the transports (server/fanout/wire.py), once per event, and cached in the event's slots, so a thousand
watchers of one event cost one encoding.
"""

from __future__ import annotations

from typing import Any

from jobcast.protocol import TERMINAL_STATES, TERMINAL_TYPE_BYTES, EventType, dumps
from jobcast.snapshot import JobSnapshot


class Event:
    __slots__ = ("data", "epoch", "job_id", "seq", "sse_chunk", "sse_message", "terminal", "type", "ws_frame")

    def __init__(
        self,
        job_id: str,
        seq: int,
        type_: bytes,
        data: bytes,
        *,
        terminal: bool | None = None,
        epoch: str | None = None,
    ):
        self.job_id = job_id
        self.seq = seq
        self.type = type_
        self.data = data
        self.terminal = type_ in TERMINAL_TYPE_BYTES if terminal is None else terminal
        # The feed's seqs count within an epoch, so its ids carry both; a job's id is its seq.
        self.epoch = epoch
        # Filled by server/fanout/wire.py the first time a transport needs them.
        self.sse_message: bytes | None = None
        self.sse_chunk: bytes | None = None
        self.ws_frame: bytes | None = None

    @classmethod
    def snapshot(cls, snapshot: JobSnapshot) -> Event:
        """The `snapshot` event: data is the job snapshot, id its last_event_id."""
        return cls(
            snapshot["id"],
            snapshot["last_event_id"],
            EventType.SNAPSHOT.value.encode(),
            dumps(
                {
                    "type": EventType.SNAPSHOT.value,
                    "job_id": snapshot["id"],
                    "seq": snapshot["last_event_id"],
                    **snapshot,
                }
            ),
            terminal=snapshot["state"] in TERMINAL_STATES,
        )

    @classmethod
    def feed(cls, feed_seq: int, type_: bytes, job_id: str, epoch: bytes, data: bytes) -> Event:
        """An event of the dashboard feed: numbered by feed seq within an epoch (seq 0: live-only
        progress, with no epoch)."""
        return cls(job_id, feed_seq, type_, data, terminal=False, epoch=epoch.decode() if feed_seq else None)

    @classmethod
    def feed_snapshot(cls, snapshot: dict[str, Any]) -> Event:
        type_ = EventType.SNAPSHOT.value.encode()
        return cls("", snapshot["feed_seq"], type_, dumps(snapshot), terminal=False, epoch=snapshot["epoch"])

    @classmethod
    def gone(cls, job_id: str) -> Event:
        """The end of a watch whose job no longer exists (Redis lost it, or it expired): an SSE
        `error` event, or a WebSocket `error` message, after which nothing more comes."""
        message = {
            "type": "error",
            "code": "not_found",
            "job_id": job_id,
            "message": "the job no longer exists (its data was lost or has expired)",
        }
        return cls(job_id, 0, b"error", dumps(message), terminal=True)

    @classmethod
    def control(cls, message: dict[str, Any]) -> Event:
        """A WebSocket control message (subscribed, error, ...): no job seq."""
        return cls(message.get("job_id") or "", 0, b"control", dumps(message), terminal=False)
