"""Tells the watchers of waiting jobs their place in the queue: a live-only `queue` event with how
many jobs start before theirs (`ahead`) and about when it starts (`eta_s`), or why it is not in
line (`waiting`: a limit holds it back, its kind is paused).

Once a pass (JOBCAST_QUEUE_PLACE_INTERVAL_S), and only for the jobs someone watches in this
process, the places are read in a few pipelined round trips (jobcast/queries/queue_position.py);
a job's watchers get an event only when its place changed, or a watcher joined since the last
one. The event carries no seq: it is not in the job's history, a reconnecting watcher gets the
current place on the next pass, and it never moves a watcher's resume position. `ahead` null:
the job is not in line (held back, paused, or not due: `waiting` says why, if it is one of the
first two), or has started.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from jobcast.protocol import dumps
from jobcast.queries.queue_position import DispatchRate, Place, places
from jobcast.server.fanout.events import Event
from jobcast.server.fanout.hub import Hub
from jobcast.server.fanout.topics import JobTopic
from jobcast.store.shards import Shards

log = logging.getLogger(__name__)

QUEUE = b"queue"


def queue_event(job_id: str, place: Place | None) -> Event:
    data = {
        "type": QUEUE.decode(),
        "job_id": job_id,
        "ahead": place.ahead if place else None,
        "eta_s": place.eta_s if place else None,
        "waiting": place.waiting if place else None,
        "waiting_since": place.waiting_since if place else None,
    }
    return Event(job_id, 0, QUEUE, dumps(data), terminal=False)


class QueuePlaces:
    def __init__(self, hub: Hub, shards: Shards) -> None:
        self.hub = hub
        self.shards = shards
        # Each shard's own: a job's place counts the jobs ahead of it on its shard, and its
        # shard's dispatch rate tells when it starts (workers claim from every shard in turn).
        self.rates = {store: DispatchRate() for store in shards.stores}
        # What each watched job's watchers were told last: its place, and how many watched then.
        self._told: dict[str, tuple[Place | None, int]] = {}

    async def run_once(self) -> int:
        """One pass; returns how many jobs' watchers were told."""
        watched = {
            w.topic.job_id: w.topic.key
            for w in self.hub.topics.values()
            if isinstance(w.topic, JobTopic) and (w.live or w.lockstep)
        }
        for gone in self._told.keys() - watched.keys():
            del self._told[gone]
        if not watched:
            return 0
        found: dict[str, Place | None] = {}
        for store, ids in self.shards.group(watched).items():
            found |= await places(store, ids, self.rates[store])
        told = 0
        for job_id, found_place in found.items():
            watchers = self.hub.topics.get(watched[job_id])
            if watchers is None:  # every watcher left during the reads
                continue
            # Something to say: a place in line, or why it is not in line.
            place = (
                found_place
                if found_place and (found_place.ahead is not None or found_place.waiting)
                else None
            )
            count = len(watchers.live) + len(watchers.lockstep)
            last = self._told.get(job_id)
            if last is None and place is None:
                continue  # nothing said while watched here: nothing to take back
            if last is not None and last[0] == place and count <= last[1]:
                continue
            if place is None:
                del self._told[job_id]
            else:
                self._told[job_id] = (place, count)
            self.hub.deliver(watchers, queue_event(job_id, place))
            told += 1
        return told

    async def run(self, interval_s: float) -> None:
        """Every `interval_s`, until cancelled; a Redis outage skips a pass."""
        while True:
            try:
                await self.run_once()
            except RedisError as e:
                log.warning("queue places not read: %s", e)
            await asyncio.sleep(interval_s)
