"""Nobody reaches a job that is not theirs, by any route: every endpoint that takes a job id or
lists jobs, tried by every kind of caller against real `jobcast web` and `jobcast worker`
processes in owner mode. The routes come from the app's own OpenAPI document, which is built from
its router: an endpoint this file does not classify fails the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.helpers import demo
from tests.test_security import ADMIN_KEY, OTHER_SERVICE_KEY, SECRET, SERVICE_KEY, bearer, key_entry

# Routes that take a job id, with the method they are called by.
JOB_ROUTES = {
    ("get", "/api/jobs/{job_id}"),
    ("get", "/api/jobs/{job_id}/result"),
    ("get", "/api/jobs/{job_id}/events"),
    ("get", "/api/jobs/{job_id}/output/{stream}"),
    ("post", "/api/jobs/{job_id}/cancel"),
    ("post", "/api/jobs/{job_id}/retry"),
    ("get", "/api/jobs/{job_id}/children"),
    ("post", "/api/jobs/{job_id}/children/retry"),
    ("post", "/jobs/{job_id}/retry-parts"),
    ("get", "/api/batches/{job_id}"),
    ("post", "/api/jobs/{job_id}/run-now"),
    ("post", "/api/jobs/{job_id}/token"),
    ("delete", "/api/jobs/{job_id}/token"),
    ("get", "/reports/status/{job_id}"),
    ("get", "/jobs/{job_id}"),
    ("post", "/jobs/{job_id}/cancel"),
    ("post", "/jobs/{job_id}/retry"),
    ("post", "/jobs/{job_id}/run-now"),
}
# Routes that list or count jobs, or act on many: checked for what each caller sees.
LISTINGS = {
    ("get", "/api/jobs"),
    ("get", "/api/events"),
    ("get", "/api/stats"),
    ("get", "/api/finished"),
    ("get", "/api/workers"),
    ("get", "/api/workers/{name}"),
    ("get", "/workers/{name}"),
    ("get", "/api/scheduled"),
    ("get", "/api/failures"),
    ("get", "/failures"),
    ("get", "/metrics"),
    ("get", "/"),
    ("get", "/workers"),
    ("get", "/scheduled"),
    ("get", "/find"),
    ("get", "/api/ws"),
    ("post", "/api/bulk"),
    ("post", "/api/bulk/count"),
    ("post", "/scheduled/cancel"),
    ("post", "/scheduled/run-now"),
    ("post", "/api/kinds/{kind}/pause"),
    ("post", "/api/kinds/{kind}/resume"),
    ("post", "/kinds/{kind}/pause"),
    ("post", "/kinds/{kind}/resume"),
}
# Routes that take a schedule id: a schedule is an admin's or a service's own.
SCHEDULE_ROUTES = {
    ("get", "/api/schedules/{schedule_id}"),
    ("patch", "/api/schedules/{schedule_id}"),
    ("delete", "/api/schedules/{schedule_id}"),
    ("post", "/api/schedules/{schedule_id}/run"),
    ("post", "/schedules/{schedule_id}/pause"),
    ("post", "/schedules/{schedule_id}/resume"),
    ("post", "/schedules/{schedule_id}/run"),
}
# Routes that list schedules, or make one.
SCHEDULE_LISTINGS = {("get", "/api/schedules"), ("post", "/api/schedules"), ("get", "/schedules")}
# Routes that name no job and show none.
NO_JOBS = {
    ("get", "/api/kinds"),
    ("get", "/api/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/api/jobs"),
    ("post", "/api/jobs/batch"),
    ("post", "/api/batches"),
    ("post", "/api/events/token"),
    ("post", "/reports"),
    ("post", "/submit"),
    ("get", "/favicon.ico"),
    ("get", "/static/{filename}"),
    ("get", "/login"),
    ("post", "/login"),
    ("post", "/logout"),
}
REFUSED = {401, 403, 404}
# What a modern browser says of a form it posts from the page itself (past the CSRF checks, so
# that what is tested is who may act).
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@dataclass
class Caller:
    name: str
    session: aiohttp.ClientSession
    headers: dict[str, str]


@pytest.fixture
async def deployment(spawn) -> str:
    keys = [
        key_entry("ops", "admin", ADMIN_KEY),
        key_entry("shop", "service", SERVICE_KEY),
        key_entry("billing", "service", OTHER_SERVICE_KEY),
    ]
    web = spawn("web", JOBCAST_SECRET=SECRET, JOBCAST_API_KEYS=",".join(keys))
    spawn("worker")
    await web.wait_http()
    return web.url


@pytest.fixture
async def callers() -> AsyncIterator[dict[str, Caller]]:
    def browser() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    made = {
        "cookie A": Caller("cookie A", browser(), SAME_ORIGIN),
        "cookie B": Caller("cookie B", browser(), SAME_ORIGIN),
        "service shop": Caller("service shop", aiohttp.ClientSession(), bearer(SERVICE_KEY)),
        "service billing": Caller("service billing", aiohttp.ClientSession(), bearer(OTHER_SERVICE_KEY)),
        "admin": Caller("admin", aiohttp.ClientSession(), bearer(ADMIN_KEY)),
        # No cookie kept (an IP host's cookies are dropped): a new anonymous caller each time.
        "nobody": Caller("nobody", aiohttp.ClientSession(), SAME_ORIGIN),
    }
    yield made
    for caller in made.values():
        await caller.session.close()


async def call(caller: Caller, method: str, url: str, **kwargs: Any) -> tuple[int, str]:
    headers = {**caller.headers, **kwargs.pop("headers", {})}
    async with caller.session.request(method, url, headers=headers, allow_redirects=False, **kwargs) as r:
        where = r.headers.get("Location", "")  # a redirect names what it leads to
        if r.content_type == "text/event-stream":  # up to its first event's data: a snapshot
            lines = []
            while len(lines) < 20 and not (lines and lines[-1].startswith("data:")):
                lines.append((await r.content.readline()).decode())
            return r.status, where + "".join(lines)
        return r.status, where + await r.text()


async def test_every_route_is_classified(deployment: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(deployment + "/api/openapi.json") as r:
        document = await r.json()
    routes = {(method, path) for path, ops in document["paths"].items() for method in ops}
    known = JOB_ROUTES | LISTINGS | NO_JOBS | SCHEDULE_ROUTES | SCHEDULE_LISTINGS
    assert routes - known == set(), "classify the new route in this file"
    assert known - routes == set(), "a route this file names is gone"


async def test_a_schedule_is_its_makers_and_the_admins_only(
    deployment: str, callers: dict[str, Caller]
) -> None:
    url = deployment
    body = {"id": "shop-nightly", "kind": "demo", "cron": "0 2 * * *", "params": {"steps": 1}}
    status, made = await call(callers["service shop"], "POST", url + "/api/schedules", json=body)
    assert status == 201, made
    for caller in callers.values():
        if caller.name in ("service shop", "admin"):
            status, _ = await call(caller, "GET", url + "/api/schedules/shop-nightly")
            assert status == 200, caller.name
            continue
        for method, path in sorted(SCHEDULE_ROUTES):
            target = url + path.format(schedule_id="shop-nightly")
            status, answer = await call(caller, method.upper(), target, json={"enabled": False})
            assert status in REFUSED, (caller.name, method, path, status, answer[:200])
        for path in ("/api/schedules", "/schedules"):
            status, listed = await call(caller, "GET", url + path)
            assert status in {200, *REFUSED} and "shop-nightly" not in listed, (caller.name, path)
        # Browsers may not make schedules; another service makes its own.
        status, _ = await call(
            caller, "POST", url + "/api/schedules", json={**body, "id": f"x-{len(caller.name)}"}
        )
        assert (status == 201) == (caller.name == "service billing"), caller.name
    status, still = await call(callers["admin"], "GET", url + "/api/schedules/shop-nightly")
    assert status == 200 and '"enabled":true' in still.replace(" ", ""), "a stranger's action reached it"
    # Run now by its maker: the job is the service's own.
    status, ran = await call(callers["service shop"], "POST", url + "/api/schedules/shop-nightly/run")
    assert status == 202 and '"owner":"shop"' in ran.replace(" ", ""), ran


async def submit_as(caller: Caller, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with caller.session.post(url + "/api/jobs", json=body, headers=caller.headers) as r:
        assert r.status == 202, await r.text()
        return await r.json()


async def test_no_caller_reaches_a_job_that_is_not_theirs(
    deployment: str, callers: dict[str, Caller]
) -> None:
    url = deployment
    later = {**demo(3, 10), "delay_s": 3600}  # waiting, so that every route has it to show
    jobs = {
        "cookie A": await submit_as(callers["cookie A"], url, later),
        "service shop": await submit_as(callers["service shop"], url, {**later, "owner": "user-42"}),
    }
    assert jobs["service shop"]["owner"] == "shop/user-42"
    tried = 0
    for owner, job in jobs.items():
        allowed = {owner, "admin"}
        for caller in callers.values():
            if caller.name in allowed:
                status, _ = await call(caller, "GET", f"{url}/api/jobs/{job['id']}")
                assert status == 200, (caller.name, owner)
                continue
            for method, path in sorted(JOB_ROUTES):
                target = url + path.format(job_id=job["id"], stream="output")
                status, body = await call(caller, method.upper(), target)
                tried += 1
                assert status in REFUSED, (caller.name, method, path, status, body[:200])
                assert job["params"] is None or '"steps"' not in body, (caller.name, path)
            # The WebSocket: subscribing, and cancelling, name the job as unknown.
            async with caller.session.ws_connect(url + "/api/ws", headers=caller.headers, origin=url) as ws:
                await ws.send_json({"type": "subscribe", "job_id": job["id"]})
                assert (await ws.receive_json())["code"] == "not_found", caller.name
                await ws.send_json({"type": "cancel", "job_id": job["id"]})
                assert (await ws.receive_json())["code"] == "not_found", caller.name
    assert tried == len(JOB_ROUTES) * 8  # two jobs, four strangers each
    for job in jobs.values():
        async with callers["admin"].session.get(
            f"{url}/api/jobs/{job['id']}", headers=bearer(ADMIN_KEY)
        ) as r:
            assert (await r.json())["state"] == "queued", "a stranger's action reached the job"

    for caller in callers.values():
        mine = {j["id"] for owner, j in jobs.items() if caller.name in (owner, "admin")}
        others = {j["id"] for j in jobs.values()} - mine
        status, listed = await call(caller, "GET", url + "/api/jobs")
        assert status == 200 and not any(i in listed for i in others), caller.name
        assert all(i in listed for i in mine), caller.name
        for path in ("/", "/api/events", "/find?id=" + next(iter(others or mine))[:8]):
            status, body = await call(caller, "GET", url + path)
            assert status in {200, 302, 303, *REFUSED} and not any(i in body for i in others), (
                caller.name,
                path,
            )
        admin_only = ["/api/stats", "/api/workers", "/api/scheduled", "/api/failures"]
        admin_only += [
            "/metrics",
            "/workers",
            "/scheduled",
            "/failures",
            "/api/workers/none",
            "/workers/none",
        ]
        for path in admin_only:
            status, body = await call(caller, "GET", url + path)
            if caller.name == "admin":
                assert status == (404 if path.endswith("/none") else 200), path
            else:
                assert status in REFUSED and not any(i in body for i in jobs), (caller.name, path)
        status, _ = await call(caller, "GET", url + "/api/finished")
        assert status in {200, *REFUSED}, caller.name
        bulk = {"action": "cancel", "ids": [j["id"] for j in jobs.values()]}
        for method, path, body in (
            ("POST", "/api/bulk", bulk),
            ("POST", "/api/bulk/count", bulk),
            ("POST", "/api/kinds/demo/pause", None),
            ("POST", "/api/kinds/demo/resume", None),
        ):
            if caller.name != "admin":
                status, _ = await call(caller, method, url + path, json=body)
                assert status in REFUSED, (caller.name, path)
