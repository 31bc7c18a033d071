"""Catching a joining watcher up: the events it missed, read from history a page at a time.

A watcher that resumes far behind (a long job read from its start, a dashboard away for a
thousand state changes) must get every event, yet neither the process nor its outbox may hold them
all at once. So its transport asks for one page at a time, and only once the previous page has
left for the socket: the replay runs at the speed of the client's socket, never conflated. Live
events that arrive meanwhile wait in the watcher's bounded `pending`; when history is read up to
them the watcher goes live. If some were dropped from `pending` meanwhile, history still has them.
"""

from __future__ import annotations

from collections.abc import Callable

from jobcast.errors import Unavailable
from jobcast.server.fanout.hub import Hub, Subscription
from jobcast.server.fanout.topics import TopicUnavailable


class CatchUpFailed(Unavailable):
    """History could not be read (the broker is unreachable): end the stream; the client resumes."""


class CatchUp:
    __slots__ = ("hub", "on_live", "page_size", "sub")

    def __init__(
        self, hub: Hub, sub: Subscription, page_size: int, on_live: Callable[[], None] = lambda: None
    ) -> None:
        self.hub = hub
        self.sub = sub
        self.page_size = page_size
        # Called once the watcher is live (the relay checks it missed no reconnect meanwhile).
        self.on_live = on_live

    async def step(self) -> bool:
        """Queue the next page of history for the watcher; True once it is live (or ended)."""
        sub = self.sub
        if sub.done:
            self.hub.mark_ready(sub)
            return True
        topic = sub.topic
        try:
            page = await topic.page(sub.last_seq, sub.epoch, self.page_size)
            # Trimmed or expired while the watcher read, or the feed started over: only a
            # snapshot is truthful. Reading continues after its seq.
            snapshot = await topic.snapshot() if page.missed else None
        except TopicUnavailable as e:
            raise CatchUpFailed(str(e)) from e
        if page.missed:
            if snapshot is None:  # the job itself is gone: say so, and end
                sub.end(topic.gone())
                self.hub.mark_ready(sub)
                return True
            sub.reset(snapshot)
            return False
        for event in page.events:
            sub.push(event)
        if len(page.events) < self.page_size and self.hub.go_live(sub):
            self.on_live()
            return True
        return False
