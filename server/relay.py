"""The one Redis pub/sub connection of this process, and what keeps the hub whole across it.

The relay subscribes to a job's channel when the job's first local watcher arrives and
unsubscribes when the last one leaves. When the connection drops (a Redis restart, CLIENT KILL, a
silent network) it reconnects with backoff, resubscribes, and repairs every job's watchers from the
job's history, so nobody misses a seq.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from jobcast.backoff import Backoff
from jobcast.protocol import split_feed_record, split_record
from jobcast.server.catchup import CatchUp
from jobcast.server.history import FeedHistory, History, JobHistory
from jobcast.server.hub import Event, Hub, Subscription
from jobcast.server.pubsub import PubSubProtocol, connect_pubsub
from jobcast.store import JobStore
from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PING_INTERVAL_S = 5.0
# The dashboard feed's topic in the hub (job ids are 32 hex digits, so it cannot clash).
FEED = "feed"


class RelayUnavailable(Exception):
    """Redis is unreachable; the watcher should come back later."""


class Relay:
    def __init__(
        self,
        redis_url: str,
        store: JobStore,
        *,
        subscribe_timeout_s: float = 10.0,
    ) -> None:
        self._url = redis_url
        self._store = store
        self._subscribe_timeout_s = subscribe_timeout_s
        # At most half an outbox, so a page never overflows the outbox it is queued in.
        settings = store.settings
        self._page = max(1, min(settings.replay_page_events, settings.watcher_buffer // 2))
        self._feed_history = FeedHistory(store)
        self._prefix = store.keys.channel_prefix
        self._feed_channel = store.keys.feed_channel.encode()
        self.hub = Hub(self._queue_repair)
        self._proto: PubSubProtocol | None = None
        self._ready: dict[str, asyncio.Event] = {}
        self._in_flight: dict[str, int] = {}
        self._repairs: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()
        self.reconnects = 0
        # Pub/sub connections made so far: a watcher that joined under an earlier one may have
        # missed events published in between.
        self.connections = 0
        self.messages = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._connection_loop(), name="relay-connection"),
            asyncio.create_task(self._repair_loop(), name="relay-repair"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._proto is not None:
            self._proto.close()

    async def _connection_loop(self) -> None:
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                proto = await connect_pubsub(self._url, self._on_message, self._on_subscribed)
            except (OSError, TimeoutError) as e:
                delay = backoff.next_s()
                log.warning("redis pub/sub unreachable (%s); retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self._attach(proto)
            try:
                await self._keepalive(proto)
            finally:
                self._detach()
                proto.close()
            self.reconnects += 1

    def _attach(self, proto: PubSubProtocol) -> None:
        self._proto = proto
        self.connections += 1
        self._in_flight = dict.fromkeys(self._ready, 1)
        proto.subscribe(self._channel(job_id) for job_id in self._ready)
        # Whatever was published while we were away is in history.
        for job_id in self._ready:
            self.hub.start_repair(job_id)
        self.connected.set()
        log.info("redis pub/sub connected (%d channels)", len(self._ready))

    def _detach(self) -> None:
        self._proto = None
        self.connected.clear()
        for ready in self._ready.values():
            ready.clear()

    async def _keepalive(self, proto: PubSubProtocol) -> None:
        while not proto.closed.done():
            try:
                await asyncio.wait_for(asyncio.shield(proto.closed), PING_INTERVAL_S)
            except TimeoutError:
                try:
                    await proto.ping(PING_INTERVAL_S)
                except (TimeoutError, ConnectionError):
                    log.warning("redis pub/sub did not answer a ping; reconnecting")
                    return

    # -- channels ----------------------------------------------------------------------------------

    def _channel(self, job_id: str) -> str:
        return self._store.keys.feed_channel if job_id == FEED else self._store.keys.channel(job_id)

    def _topic(self, channel: bytes) -> str:
        return FEED if channel == self._feed_channel else channel[len(self._prefix) :].decode()

    def _on_message(self, channel: bytes, payload: bytes) -> None:
        self.messages += 1
        if channel == self._feed_channel:
            self.hub.deliver_event(FEED, Event.feed(*split_feed_record(payload)))
            return
        seq, type_, data = split_record(payload)
        self.hub.deliver(channel[len(self._prefix) :].decode(), seq, type_, data)

    def _on_subscribed(self, channel: bytes) -> None:
        job_id = self._topic(channel)
        left = self._in_flight.get(job_id, 0) - 1
        if left > 0:
            self._in_flight[job_id] = left
            return
        self._in_flight.pop(job_id, None)
        if (ready := self._ready.get(job_id)) is not None:
            ready.set()

    def _subscribe(self, job_id: str) -> None:
        self._ready[job_id] = asyncio.Event()
        if self._proto is not None:
            self._in_flight[job_id] = self._in_flight.get(job_id, 0) + 1
            self._proto.subscribe([self._channel(job_id)])

    def _unsubscribe(self, job_id: str) -> None:
        self._ready.pop(job_id, None)
        if self._proto is not None:
            self._proto.unsubscribe([self._channel(job_id)])

    async def _until_subscribed(self, job_id: str) -> None:
        try:
            async with asyncio.timeout(self._subscribe_timeout_s):
                await self._ready[job_id].wait()
        except TimeoutError:
            raise RelayUnavailable("redis pub/sub is not available") from None

    # -- watchers ----------------------------------------------------------------------------------

    def history(self, topic: str) -> History:
        return self._feed_history if topic == FEED else JobHistory(self._store, topic)

    async def join(
        self, sub: Subscription, since: int | None, *, announce: Event | None = None
    ) -> CatchUp | None:
        """Start watching: subscribe, then queue a snapshot or the first page of what the watcher
        has not seen. When that is not all, the transport drives the returned catch-up, a page at a
        time, until the watcher is live; None: it is live already.

        `announce` (a WebSocket `subscribed` message) is queued first. Raises JobNotFound,
        AlreadyEnded or RelayUnavailable; the watcher is then not joined.
        """
        if self.hub.add(sub):
            self._subscribe(sub.job_id)
        try:
            # History is read only once Redis confirms the subscription, so every event is either
            # in what we read or arrives live after it.
            await self._until_subscribed(sub.job_id)
            connection = self.connections
            history = self.history(sub.job_id)
            try:
                opening = await history.open(since, sub.epoch, self._page)
            except RedisError as e:
                raise RelayUnavailable(str(e)) from e
            if announce is not None:
                sub.outbox.put(announce)
            if opening.snapshot is not None:
                sub.reset(opening.snapshot)
            for event in opening.events:
                sub.push(event)
            read_all = opening.snapshot is not None or len(opening.events) < self._page

            def check_connection() -> None:
                # Events published while the pub/sub connection was down reach ready watchers by
                # repair. One that was not ready when that repair began is repaired now.
                if self.connections != connection:
                    self.hub.start_repair(sub.job_id)

            # When everything up to the read is queued, whatever came after it arrives live.
            if read_all and self.hub.go_live(sub):
                check_connection()
                return None
            return CatchUp(self.hub, sub, history, self._page, check_connection)
        except BaseException:
            self.leave(sub)
            raise

    def leave(self, sub: Subscription) -> None:
        if self.hub.remove(sub):
            self._unsubscribe(sub.job_id)

    # -- repair --------------------------------------------------------------------------------------

    def _queue_repair(self, job_id: str) -> None:
        self._repairs.put_nowait(job_id)

    async def _repair_loop(self) -> None:
        while True:
            job_id = await self._repairs.get()
            while job_id in self.hub.topics:
                try:
                    if await self._repair(job_id):
                        break
                except (RedisError, RelayUnavailable) as e:
                    log.warning("repair of %s postponed: %s", job_id, e)
                    await asyncio.sleep(0.2)

    async def _repair(self, topic: str) -> bool:
        await self._until_subscribed(topic)
        behind = self.hub.repair_from(topic)
        if behind is None:
            return self.hub.apply_repair(topic, (), None)
        start, epoch = behind
        history = self.history(topic)
        # A page at a time: when more is missing, the topic is still behind after this page
        # and is repaired again from where its watchers now are.
        page = await history.page(start, epoch, self._page)
        if page.missed:
            # History no longer reaches back far enough (trimmed, expired, or the feed started
            # over): only a snapshot tells the truth about what was missed.
            snapshot = await history.snapshot()
            if snapshot is None:  # the job itself is gone (Redis lost it): say so, and end
                self.hub.end_topic(topic, Event.gone(topic))
                return True
            return self.hub.apply_repair(topic, (), snapshot)
        return self.hub.apply_repair(topic, page.events, None)
