"""jobcast's Lua scripts, and the one way they are called: named keys and arguments in, named
answers out.

Python owns the Redis layout (`protocol.Keys`). A script never builds a key name:

- `KEYS` are the call's own keys (a job's record, history and channel, ...), each named in the
  call's arguments (`keys`), so a script reads `K.job`, not `KEYS[1]`;
- `L` is the deployment's layout, written into each script's source as a Lua table when the
  process registers it: the keys that are not per call (queues, indexes, the feed, channels),
  the priorities in dispatch order, the states, event types and terminal states, the limits, and
  the answer statuses (so a script's SHA depends on the deployment's key prefix and limits);
- `ARGV[1]` is the call's named arguments, as JSON.

Each script answers with a JSON object whose `status` is a `Status`. Scripts reach keys of many
jobs (the dispatch script touches the jobs it finds), all under the deployment's prefix: on a
Redis Cluster the prefix is a hash tag, so every key of every call is in one slot, and Redis
enforces it (see `Scripts`).
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis

from jobcast.protocol import TERMINAL_STATES, EventType, Keys, Priority, State, epoch_ms, utcnow
from jobcast.settings import Settings

SCRIPT_NAMES = (
    *("publish", "create", "cancel", "dispatch", "renew", "finish", "quota", "compact", "forget"),
    *("resume", "run_now", "history", "migrate_history", "output", "schedule_tick", "hand_off"),
    *("wait_children", "rollup"),
)


class Status(StrEnum):
    """Every answer a script can give (the layout hands the same names to Lua)."""

    OK = "ok"
    # publish
    PUBLISHED = "published"
    REFUSED = "refused"  # the job has ended, or the caller's attempt is stale
    NOT_FOUND = "not_found"
    # create
    CREATED = "created"
    KEY_REUSED = "key_reused"  # the idempotency key made a job before
    ACTIVE_DUPLICATE = "active_duplicate"  # a job of the same unique key is waiting or running
    TOO_MANY_WAITING = "too_many_waiting"
    RATE_LIMITED = "rate_limited"
    ALREADY_RETRIED = "already_retried"
    ORIGINAL_GONE = "original_gone"
    NOT_RETRYABLE = "not_retryable"
    # cancel
    ENDED = "ended"
    CANCELLED = "cancelled"
    CANCEL_REQUESTED = "cancel_requested"
    # renew, finish
    HELD = "held"
    NOT_HOLDER = "not_holder"
    # quota
    OVER_QUOTA = "over_quota"
    # output
    OVER_LIMIT = "over_limit"
    TOO_MANY_STREAMS = "too_many_streams"
    # compact, forget
    NOT_FINISHED = "not_finished"
    # create, of a child
    ALREADY_SPAWNED = "already_spawned"  # an earlier attempt of its parent made it
    PARENT_ENDED = "parent_ended"
    TOO_MANY_CHILDREN = "too_many_children"


def layout(keys: Keys, settings: Settings) -> dict[str, Any]:
    """The deployment's layout table (`L` in every script)."""
    priorities = [p.value for p in Priority]  # in dispatch order: highest first
    owner_feed = keys.feed("")  # an owner's feed's keys are these with the owner after the channel
    held_ring = keys.kind_held_ring("\0").split("\0")  # around the kind
    return {
        "priorities": priorities,
        "queues": {p: keys.queue(p) for p in priorities},
        "running": {p: keys.running(p) for p in priorities},
        "leases": keys.leases,
        "fair": settings.fair_turns,
        "owner_queue_prefix": {p: keys.owner_queue(p, "") for p in priorities},
        "owner_rings": {p: keys.owner_ring(p) for p in priorities},
        "kind_running_prefix": keys.kind_running(""),
        "owner_running_prefix": keys.owner_running(""),
        "kind_started_prefix": keys.kind_started(""),
        # A kind's held jobs: prefix .. kind .. owner_infix .. owner; its ring: prefix .. kind .. ring_suffix.
        "kind_held_prefix": held_ring[0],
        "kind_held_ring_suffix": held_ring[1],
        "kind_held_owner_infix": keys.kind_held("\0", "\1").split("\0")[1].split("\1")[0],
        "owner_held_prefix": keys.owner_held(""),
        "held": keys.held,
        "claimed": keys.claimed,
        "job_prefix": keys.job(""),
        "history_prefix": keys.history(""),
        "channel_prefix": keys.channel(""),
        "output_prefix": keys.output("", 0, "").removesuffix(":0:"),
        "owner_feed_prefix": owner_feed.channel,
        "owner_feed_history_suffix": owner_feed.history.removeprefix(owner_feed.channel),
        "owner_feed_position_suffix": owner_feed.position.removeprefix(owner_feed.channel),
        "paused": keys.paused,
        "parked_prefix": keys.parked(""),
        "owner_waiting": keys.owner_waiting,
        "kind_waiting": keys.kind_waiting,
        "finished_minute": keys.finished("minute", ""),
        "finished_hour": keys.finished("hour", ""),
        "compact_due": keys.compact_due,
        "children_prefix": keys.children(""),
        "rollup_due": keys.rollup_due,
        "rollup_ms": 1000 / settings.progress_rate_hz,
        "history_grace_ms": settings.history_grace_s * 1000,
        "disk_usage": keys.disk_usage,
        "disk_charges": keys.disk_charges,
        "disk_quota": settings.disk_quota_bytes,
        "client_disk_quota": settings.disk_quota_bytes * settings.anonymous_owners_per_address,
        "queue_clock": keys.queue_clock,
        "queue_order": keys.queue_order,
        "index_all": keys.index_all,
        "index_ids": keys.index_ids,
        "index_top": keys.index_top,
        "index_clock": keys.index_clock,
        "state_index": {s.value: keys.index_state(s.value) for s in State},
        "feed": {
            "channel": keys.feed().channel,
            "history": keys.feed().history,
            "position": keys.feed().position,
        },
        # On a cluster, sharded pub/sub: a message goes to the nodes of its channel's slot (the
        # deployment's), not over the cluster bus to every node.
        "publish": "SPUBLISH" if settings.redis_cluster else "PUBLISH",
        "cancel_channel": keys.cancel_channel,
        "wake_channel": keys.wake_channel,
        "state": {s.value: s.value for s in State},
        "event": {t.value: t.value for t in EventType},
        "terminal": {s.value: True for s in TERMINAL_STATES},
        "history_max": settings.history_max_events,
        "retention_s": settings.retention_s,
        "status": {s.name.lower(): s.value for s in Status},
    }


# The scripts that write events, and so need jobcast/store/lua/events.lua.
PUBLISHING = ("publish", "create", "cancel", "dispatch", "output", "hand_off", "wait_children", "rollup")


# The scripts that claim jobs for a worker, and so need jobcast/store/lua/claim.lua.
CLAIMING = ("dispatch", "hand_off")


# The scripts that charge the disk quota, and so need jobcast/store/lua/disk.lua.
CHARGING = ("quota", "output")


def _source(name: str) -> str:
    lua = resources.files("jobcast.store") / "lua"
    parts = [
        "common",
        *(["events", "tree"] if name in PUBLISHING else []),
        *(["disk"] if name in CHARGING else []),
        *(["claim"] if name in CLAIMING else []),
        name,
    ]
    return "\n".join((lua / f"{part}.lua").read_text() for part in parts)


# Name maps a script reads by literal names only (`S.ok`, `L.event.progress`, `L.state.queued`).
NAMED = {"status": r"\bS\.(\w+)", "event": r"\bL\.event\.(\w+)", "state": r"\bL\.state\.(\w+)"}


def script_layout(full: dict[str, Any], source: str) -> dict[str, Any]:
    """The part of the layout a script's source reads: Redis builds `L` on every call, so each
    script gets the fields it names, and of the name maps the names it uses."""
    used = set(re.findall(r"\bL\.(\w+)", source))
    part = {name: full[name] for name in used if name in full}
    for name, pattern in NAMED.items():
        if name in part and not re.search(rf"\bL\.{name}\[", source):
            names = set(re.findall(pattern, source))
            part[name] = {k: v for k, v in full[name].items() if k in names}
    return part


def lua_table(value: Any) -> str:
    """`value` (the layout: dicts, lists, strings, numbers, booleans) as a Lua literal that
    builds what `cjson.decode` would make of its JSON. Strings keep printable ASCII and escape
    every other byte as `\\ddd`, which any Lua reads the same."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"no Lua literal for {value!r}")
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_LUA_CHARS[byte] for byte in value.encode()) + '"'
    if isinstance(value, dict):
        # Keys sorted: a dict built from a set (the terminal states, the names a script reads) is in
        # an order each process's string hashing picks, and so would the source and its SHA be.
        # Redis keeps every script it is sent until it restarts: each restarted process would add
        # its scripts again.
        items = sorted(((str(k), v) for k, v in value.items()), key=lambda item: item[0])
        return "{" + ",".join(f"[{lua_table(k)}]={lua_table(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "{" + ",".join(lua_table(item) for item in value) + "}"
    # None would be nil, where cjson.decode gives a (truthy) cjson.null: refuse it.
    raise TypeError(f"no Lua literal for {type(value).__name__}")


_LUA_CHARS = [chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}" for b in range(256)]


def text(value: str | bytes) -> str:
    """A script argument as text (event JSON and payloads are UTF-8)."""
    return value.decode() if isinstance(value, bytes) else value


def as_text(value: object) -> str:
    """A hash field's value as a script argument: bytes and str as text, numbers as digits."""
    return text(value) if isinstance(value, str | bytes) else str(value)


def factor(items: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The arguments every item has alike, and each item without them: a batch script reads an
    item's missing argument from the common ones (see create.lua). A batch's jobs mostly differ
    only in their ids and params; sent whole, Redis would decode the rest a thousand times."""
    if len(items) < 2:
        return {}, items
    common = {
        name: value
        for name, value in items[0].items()
        if all(name in item and item[name] == value for item in items)
    }
    if not common:
        return common, items
    return common, [{name: value for name, value in item.items() if name not in common} for item in items]


class Answer(dict[str, Any]):
    """A script's answer: `answer.status` is a Status; other fields by name."""

    @property
    def status(self) -> Status:
        # A dict lookup: calling the enum is a slow path, and a batch reads a thousand answers.
        return _STATUS_OF[self["status"]]


_STATUS_OF = {status.value: status for status in Status}


class Scripts:
    """The scripts registered on one Redis client."""

    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        full = layout(keys, settings)
        self._scripts = {}
        for name in SCRIPT_NAMES:
            source = _source(name)
            filled = source.replace("__LAYOUT__", lua_table(script_layout(full, source)), 1)
            if settings.redis_cluster:
                # A script that declares itself (Redis 7's shebang) may touch keys of one slot only:
                # on a cluster, Redis then refuses any call that would reach a second slot, where it
                # lets an undeclared script through as long as the keys are on the same node.
                filled = "#!lua\n" + filled
            self._scripts[name] = redis.register_script(filled)
        self.redis = redis

    def _argv(self, name: str, keys: dict[str, str], args: dict[str, Any]) -> tuple[list[str], list[bytes]]:
        named = {"keys": list(keys), "now_ms": epoch_ms(utcnow()), **args}
        return list(keys.values()), [orjson.dumps(named)]

    async def call(self, name: str, keys: dict[str, str] | None = None, **args: Any) -> Answer:
        """Run script `name` with its keys by name and its named arguments."""
        key_list, argv = self._argv(name, keys or {}, args)
        raw = await self._scripts[name](keys=key_list, args=argv)
        return Answer(orjson.loads(raw))

    async def call_many(self, name: str, calls: list[tuple[dict[str, str], dict[str, Any]]]) -> list[Answer]:
        """Run script `name` once per (keys, args), all in one round trip (not atomic together:
        each call is atomic on its own)."""
        script = self._scripts[name]
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                key_list, argv = self._argv(name, keys, args)
                await script(keys=key_list, args=argv, client=pipe)
            raw = await pipe.execute()
        return [Answer(orjson.loads(answer)) for answer in raw]

    async def call_batch(
        self,
        name: str,
        calls: list[tuple[dict[str, str], dict[str, Any]]],
        chunk: int,
        shared: dict[str, Any] | None = None,
    ) -> list[Answer]:
        """Run a batch-taking script (`create`) over every (keys, args), `chunk` items a call and
        all calls in one round trip: each item atomic on its own and answered on its own, what is
        shared (decoding the layout, the batch's bookkeeping, the `shared` arguments) paid once a
        call."""
        script = self._scripts[name]
        now_ms = epoch_ms(utcnow())
        parts = []
        for start in range(0, len(calls), chunk):
            part = calls[start : start + chunk]
            key_list = [key for keys, _ in part for key in keys.values()]
            common, items = factor([{"keys": list(keys), **args} for keys, args in part])
            named = {**(shared or {}), "now_ms": now_ms, "common": common, "jobs": items}
            parts.append((key_list, [orjson.dumps(named)]))
        if len(parts) == 1:
            # One call needs no pipeline, whose every execute first asks SCRIPT EXISTS: a round
            # trip per single submission.
            raw = [await script(keys=parts[0][0], args=parts[0][1])]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key_list, argv in parts:
                    await script(keys=key_list, args=argv, client=pipe)
                raw = await pipe.execute()
        return [Answer(item) for answer in raw for item in orjson.loads(answer)["answers"]]

    async def read(self, name: str, keys: dict[str, str], client: Any = None, **args: Any) -> Any:
        """Run a script that answers as Redis does rather than in JSON (`history`: a page of
        records); with `client`, queued on that pipeline."""
        key_list, argv = self._argv(name, keys, args)
        return await self._scripts[name](keys=key_list, args=argv, client=client)

    def command(self, name: str, keys: dict[str, str], **args: Any) -> tuple[Any, ...]:
        """The EVALSHA command for a call, for a caller that writes commands to Redis itself (the
        benchmark's publisher); `load` must have run on that Redis first."""
        key_list, argv = self._argv(name, keys, args)
        return ("EVALSHA", self._scripts[name].sha, len(key_list), *key_list, *argv)

    async def load(self, name: str) -> None:
        await self.redis.script_load(self._scripts[name].script)
