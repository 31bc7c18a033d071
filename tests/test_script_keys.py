"""Every Lua script reaches the keys of one hash slot only: its deployment's.

On a Redis Cluster a script runs on the node that serves its keys, and only if all of them are in
one slot; jobcast's prefix is a hash tag there, so every key and channel a script reaches must carry
it. This derives each script's key set from what Redis itself ran rather than from reading the Lua:
MONITOR shows every EVALSHA with the keys it declared and then each command its script called
(`[0 lua]`), so each call's keys (as `COMMAND GETKEYS` finds them) and the channels it publishes on
are read off and hashed. The workload drives every one of jobcast's scripts through real
`jobcast web` and `jobcast worker` processes in owner mode with limits (the widest reach a claim
has), on the suite's single server: the check is the key names, which a cluster would hash alike.
A script that is not called, or a call of a script the test cannot name, fails it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from pydantic import SecretStr
from redis.crc import key_slot
from redis.exceptions import ResponseError

from jobcast.protocol import Keys
from jobcast.redis.client import create_redis
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore
from jobcast.store.scripts import SCRIPT_NAMES
from tests.helpers import demo, get_json, post_json, progressed, read_sse, submit, wait_for
from tests.test_kinds import upload_form
from tests.test_security import ADMIN_KEY, SECRET, SERVICE_KEY, bearer, key_entry

# A line of MONITOR's output: `+<time> [<db> <client>] "<arg>" "<arg>" ...`, each argument quoted
# and escaped as Redis's sdscatrepr does.
LINE = re.compile(rb"^\+[\d.]+ \[\d+ (?P<client>[^\]]+)\] (?P<args>.*)$")
ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b'"': b'"', b"\\": b"\\"}


def unquote(quoted: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(quoted):
        if quoted[i : i + 1] != b"\\":
            out += quoted[i : i + 1]
            i += 1
        elif quoted[i + 1 : i + 2] == b"x":
            out.append(int(quoted[i + 2 : i + 4], 16))
            i += 4
        else:
            out += ESCAPES[quoted[i + 1 : i + 2]]
            i += 2
    return bytes(out)


@dataclass
class ScriptCall:
    sha: str
    declared: list[bytes]
    commands: list[list[bytes]] = field(default_factory=list)


class Monitor:
    """Every script call Redis runs, with the commands it ran, as MONITOR reports them."""

    def __init__(self) -> None:
        self.calls: list[ScriptCall] = []

    async def follow(self, url: str) -> None:
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            writer.write(b"*1\r\n$7\r\nMONITOR\r\n")
            await writer.drain()
            assert await reader.readline() == b"+OK\r\n"
            while line := await reader.readline():
                self._read(line.rstrip(b"\r\n"))
        finally:
            writer.close()

    def _read(self, line: bytes) -> None:
        match = LINE.match(line)
        if match is None:
            return
        args = [unquote(arg) for arg in ARG.findall(match["args"])]
        if match["client"] == b"lua":
            # The script runs as one command: its commands follow its EVALSHA line at once.
            self.calls[-1].commands.append(args)
        elif args and args[0].lower() == b"evalsha":
            self.calls.append(ScriptCall(args[1].decode(), args[3 : 3 + int(args[2])]))


@pytest.fixture
async def monitor(redis_up: Any) -> AsyncIterator[Monitor]:
    seen = Monitor()
    following = asyncio.create_task(seen.follow(redis_up.url))
    try:
        yield seen
    finally:
        following.cancel()
        with pytest.raises(asyncio.CancelledError):
            await following


async def names_reached(
    redis: Any, command: list[bytes], cache: dict[tuple[bytes, ...], list[bytes]]
) -> list[bytes]:
    """The keys (and, for a message, the channel) one command reaches, as Redis itself finds them."""
    if command[0].lower() in (b"publish", b"spublish"):
        return [command[1]]
    found = cache.get(tuple(command))
    if found is None:
        try:
            found = await redis.command_getkeys(*command)
        except ResponseError:  # a command without keys (TIME, ...)
            found = []
        # (redis-py's reply callback for COMMAND GETKEYS gives text.)
        found = [key.encode() if isinstance(key, str) else key for key in found]
        cache[tuple(command)] = found
    return found


async def test_every_script_reaches_only_its_deployments_slot(
    monitor: Monitor, spawn, settings: Settings, redis_up: Any
) -> None:
    # The prefix as a cluster makes it, a hash tag. Owner mode with limits, so that claims take
    # owners' turns and hold jobs back: the scripts' widest reach.
    tagged = "{" + settings.key_prefix.strip("{}") + "}"
    keys = [key_entry("ops", "admin", ADMIN_KEY), key_entry("shop", "service", SERVICE_KEY)]
    extra = {
        "JOBCAST_KEY_PREFIX": tagged,
        "JOBCAST_SECRET": SECRET,
        "JOBCAST_API_KEYS": ",".join(keys),
        "JOBCAST_KIND_MAX_RUNNING": '{"demo": 2}',
        "JOBCAST_MAX_RUNNING_PER_OWNER": "3",
        "JOBCAST_HISTORY_GRACE_S": "0",
        "JOBCAST_LEASE_S": "1",
        "JOBCAST_JANITOR_INTERVAL_S": "0.2",
        "JOBCAST_KINDS": "tests.kinds_tree",
    }
    # The settings that shape the scripts' layout, and so their SHAs, as the processes get them.
    shaping = {"key_prefix": tagged, "secret": SecretStr(SECRET), "history_grace_s": 0, "lease_s": 1.0}
    redis = create_redis(redis_up.url)
    try:
        store = JobStore(redis, settings.model_copy(update=shaping))
        names = {store.scripts.command(name, {})[1]: name for name in SCRIPT_NAMES}
        # A job's history in the layout of earlier versions, which a worker moves when it starts.
        old = Keys(tagged).old_history("0" * 32)
        await redis.zadd(old, {b'{"job_id":"' + b"0" * 32 + b'","seq":1,"type":"queued"}': 1})
        web = spawn("web", **extra)
        worker = spawn("worker", **extra)
        await web.wait_http()
        async with (
            aiohttp.ClientSession(headers=bearer(SERVICE_KEY)) as session,
            aiohttp.ClientSession(headers=bearer(ADMIN_KEY)) as admin,
        ):
            url = web.url
            # create, dispatch (with its start), publish, hand_off (a limited kind's end claims for
            # the slot it frees); history (a resume from an id).
            first = [await submit(session, f"{url}/api/jobs", demo(3, 10)) for _ in range(4)]
            await read_sse(session, f"{url}/api/jobs/{first[0]['id']}/events", headers={"Last-Event-ID": "1"})
            for job in first:
                await ended(session, url, job["id"])
            # renew (a lease of 1 s is renewed every third of it), cancel, finish (the cancelled
            # attempt's end).
            long = await submit(session, f"{url}/api/jobs", demo(200, 20))
            await wait_for(lambda: progressed(session, url, long["id"], 2), what="the long job to run")
            await wait_for(lambda: seen(monitor, names, "renew"), what="a lease renewal")
            await post_json(session, f"{url}/api/jobs/{long['id']}/cancel", status=202)
            await ended(session, url, long["id"])
            # A failed attempt with another to come: finish puts it back.
            flaky = await submit(
                session, f"{url}/api/jobs", {"kind": "demo", "params": {"steps": 2, "fail_at_step": 1}}
            )
            await ended(session, url, flaky["id"])
            # run_now.
            later = await submit(session, f"{url}/api/jobs", {**demo(1, 0), "delay_s": 3600})
            await post_json(session, f"{url}/api/jobs/{later['id']}/run-now", status=200)
            await ended(session, url, later["id"])
            # quota (an upload is charged), output (the converter's log stream).
            async with session.post(
                f"{url}/api/jobs", data=upload_form("rows.csv", b"a,b\n1,2\n", {"to": "jsonl"})
            ) as response:
                assert response.status == 202, await response.text()
                converted = await response.json()
            await ended(session, url, converted["id"])
            # wait_children, rollup: a parent whose children report progress.
            tree = {"kind": "fanout", "params": {"children": 3, "steps": 3, "step_ms": 50}}
            parent = await submit(session, f"{url}/api/jobs", tree)
            await ended(session, url, parent["id"])
            # resume (a paused kind's jobs go back to their queues).
            await post_json(admin, f"{url}/api/kinds/demo/pause")
            parked = await submit(session, f"{url}/api/jobs", demo(1, 0))
            await post_json(admin, f"{url}/api/kinds/demo/resume")
            await ended(session, url, parked["id"])
            # schedule_tick.
            every_second = {
                "id": "each-second",
                "kind": "demo",
                "cron": "* * * * * *",
                "params": {"steps": 1},
            }
            await post_json(admin, f"{url}/api/schedules", every_second, status=201)
            await wait_for(lambda: seen(monitor, names, "schedule_tick"), what="a schedule's tick")
            async with admin.delete(f"{url}/api/schedules/each-second") as response:
                assert response.status == 204
            # compact (a finished job's history, its grace of 0 s over), then forget: a worker
            # that keeps one succeeded job deletes the rest.
            await wait_for(lambda: seen(monitor, names, "compact"), what="a history compacted")
            worker.stop()
            spawn("worker", **extra, JOBCAST_MAX_FINISHED_JOBS="1")
            await wait_for(lambda: seen(monitor, names, "forget"), what="a finished job deleted")
        # What each call reached.
        home = key_slot(tagged.encode())
        cache: dict[tuple[bytes, ...], list[bytes]] = {}
        called, strays = set(), []
        for call in list(monitor.calls):
            reached = list(call.declared)
            for command in call.commands:
                reached += await names_reached(redis, command, cache)
            name = names.get(call.sha)
            if name is None:
                assert not any(tagged.encode() in key for key in reached), f"an unknown script: {reached[:5]}"
                continue
            called.add(name)
            strays += [(name, key) for key in reached if key_slot(key) != home]
        assert not strays, sorted(set(strays))[:10]
        assert called == set(SCRIPT_NAMES), f"not called: {set(SCRIPT_NAMES) - called}"
    finally:
        await redis.aclose()


async def ended(session: aiohttp.ClientSession, url: str, job_id: str) -> None:
    async def done() -> bool:
        job = await get_json(session, f"{url}/api/jobs/{job_id}")
        return job["state"] in ("succeeded", "failed", "cancelled")

    await wait_for(done, timeout=60, what=f"job {job_id} to end")


def seen(monitor: Monitor, names: dict[str, str], name: str) -> bool:
    return any(names.get(call.sha) == name for call in list(monitor.calls))
