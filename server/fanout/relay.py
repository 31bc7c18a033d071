"""The one pub/sub connection of this process, and what keeps the hub whole across it.

The relay subscribes to a topic's channel when the topic's first local watcher arrives and
unsubscribes when the last one leaves. When the connection drops (a Redis restart, CLIENT KILL, a
silent network) it reconnects with backoff, resubscribes, and repairs every topic's watchers from
the topic's history, so nobody misses a seq. It works through a Broker (server/fanout/broker.py): Redis in
production, an in-memory one in tests.
"""

from __future__ import annotations

import asyncio
import logging

from jobcast.backoff import Backoff
from jobcast.errors import Unavailable
from jobcast.protocol import utcnow
from jobcast.redis.pubsub import keep_alive
from jobcast.server.fanout.broker import Broker, Connection
from jobcast.server.fanout.catchup import CatchUp
from jobcast.server.fanout.events import Event
from jobcast.server.fanout.hub import Hub, Subscription, Watchers
from jobcast.server.fanout.latency import SAMPLE_EVERY, Delays
from jobcast.server.fanout.topics import TopicUnavailable
from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PING_INTERVAL_S = 5.0


class RelayUnavailable(Unavailable):
    """The broker is unreachable; the watcher should come back later."""


class Relay:
    def __init__(self, broker: Broker, *, page_size: int, subscribe_timeout_s: float = 10.0) -> None:
        self.broker = broker
        self._page = page_size
        self._subscribe_timeout_s = subscribe_timeout_s
        self.hub = Hub(self._queue_repair)
        self._conn: Connection | None = None
        # SUBSCRIBEs sent on this connection and not confirmed yet, per channel: a topic left and
        # joined again while its first was in flight is confirmed by the last one only.
        self._in_flight: dict[bytes, int] = {}
        self._repairs: asyncio.Queue[Watchers] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()
        self.reconnects = 0
        # Pub/sub connections made so far: a watcher that joined under an earlier one may have
        # missed events published in between.
        self.connections = 0
        self.messages = 0
        # Gap repairs run (a reconnect, or watchers that fell behind pub/sub), and the sampled
        # publish-to-delivery delays.
        self.repairs = 0
        self.delivered = 0
        self.delays = Delays()

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
        if self._conn is not None:
            self._conn.close()

    async def _connection_loop(self) -> None:
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                conn = await self.broker.connect(self._on_message, self._on_subscribed)
            except (OSError, TimeoutError) as e:
                delay = backoff.next_s()
                log.warning("pub/sub unreachable (%s); retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self._attach(conn)
            try:
                await keep_alive(conn, PING_INTERVAL_S)
            finally:
                self._detach()
                conn.close()
            self.reconnects += 1

    def _attach(self, conn: Connection) -> None:
        self._conn = conn
        self.connections += 1
        topics = list(self.hub.topics.values())
        self._in_flight = {watchers.topic.key: 1 for watchers in topics}
        # What the last connection carried is in history now, or lost with a failed primary: a
        # seq seen there and lost must not keep the repair waiting for it.
        for watchers in topics:
            watchers.seen_max = 0
        conn.subscribe(watchers.topic.key for watchers in topics)
        # Whatever was published while we were away is in history.
        for watchers in topics:
            self.hub.start_repair(watchers)
        self.connected.set()
        log.info("pub/sub connected (%d channels)", len(topics))

    def _detach(self) -> None:
        self._conn = None
        self.connected.clear()
        self._in_flight = {}
        for watchers in self.hub.topics.values():
            watchers.confirmed.clear()

    # -- channels ----------------------------------------------------------------------------------

    def _on_message(self, channel: bytes, payload: bytes) -> None:
        self.messages += 1
        watchers = self.hub.topics.get(channel)
        if watchers is not None:
            self.hub.deliver(watchers, watchers.topic.event(payload))
            self.delivered += 1
            if self.delivered % SAMPLE_EVERY == 1:
                self.delays.sample(payload, utcnow())

    def _on_subscribed(self, channel: bytes) -> None:
        left = self._in_flight.get(channel, 0) - 1
        if left > 0:
            self._in_flight[channel] = left
            return
        self._in_flight.pop(channel, None)
        if (watchers := self.hub.topics.get(channel)) is not None:
            watchers.confirmed.set()

    def _subscribe(self, watchers: Watchers) -> None:
        if self._conn is not None:
            key = watchers.topic.key
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            self._conn.subscribe([key])

    def _unsubscribe(self, watchers: Watchers) -> None:
        if self._conn is not None:
            self._conn.unsubscribe([watchers.topic.key])

    async def _until_subscribed(self, watchers: Watchers) -> None:
        try:
            async with asyncio.timeout(self._subscribe_timeout_s):
                await watchers.confirmed.wait()
        except TimeoutError:
            raise RelayUnavailable("pub/sub is not available") from None

    # -- watchers ----------------------------------------------------------------------------------

    async def join(
        self, sub: Subscription, since: int | None, *, announce: Event | None = None
    ) -> CatchUp | None:
        """Start watching: subscribe, then queue a snapshot or the first page of what the watcher
        has not seen. When that is not all, the transport drives the returned catch-up, a page at a
        time, until the watcher is live; None: it is live already.

        `announce` (a WebSocket `subscribed` message) is queued first. Raises JobNotFound,
        AlreadyEnded or RelayUnavailable; the watcher is then not joined.
        """
        if (first := self.hub.add(sub)) is not None:
            self._subscribe(first)
        try:
            # History is read only once the broker confirms the subscription, so every event is
            # either in what we read or arrives live after it.
            watchers = self.hub.topics[sub.topic.key]
            await self._until_subscribed(watchers)
            connection = self.connections
            try:
                opening = await sub.topic.open(since, sub.epoch, self._page)
            except TopicUnavailable as e:
                raise RelayUnavailable(str(e)) from e
            if announce is not None:
                sub.outbox.put(announce)
            if opening.snapshot is not None:
                sub.reset(opening.snapshot)
            for event in opening.events:
                sub.push(event)
            read_all = opening.snapshot is not None or len(opening.events) < self._page

            def check_connection() -> None:
                # Events published while the pub/sub connection was down reach live watchers by
                # repair. One that was not live when that repair began is repaired now.
                if self.connections != connection:
                    self.hub.start_repair(self.hub.topics[sub.topic.key])

            # When everything up to the read is queued, whatever came after it arrives live.
            if read_all and self.hub.go_live(sub):
                check_connection()
                return None
            return CatchUp(self.hub, sub, self._page, check_connection)
        except BaseException:
            self.leave(sub)
            raise

    def leave(self, sub: Subscription) -> None:
        watchers = self.hub.topics.get(sub.topic.key)
        if self.hub.remove(sub) and watchers is not None:
            self._unsubscribe(watchers)

    # -- repair --------------------------------------------------------------------------------------

    def _queue_repair(self, watchers: Watchers) -> None:
        self.repairs += 1
        self._repairs.put_nowait(watchers)

    async def _repair_loop(self) -> None:
        while True:
            watchers = await self._repairs.get()
            backoff = Backoff(0.1, 2.0)
            # Until the topic is whole, or nobody here watches it any more.
            while self.hub.topics.get(watchers.topic.key) is watchers:
                try:
                    if await self._repair(watchers):
                        break
                except Unavailable as e:
                    delay = backoff.next_s()
                    log.warning("repair of %r postponed %.1fs: %s", watchers.topic.key, delay, e)
                    await asyncio.sleep(delay)

    async def _repair(self, watchers: Watchers) -> bool:
        await self._until_subscribed(watchers)
        behind = self.hub.repair_from(watchers)
        if behind is None:
            return self.hub.apply_repair(watchers, (), None)
        start, epoch = behind
        topic = watchers.topic
        # A page at a time: when more is missing, the topic is still behind after this page
        # and is repaired again from where its watchers now are.
        page = await topic.page(start, epoch, self._page)
        lost = page.head is not None and self.hub.beyond(watchers, page.head)
        if page.missed or lost:
            # History no longer reaches back far enough (trimmed, expired, or the feed started
            # over), or a watcher saw events Redis has lost: only a snapshot tells the truth.
            snapshot = await topic.snapshot()
            if snapshot is None:  # the job itself is gone (Redis lost it): say so, and end
                self.hub.end_topic(watchers, topic.gone())
                return True
            reset = self.hub.reset_beyond(watchers, snapshot)
            if not page.missed:
                return self.hub.apply_repair(watchers, page.events, None)
            return self.hub.apply_repair(watchers, (), snapshot, reset)
        return self.hub.apply_repair(watchers, page.events, None)
