"""Owners, roles and browser protections, against real `jobcast web` and `jobcast worker`
processes in owner mode (JOBCAST_SECRET set): nobody sees or touches a job that is not theirs, and
no page elsewhere acts through a user's browser."""

from __future__ import annotations

import gzip
import hashlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.helpers import demo, read_sse, wait_for, watch_to_end

ADMIN_KEY = "jc_admin-key-for-tests-0123456789"
SERVICE_KEY = "jc_service-key-for-tests-0123456789"
OTHER_SERVICE_KEY = "jc_other-service-key-for-tests-01234"
SECRET = "a-test-secret-that-signs-the-cookies"


def key_entry(name: str, role: str, key: str) -> str:
    return f"{name}:{role}:{hashlib.sha256(key.encode()).hexdigest()}"


def two_services(**env: str) -> dict[str, str]:
    """The environment of an owner-mode deployment with two service keys, shop's and billing's."""
    keys = [key_entry("shop", "service", SERVICE_KEY), key_entry("billing", "service", OTHER_SERVICE_KEY)]
    return {**env, "JOBCAST_SECRET": SECRET, "JOBCAST_API_KEYS": ",".join(keys)}


@pytest.fixture
async def owner_mode(spawn) -> Any:
    web = spawn(
        "web",
        JOBCAST_SECRET=SECRET,
        JOBCAST_API_KEYS=",".join(
            [
                key_entry("ops", "admin", ADMIN_KEY),
                key_entry("shop", "service", SERVICE_KEY),
                key_entry("billing", "service", OTHER_SERVICE_KEY),
            ]
        ),
        JOBCAST_CORS_ORIGINS="https://allowed.example",
    )
    spawn("worker")
    await web.wait_http()
    return web


async def browser_session() -> aiohttp.ClientSession:
    # unsafe: keep cookies for an IP address host (127.0.0.1), as a browser does.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture
async def browsers() -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    a, b = await browser_session(), await browser_session()
    yield a, b
    await a.close()
    await b.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def status_of(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> int:
    async with session.request(method, url, **kwargs) as response:
        await response.read()
        return response.status


async def submitted(session: aiohttp.ClientSession, url: str, body: Any = None, **kwargs: Any) -> dict:
    async with session.post(url + "/api/jobs", json=body or demo(3, 10), **kwargs) as response:
        assert response.status == 202, await response.text()
        return await response.json()


async def test_an_owner_sees_and_touches_only_their_own_jobs_and_an_admin_all(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, b = browsers
    job = await submitted(a, url)
    done = await watch_to_end(a, job["id"], base=url)
    assert done[-1]["type"] == "succeeded" and job["owner"].startswith("anon-")
    jid = job["id"]
    # Everything about A's job is "not found" for B: ids cannot be probed.
    for method, path in [
        ("GET", f"/api/jobs/{jid}"),
        ("GET", f"/api/jobs/{jid}/events"),
        ("GET", f"/api/jobs/{jid}/result"),
        ("POST", f"/api/jobs/{jid}/cancel"),
        ("POST", f"/api/jobs/{jid}/retry"),
        ("GET", f"/jobs/{jid}"),
        ("GET", f"/jobs/{jid[:8]}"),
    ]:
        assert await status_of(b, method, url + path) == 404, (method, path)
    async with b.get(url + "/api/jobs") as response:
        assert (await response.json())["jobs"] == []
    # Nor by naming A as the owner to list: that is for admins.
    assert await status_of(b, "GET", url + "/api/jobs", params={"owner": job["owner"]}) == 403
    async with b.ws_connect(url + "/api/ws") as ws:
        await ws.send_json({"type": "subscribe", "job_id": jid})
        assert (await ws.receive_json())["code"] == "not_found"
        await ws.send_json({"type": "cancel", "job_id": jid})
        assert (await ws.receive_json())["code"] == "not_found"
    # A can; so can an admin, who sees B's jobs as well.
    assert await status_of(a, "GET", f"{url}/api/jobs/{jid}/result") == 200
    # Long enough to be there still to cancel (a 30 ms job may end before the admin asks).
    other = await submitted(b, url, demo(100, 100))
    async with aiohttp.ClientSession(headers=bearer(ADMIN_KEY)) as admin:
        async with admin.get(url + "/api/jobs") as response:
            listed = {j["id"] for j in (await response.json())["jobs"]}
        assert {jid, other["id"]} <= listed
        assert await status_of(admin, "GET", f"{url}/api/jobs/{jid}") == 200
        assert await status_of(admin, "POST", f"{url}/api/jobs/{other['id']}/cancel") in (200, 202)
        # An admin lists one owner's jobs; the dashboard filters the same way.
        async with admin.get(url + "/api/jobs", params={"owner": job["owner"]}) as response:
            assert [j["id"] for j in (await response.json())["jobs"]] == [jid]
        async with admin.get(url + "/", params={"owner": other["owner"]}) as response:
            page = await response.text()
            assert f'data-job-id="{other["id"]}"' in page and f'data-job-id="{jid}"' not in page
    # A retry by its owner stays the owner's.
    await watch_to_end(b, other["id"], base=url)
    async with b.post(f"{url}/api/jobs/{other['id']}/retry") as response:
        assert response.status == 202 and (await response.json())["owner"] == other["owner"]


async def test_each_owner_feed_carries_only_their_jobs(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, b = browsers
    mine = await submitted(a, url)
    theirs = await submitted(b, url)
    for job in (mine, theirs):
        await watch_to_end(a if job is mine else b, job["id"], base=url)
    (snapshot,) = await read_sse(a, url + "/api/events", stop_after=1)
    assert [j["id"] for j in snapshot.data["jobs"]] == [mine["id"]]
    # Resumed from the start of A's feed: A's job's state changes, and nothing of B's.
    events = await read_sse(
        a, url + "/api/events", headers={"Last-Event-ID": f"{snapshot.data['epoch']}:0"}, stop_after=3
    )
    assert {e.data["job_id"] for e in events} == {mine["id"]}
    async with aiohttp.ClientSession(headers=bearer(ADMIN_KEY)) as admin:
        (everything,) = await read_sse(admin, url + "/api/events", stop_after=1)
    assert {mine["id"], theirs["id"]} <= {j["id"] for j in everything.data["jobs"]}


async def test_a_service_key_names_the_owner_and_a_browser_cannot(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, _ = browsers
    async with aiohttp.ClientSession(headers=bearer(SERVICE_KEY)) as service:
        job = await submitted(service, url, {**demo(2, 1), "owner": "user-42"})
        assert (job["owner"], job["submitted_by"]) == ("shop/user-42", "shop")
        own = await submitted(service, url)
        assert (own["owner"], own["submitted_by"]) == ("shop", "shop")
        # The article's endpoint: userId is the owner.
        async with service.post(url + "/reports", json={"userId": "user-7", "reportType": "sales"}) as r:
            assert r.status == 202
            status_url = (await r.json())["statusUrl"]
        async with service.get(url + status_url) as r:
            assert (await r.json())["owner"] == "shop/user-7"
        # It follows the jobs it submitted for its users and its own, and lists them.
        async with service.get(url + "/api/jobs") as r:
            assert {job["id"], own["id"]} <= {j["id"] for j in (await r.json())["jobs"]}
    async with a.post(url + "/api/jobs", json={**demo(2, 1), "owner": "user-42"}) as response:
        assert response.status == 422
        assert [e["field"] for e in (await response.json())["errors"]] == ["owner"]
    stranger = aiohttp.ClientSession(headers=bearer("jc_not-a-key"))
    async with stranger, stranger.get(url + "/api/jobs") as response:
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_service_names_only_its_own_users(owner_mode) -> None:
    url = owner_mode.url
    shop = aiohttp.ClientSession(headers=bearer(SERVICE_KEY))
    billing = aiohttp.ClientSession(headers=bearer(OTHER_SERVICE_KEY))
    async with shop, billing:
        theirs = await submitted(billing, url, {**demo(2, 1), "owner": "user-42"})
        # Naming the other service, or one of its users, plants nothing in their namespace.
        planted = await submitted(shop, url, {**demo(2, 1), "owner": "billing", "delay_s": 3600})
        assert (planted["owner"], planted["submitted_by"]) == ("shop/billing", "shop")
        async with shop.post(url + "/api/jobs", json={**demo(2, 1), "owner": "billing/user-42"}) as r:
            assert r.status == 422 and [e["field"] for e in (await r.json())["errors"]] == ["owner"]
        # Neither sees the other's jobs, listed or by id.
        async with billing.get(url + "/api/jobs") as r:
            listed = {j["id"] for j in (await r.json())["jobs"]}
        assert theirs["id"] in listed and planted["id"] not in listed
        assert await status_of(shop, "GET", f"{url}/api/jobs/{theirs['id']}") == 404


async def test_an_idempotency_key_never_replays_another_callers_job(owner_mode) -> None:
    url = owner_mode.url
    key = {"Idempotency-Key": "monthly-42"}
    body = {**demo(2, 1), "owner": "user-42"}
    shop = aiohttp.ClientSession(headers=bearer(SERVICE_KEY))
    billing = aiohttp.ClientSession(headers=bearer(OTHER_SERVICE_KEY))
    async with shop, billing:
        theirs = await submitted(billing, url, body, headers=key)
        mine = await submitted(shop, url, body, headers=key)  # 202: a job of its own, not a replay
        assert mine["id"] != theirs["id"] and mine["owner"] == "shop/user-42"
        # The same through a batch item's idempotency_key: each caller's item makes its own job.
        item = {"jobs": [{**body, "idempotency_key": "batch-7"}]}
        async with billing.post(url + "/api/jobs/batch", json=item) as r:
            (first,) = (await r.json())["results"]
        async with shop.post(url + "/api/jobs/batch", json=item) as r:
            (second,) = (await r.json())["results"]
        assert (first["status"], second["status"]) == (202, 202)
        assert second["job"]["id"] != first["job"]["id"]
        async with shop.post(url + "/api/jobs", json=body, headers=key) as replay:
            assert replay.status == 200 and (await replay.json())["id"] == mine["id"]


async def test_idempotency_keys_belong_to_their_owner(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, b = browsers
    key = {"Idempotency-Key": "order-1"}
    first = await submitted(a, url, headers=key)
    # B using the same key gets a job of its own, not A's.
    second = await submitted(b, url, headers=key)
    assert second["id"] != first["id"]
    async with a.post(url + "/api/jobs", json=demo(3, 10), headers=key) as response:
        assert response.status == 200 and (await response.json())["id"] == first["id"]


async def test_counters_and_metrics_are_for_admins(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, _ = browsers
    assert await status_of(a, "GET", url + "/api/stats") == 403
    assert await status_of(a, "GET", url + "/metrics") == 403
    async with a.get(url + "/") as page:
        assert 'id="stats"' not in await page.text()
    async with aiohttp.ClientSession(headers=bearer(ADMIN_KEY)) as admin:
        assert await status_of(admin, "GET", url + "/api/stats") == 200
        assert await status_of(admin, "GET", url + "/metrics") == 200


async def test_an_operator_signs_in_with_an_admin_key(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, _ = browsers
    modern = {"Sec-Fetch-Site": "same-origin"}  # as a current browser's form post says
    async with a.post(url + "/login", data={"key": SERVICE_KEY}, headers=modern) as refused:
        assert refused.status == 401 and "not an admin API key" in await refused.text()
    async with a.post(
        url + "/login", data={"key": ADMIN_KEY}, allow_redirects=False, headers=modern
    ) as signed:
        assert signed.status == 303
        cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert await status_of(a, "GET", url + "/api/stats") == 200
    async with a.get(url + "/") as page:
        assert 'id="stats"' in await page.text()
    assert await status_of(a, "POST", url + "/logout", allow_redirects=False, headers=modern) == 303
    assert await status_of(a, "GET", url + "/api/stats") == 403
    # Neither keys nor cookies reach the log.
    log = owner_mode.log()
    assert (
        ADMIN_KEY not in log and SERVICE_KEY not in log and cookie.split(";")[0].split("=", 1)[1] not in log
    )


async def test_pages_elsewhere_cannot_act_through_the_browser(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, _ = browsers
    await submitted(a, url)  # the browser holds its identity
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        async with a.post(url + "/api/jobs", json=demo(2, 1), headers=headers) as response:
            assert response.status == 403, headers
            assert response.headers["Content-Type"] == "application/problem+json"
        form = aiohttp.FormData({"kind": "demo", "demo.steps": "2"})
        assert await status_of(a, "POST", url + "/submit", data=form, headers=headers) == 403
    async with a.get(url + "/api/jobs") as response:
        assert len((await response.json())["jobs"]) == 1  # nothing was created
    # The same page, or one the operator allowed, may.
    for origin in (url, "https://allowed.example"):
        async with a.post(url + "/api/jobs", json=demo(2, 1), headers={"Origin": origin}) as response:
            assert response.status == 202, origin
    assert (
        await status_of(
            a, "POST", url + "/api/jobs", json=demo(2, 1), headers={"Sec-Fetch-Site": "same-origin"}
        )
        == 202
    )
    # A WebSocket from a foreign origin is refused before the upgrade, cookie or not.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await a.ws_connect(url + "/api/ws", origin="https://evil.example")
    assert refused.value.status == 403
    async with a.ws_connect(url + "/api/ws", origin="https://allowed.example") as ws:
        await ws.send_json({"type": "subscribe_feed"})
        assert (await ws.receive_json()) == {"type": "subscribed", "feed": True}


async def test_single_user_mode_listens_on_loopback_only(spawn) -> None:
    exposed = spawn("web", JOBCAST_HOST="0.0.0.0")
    assert await exposed.wait_exit() != 0
    (line,) = [line for line in exposed.log().splitlines() if line.strip()]
    assert "refusing to listen on 0.0.0.0 without JOBCAST_SECRET" in line
    local = spawn("web")
    await local.wait_http()
    assert "single-user mode (no JOBCAST_SECRET)" in local.log()


@pytest.mark.parametrize("secret", ["", "x", "31-bytes-is-one-byte-too-short!"])
async def test_a_short_secret_is_refused_at_start(spawn, secret: str) -> None:
    # Owner mode on a guessable secret would let anyone sign an admin cookie, and skip the
    # loopback-only guard of single-user mode.
    for command in ("web", "worker"):
        process = spawn(command, JOBCAST_SECRET=secret, JOBCAST_HOST="0.0.0.0")
        assert await process.wait_exit() != 0
        (line,) = [line for line in process.log().splitlines() if line.strip()]
        assert line.startswith(f"jobcast {command}: JOBCAST_SECRET: a secret needs at least 32 bytes")
        assert "secrets.token_urlsafe(32)" in line


async def test_a_malformed_api_key_entry_is_refused_at_start_in_one_line(spawn) -> None:
    # As an unset variable comes out of a compose file that a tool failed to interpolate.
    good = "ops:admin:" + "ab" * 32
    web = spawn("web", JOBCAST_SECRET=SECRET, JOBCAST_API_KEYS=f"{good},${{JOBCAST_API_KEYS-}}")
    assert await web.wait_exit() != 0
    (line,) = [line for line in web.log().splitlines() if line.strip()]
    assert line == "jobcast web: JOBCAST_API_KEYS: '${JOBCAST_API_KEYS-}' is not name:service|admin:sha256hex"


def crafted_token(scope: dict[str, Any], age_s: float, born_s_ago: float | None = None) -> str:
    """A token signed with the deployment's secret, made `age_s` ago, of a renewal chain begun
    `born_s_ago` (by default when it was made)."""
    scope = {**scope, "born": int(time.time() - (age_s if born_s_ago is None else born_s_ago))}
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age_s)

    return URLSafeTimedSerializer(SECRET, salt="jobcast-stream", signer=Then).dumps(scope)


async def test_a_stream_token_opens_its_own_job_only(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, b = browsers
    mine = await submitted(a, url, demo(5, 20))
    theirs = await submitted(b, url)
    token = mine["stream_token"]
    assert token and f"token={token}" in mine["links"]["events"]
    async with aiohttp.ClientSession() as elsewhere:  # no cookie, no key: only the token
        events = await read_sse(elsewhere, url + mine["links"]["events"], headers={"Last-Event-ID": "0"})
        assert events[-1].event == "succeeded"
        refusals = {
            "for another stream": f"/api/jobs/{theirs['id']}/events?token={token}",
            "tampered": f"/api/jobs/{mine['id']}/events?token={token[:-2]}xx",
            "malformed": f"/api/jobs/{mine['id']}/events?token=not-a-token",
            "expired": f"/api/jobs/{mine['id']}/events?token={crafted_token({'job': mine['id']}, 7200)}",
        }
        for reason, path in refusals.items():
            async with elsewhere.get(url + path) as response:
                assert response.status == 401, reason
                assert reason in (await response.json())["detail"]
        async with elsewhere.ws_connect(url + "/api/ws") as ws:
            await ws.send_json({"type": "subscribe", "job_id": theirs["id"], "token": token})
            refused = await ws.receive_json()
            assert refused["code"] == "bad_token" and "another stream" in refused["message"]
            await ws.send_json(
                {"type": "subscribe", "job_id": mine["id"], "token": token, "last_event_id": 0}
            )
            assert (await ws.receive_json())["type"] == "subscribed"
            assert (await ws.receive_json())["type"] == "queued"
        # A token that has not expired buys a fresh one; an expired one does not.
        async with elsewhere.post(f"{url}/api/jobs/{mine['id']}/token", json={"token": token}) as response:
            assert response.status == 200
            fresh = await response.json()
        # It lasts a full term from now (JOBCAST_STREAM_TOKEN_TTL_S, an hour) and opens the stream.
        assert fresh["expires_at"] > time.time() + 3500
        assert await status_of(elsewhere, "GET", f"{url}/api/jobs/{mine['id']}?token=x") == 404
        async with elsewhere.get(f"{url}/api/jobs/{mine['id']}/events?token={fresh['stream_token']}") as r:
            assert r.status == 200
        old = crafted_token({"job": mine["id"]}, 7200)
        async with elsewhere.post(f"{url}/api/jobs/{mine['id']}/token", json={"token": old}) as response:
            assert response.status == 401
        assert await status_of(elsewhere, "POST", f"{url}/api/jobs/{mine['id']}/token") == 404
    assert await status_of(a, "POST", f"{url}/api/jobs/{mine['id']}/token") == 200
    # Tokens travel in query strings: the access log shows them redacted.
    log = owner_mode.log()
    assert token not in log and fresh["stream_token"] not in log
    assert f"/api/jobs/{mine['id']}/events?token=[redacted]" in log


async def test_a_feed_token_opens_its_owners_feed_from_elsewhere(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, b = browsers
    mine = await submitted(a, url)
    await submitted(b, url)
    async with a.post(url + "/api/events/token") as response:
        token = (await response.json())["stream_token"]
    async with aiohttp.ClientSession() as elsewhere:
        (snapshot,) = await read_sse(elsewhere, f"{url}/api/events?token={token}", stop_after=1)
    assert [j["id"] for j in snapshot.data["jobs"]] == [mine["id"]]


async def test_cors_lets_allowed_origins_read_streams_and_the_client(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, _ = browsers
    job = await submitted(a, url)
    path = job["links"]["events"]
    async with aiohttp.ClientSession() as elsewhere:
        for origin, allowed in (("https://allowed.example", True), ("https://evil.example", False)):
            headers = {"Origin": origin, "Last-Event-ID": "0"}
            async with elsewhere.get(url + path, headers=headers) as response:
                assert response.status == 200  # the token opens the stream whoever asks
                assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed
            async with elsewhere.get(url + "/static/jobcast.js", headers={"Origin": origin}) as response:
                assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed
        preflight = {"Origin": "https://allowed.example", "Access-Control-Request-Method": "POST"}
        async with elsewhere.options(f"{url}/api/jobs/{job['id']}/token", headers=preflight) as response:
            assert response.status == 204
            assert "POST" in response.headers["Access-Control-Allow-Methods"]


async def test_an_allow_list_of_hosts_refuses_the_rest(aiohttp_client, settings) -> None:
    from pydantic import SecretStr

    from jobcast.server.app import create_app

    configured = settings.model_copy(
        update={"secret": SecretStr(SECRET), "allowed_hosts": "jobs.example.com, *.jobs.example.net"}
    )
    client = await aiohttp_client(create_app(configured))
    for host, status in [
        ("jobs.example.com", 200),
        ("jobs.example.com:443", 200),
        ("eu.jobs.example.net", 200),
        ("jobs.example.net", 400),
        ("attacker.example", 400),
        ("127.0.0.1", 400),
    ]:
        async with client.get("/api/kinds", headers={"Host": host}) as response:
            assert response.status == status, host


async def owner_app(aiohttp_client, settings, **limits: Any) -> Any:
    from pydantic import SecretStr

    from jobcast.server.app import create_app

    configured = settings.model_copy(update={"secret": SecretStr(SECRET), **limits})
    return await aiohttp_client(create_app(configured))


async def test_each_owner_has_a_submission_rate_and_delayed_jobs_their_own_limit(
    aiohttp_client, settings
) -> None:
    client = await owner_app(
        aiohttp_client, settings, max_submissions_per_minute=3, max_delayed_jobs=2, max_waiting_jobs=100
    )
    for _ in range(2):  # delayed work up to its limit...
        async with client.post("/api/jobs", json={**demo(2, 1), "delay_s": 3600}) as response:
            assert response.status == 202
    async with client.post("/api/jobs", json={**demo(2, 1), "delay_s": 3600}) as response:
        assert response.status == 429 and "delayed" in (await response.json())["detail"]
    # ...does not lock out work for now; the owner's rate does, at the fourth submission a minute.
    async with client.post("/api/jobs", json=demo(2, 1)) as response:
        assert response.status == 202
    async with client.post("/api/jobs", json=demo(2, 1)) as response:
        assert response.status == 429 and (await response.json())["type"].endswith("rate-limited")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Another owner (another browser) has a rate of its own.
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with other, other.post(f"http://127.0.0.1:{client.port}/api/jobs", json=demo(2, 1)) as response:
        assert response.status == 202


async def test_each_owner_has_a_bounded_number_of_streams(aiohttp_client, settings) -> None:
    client = await owner_app(aiohttp_client, settings, max_streams_per_owner=2, max_ws_subscriptions=1)
    job = await submitted(client, "")
    first = await client.get(f"/api/jobs/{job['id']}/events")
    assert first.status == 200
    ws = await client.ws_connect("/api/ws")
    # The third stream (SSE or WebSocket) of the same owner is refused...
    async with client.get(f"/api/jobs/{job['id']}/events") as third:
        assert third.status == 429 and third.headers["Retry-After"]
    # ...and one WebSocket watches at most JOBCAST_MAX_WS_SUBSCRIPTIONS jobs.
    other = await submitted(client, "")
    await ws.send_json({"type": "subscribe", "job_id": job["id"]})
    assert (await ws.receive_json())["type"] == "subscribed"
    await ws.receive_json()  # the snapshot
    await ws.send_json({"type": "subscribe", "job_id": other["id"]})
    assert (await ws.receive_json())["code"] == "too_many_subscriptions"
    # Closing one frees its place.
    first.close()
    await ws.close()
    from jobcast.server.security.auth import STREAM_COUNTS

    counts = client.app[STREAM_COUNTS]
    await wait_for(lambda: not counts.open, what="the server to notice both hang-ups")
    async with client.get(f"/api/jobs/{job['id']}/events") as again:
        assert again.status == 200


async def test_forms_from_browsers_that_say_nothing_of_their_origin_need_the_pages_token(
    owner_mode, browsers
) -> None:
    # An old browser sends neither Sec-Fetch-Site nor Origin: the form's action carries a token
    # tied to the session, which a page elsewhere cannot read.
    url = owner_mode.url
    a, b = browsers
    job = await submitted(a, url, demo(200, 50))
    async with a.get(f"{url}/jobs/{job['id']}") as page:
        html = await page.text()
    action = re.search(r'action="([^"]*/cancel\?csrf=[0-9a-f]+)"', html)
    assert action is not None
    async with b.get(url + "/") as other_page:
        other = re.search(r'\?csrf=([0-9a-f]+)"', await other_page.text())
    assert other is not None
    cancel = f"{url}/jobs/{job['id']}/cancel"
    form = {"data": {"from": "a form"}, "allow_redirects": False}
    assert await status_of(a, "POST", cancel, **form) == 403
    assert await status_of(a, "POST", f"{cancel}?csrf={other[1]}", **form) == 403
    # Masked afresh on every page (compressed pages must not repeat a secret), and each one works.
    async with a.get(f"{url}/jobs/{job['id']}") as page:
        again = re.search(r'action="([^"]*/cancel\?csrf=[0-9a-f]+)"', await page.text())
    assert again is not None and again[1] != action[1]
    masked = again[1].split("csrf=")[1]
    tampered = masked[:-1] + ("1" if masked[-1] == "0" else "0")
    assert await status_of(a, "POST", f"{cancel}?csrf={tampered}", **form) == 403
    assert await status_of(a, "POST", url + again[1].replace("&amp;", "&"), **form) == 303
    assert "csrf=[redacted]" in owner_mode.log() and action[1].split("csrf=")[1] not in owner_mode.log()


async def test_each_owner_has_a_limit_of_waiting_jobs(aiohttp_client, settings) -> None:
    client = await owner_app(aiohttp_client, settings, max_waiting_per_owner=2)
    first = await submitted(client, "")
    await submitted(client, "", {**demo(2, 1), "delay_s": 600})  # delayed jobs count too
    async with client.post("/api/jobs", json=demo(2, 1)) as response:
        assert response.status == 429 and "of your jobs" in (await response.json())["detail"]
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with other, other.post(f"http://127.0.0.1:{client.port}/api/jobs", json=demo(2, 1)) as response:
        assert response.status == 202  # another owner is not held back
    # A job that stops waiting frees its place.
    async with client.post(f"/api/jobs/{first['id']}/cancel") as response:
        assert response.status == 200
    await submitted(client, "")


# What a browser's own page sends with its form posts (without it, a form needs the CSRF token).
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def csv_upload(rows: int) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("kind", "convert")
    form.add_field("params", '{"to": "json"}')
    form.add_field("file", b"a,b\n" + b"1,2\n" * rows, filename="rows.csv", content_type="text/csv")
    return form


async def test_each_owner_has_a_disk_quota_that_sweeping_gives_back(aiohttp_client, settings) -> None:
    from jobcast.files.local import FileStore
    from jobcast.server.keys import STORE

    client = await owner_app(aiohttp_client, settings, disk_quota_bytes=10_000)
    async with client.post(
        "/api/jobs", data=csv_upload(1500), headers=SAME_ORIGIN
    ) as response:  # 6,004 bytes
        assert response.status == 202, await response.text()
        first = await response.json()
    async with client.post("/api/jobs", data=csv_upload(1500), headers=SAME_ORIGIN) as response:
        problem = await response.json()
        assert response.status == 413 and problem["type"].endswith("/disk-quota"), problem
    # Nothing of the refused job is left, on disk or in the count.
    assert [p.name for p in settings.files_dir.iterdir()] == [first["id"]]
    store = client.app[STORE]
    assert await store.quota.charge(first["id"], first["owner"], 0) == 6004
    # Another owner has a quota of their own.
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with (
        other,
        other.post(
            f"http://127.0.0.1:{client.port}/api/jobs", data=csv_upload(1500), headers=SAME_ORIGIN
        ) as response,
    ):
        assert response.status == 202
    # Expired files, once swept, give their bytes back.
    swept = FileStore(settings.files_dir).sweep(retention_s=-1)
    assert first["id"] in swept
    await store.quota.refund(swept)
    async with client.post("/api/jobs", data=csv_upload(1500), headers=SAME_ORIGIN) as response:
        assert response.status == 202


async def test_a_result_past_the_owners_quota_fails_its_job(aiohttp_client, settings, spawn) -> None:
    client = await owner_app(aiohttp_client, settings, disk_quota_bytes=20_000)
    spawn("worker", JOBCAST_DISK_QUOTA_BYTES="20000")
    async with client.post(
        "/api/jobs", data=csv_upload(1500), headers=SAME_ORIGIN
    ) as response:  # 6 KB in, ~30 KB out
        assert response.status == 202, await response.text()
        job = await response.json()
    events = await watch_to_end(client, job["id"])
    assert events[-1]["type"] == "failed" and "disk quota" in events[-1]["error"]["message"], events[-1]
    assert not list((settings.files_dir / job["id"] / "result").glob("*"))  # the file is removed


async def test_each_owner_has_an_hourly_cpu_budget(aiohttp_client, settings) -> None:
    # aggregate estimates 1 µs of CPU a row: a 10 s budget is 10M rows an hour.
    client = await owner_app(aiohttp_client, settings, cpu_budget_s_per_hour=10)
    heavy = {"kind": "aggregate", "params": {"rows": 4_000_000}}
    for _ in range(2):
        await submitted(client, "", heavy)
    async with client.post("/api/jobs", json=heavy) as response:
        assert response.status == 429 and "CPU budget" in (await response.json())["detail"]
        assert 1 <= int(response.headers["Retry-After"]) <= 3600
    # Kinds without an estimate still go through; one job over the whole budget is a 422.
    await submitted(client, "", demo(2, 1))
    async with client.post(
        "/api/jobs", json={"kind": "aggregate", "params": {"rows": 20_000_000}}
    ) as response:
        problem = await response.json()
        assert response.status == 422 and problem["errors"][0]["code"] == "over_budget"
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with other, other.post(f"http://127.0.0.1:{client.port}/api/jobs", json=heavy) as response:
        assert response.status == 202  # another owner's budget is their own


async def test_a_failed_attempts_traceback_is_for_operators_only(owner_mode, browsers) -> None:
    url = owner_mode.url
    owner, _ = browsers
    failing = {"kind": "demo", "params": {"steps": 2, "step_ms": 1, "fail_at_step": 1}}
    job = await submitted(owner, url, failing)
    events = await watch_to_end(owner, job["id"], base=url)
    assert events[-1]["type"] == "failed" and "Traceback" not in str(events)  # not in events
    async with owner.get(f"{url}/jobs/{job['id']}") as response:
        mine = await response.text()
    assert "DemoFailure" in mine and "Traceback" not in mine
    async with (
        aiohttp.ClientSession(headers=bearer(ADMIN_KEY)) as admin,
        admin.get(f"{url}/jobs/{job['id']}") as response,
    ):
        assert "Traceback (most recent call last)" in await response.text()


async def test_a_post_with_no_body_and_no_type_needs_the_pages_token(owner_mode, browsers) -> None:
    # A form, or fetch in no-cors mode, sends such a POST from any page: it is a form's request.
    url = owner_mode.url
    a, _ = browsers
    job = await submitted(a, url, demo(200, 50))
    async with a.post(f"{url}/api/jobs/{job['id']}/cancel", skip_auto_headers=("Content-Type",)) as r:
        assert r.status == 403 and (await r.json())["type"].endswith("/csrf")
    async with a.get(f"{url}/api/jobs/{job['id']}") as r:
        assert (await r.json())["state"] != "cancelled"


async def test_an_origin_of_another_scheme_is_another_origin(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, _ = browsers
    await submitted(a, url)  # the browser's identity
    https_twin = url.replace("http://", "https://")
    async with a.post(url + "/api/jobs", json=demo(2, 1), headers={"Origin": https_twin}) as r:
        assert r.status == 403
    async with a.post(url + "/api/jobs", json=demo(2, 1), headers={"Origin": url}) as r:
        assert r.status == 202


async def test_a_compressed_upload_is_refused_not_stored(owner_mode, browsers) -> None:
    url = owner_mode.url
    a, _ = browsers
    form = aiohttp.FormData()
    form.add_field("kind", "convert")
    form.add_field("params", '{"to": "json"}')
    form.add_field("file", gzip.compress(b"a,b\n1,2\n"), filename="rows.csv", content_type="text/csv")
    writer = form()
    for part, _, _ in writer._parts:
        if "filename=" in part.headers["Content-Disposition"]:
            part.headers["Content-Encoding"] = "gzip"
    async with a.post(url + "/api/jobs", data=writer) as r:
        assert r.status == 400 and "compressed" in (await r.json())["detail"]


def set_cookie_of(response: aiohttp.ClientResponse) -> str:
    return ";".join(response.headers.getall("Set-Cookie", []))


async def test_cookies_are_secure_when_a_trusted_proxy_says_https(spawn) -> None:
    proxied = spawn("web", JOBCAST_SECRET=SECRET, JOBCAST_TRUSTED_PROXIES="127.0.0.0/8")
    untrusted = spawn("web", JOBCAST_SECRET=SECRET)
    on_https = spawn("web", JOBCAST_SECRET=SECRET, JOBCAST_HTTPS="1")
    for web in (proxied, untrusted, on_https):
        await web.wait_http()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    async with aiohttp.ClientSession() as session:
        async with session.get(proxied.url + "/api/jobs", headers=forwarded) as r:
            cookie = set_cookie_of(r)
        assert cookie.startswith("__Host-jobcast=") and "Secure" in cookie and "Path=/" in cookie
        # The same headers from a peer nobody said to trust are anyone's to send.
        async with session.get(untrusted.url + "/api/jobs", headers=forwarded) as r:
            cookie = set_cookie_of(r)
        assert cookie.startswith("jobcast=") and "Secure" not in cookie
        async with session.get(on_https.url + "/api/jobs") as r:
            assert set_cookie_of(r).startswith("__Host-jobcast=")
    # The log names the client the trusted proxy names, and the peer otherwise.
    assert "203.0.113.9" in proxied.log() and "203.0.113.9" not in untrusted.log()


async def test_what_anonymous_callers_leave_in_redis_expires(owner_mode, redis, settings) -> None:
    url = owner_mode.url
    for _ in range(10):  # ten cookie-less visits: each is a new anonymous owner
        async with aiohttp.ClientSession() as stranger:
            async with stranger.get(url + "/api/events") as feed:
                assert feed.status == 200
                await feed.content.readline()
            await submitted(stranger, url, demo(2, 1))
    owned = [key async for key in redis.scan_iter(match=f"{settings.key_prefix}:*anon-*")]
    assert len(owned) >= 20  # each visit's feed position and owner index, at least
    forever = [key for key in owned if await redis.ttl(key) < 0]
    assert forever == []


async def admin_cookie(session: aiohttp.ClientSession, url: str) -> str:
    modern = {"Sec-Fetch-Site": "same-origin"}
    async with session.post(
        url + "/login", data={"key": ADMIN_KEY}, allow_redirects=False, headers=modern
    ) as r:
        assert r.status == 303
        return r.headers["Set-Cookie"].split(";")[0]


async def test_an_admin_session_ends_with_its_key_and_at_logout_everywhere(owner_mode, spawn) -> None:
    url = owner_mode.url
    async with aiohttp.ClientSession() as operator:
        cookie = await admin_cookie(operator, url)
        stolen = {"Cookie": cookie}  # the same cookie, kept elsewhere (another tab, a copy)
        assert await status_of(operator, "GET", url + "/api/stats", headers=stolen) == 200
        modern = {"Sec-Fetch-Site": "same-origin", **stolen}
        assert (
            await status_of(operator, "POST", url + "/logout", allow_redirects=False, headers=modern) == 303
        )
        # Signed out on the server: the copy is a stranger's now, in this process and any other.
        assert await status_of(operator, "GET", url + "/api/stats", headers=stolen) == 403
        other = spawn("web", JOBCAST_SECRET=SECRET, JOBCAST_API_KEYS=key_entry("ops", "admin", ADMIN_KEY))
        await other.wait_http()
        assert await status_of(operator, "GET", other.url + "/api/stats", headers=stolen) == 403
        # A fresh session dies with its key: restarted without the key, the cookie admits nobody.
        fresh = {"Cookie": await admin_cookie(operator, other.url)}
        assert await status_of(operator, "GET", other.url + "/api/stats", headers=fresh) == 200
        rotated = spawn(
            "web",
            JOBCAST_SECRET=SECRET,
            JOBCAST_API_KEYS=key_entry("ops", "admin", "jc_a-new-admin-key-0123456789ab"),
        )
        await rotated.wait_http()
        assert await status_of(operator, "GET", rotated.url + "/api/stats", headers=fresh) == 403


async def test_a_stream_token_chain_ends_and_a_jobs_tokens_can_be_revoked(
    owner_mode, browsers, spawn
) -> None:
    url = owner_mode.url
    a, _ = browsers
    job = await submitted(a, url, demo(300, 50))
    token, renew = job["stream_token"], f"{url}/api/jobs/{job['id']}/token"
    async with aiohttp.ClientSession() as holder:  # holds the token only
        async with holder.post(renew, json={"token": token}) as r:
            assert r.status == 200
        # A chain begun two days ago: its token still opens the stream, but renews no more.
        aged = crafted_token({"job": job["id"]}, 10, born_s_ago=2 * 86400)
        assert await status_of(holder, "GET", f"{url}/api/jobs/{job['id']}/events?token={aged}") == 200
        async with holder.post(renew, json={"token": aged}) as r:
            assert r.status == 401 and "chain" in (await r.json())["detail"]
        # The owner revokes the job's tokens: every one made until now stops working.
        assert await status_of(holder, "DELETE", renew) == 404  # only the owner may
        assert await status_of(a, "DELETE", renew) == 204
        assert await status_of(holder, "GET", f"{url}/api/jobs/{job['id']}/events?token={token}") == 401
        async with holder.post(renew, json={"token": token}) as r:
            assert r.status == 401 and "revoked" in (await r.json())["detail"]
        async with holder.ws_connect(url + "/api/ws", origin=url) as ws:
            await ws.send_json({"type": "subscribe", "job_id": job["id"], "token": token})
            assert (await ws.receive_json())["code"] == "bad_token"
    # A rotated secret revokes the tokens it signed; the owner's cookie still holds.
    async with a.post(renew) as r:
        fresh = (await r.json())["stream_token"]
    rotated = spawn(
        "web", JOBCAST_SECRET="a-brand-new-secret-0123456789abcdef", JOBCAST_OLD_SECRETS=f'["{SECRET}"]'
    )
    await rotated.wait_http()
    assert await status_of(a, "GET", f"{rotated.url}/api/jobs/{job['id']}?token={fresh}") == 200
    async with aiohttp.ClientSession() as holder:
        assert (
            await status_of(holder, "GET", f"{rotated.url}/api/jobs/{job['id']}/events?token={fresh}") == 401
        )


def coming_from(address: str) -> dict[str, str]:
    """A request's client address, as the trusted proxy in front of the web says it."""
    return {"X-Forwarded-For": address}


def behind_a_proxy(spawn: Any, **env: str) -> Any:
    """Owner mode, believing loopback's X-Forwarded-For (the tests play the proxy and the clients
    behind it), with two owners' limits per client address."""
    return spawn(
        "web",
        JOBCAST_SECRET=SECRET,
        JOBCAST_API_KEYS=key_entry("shop", "service", SERVICE_KEY),
        JOBCAST_TRUSTED_PROXIES="127.0.0.1/32",
        JOBCAST_ANONYMOUS_OWNERS_PER_ADDRESS="2",
        **env,
    )


async def test_anonymous_streams_share_their_addresss_limit(spawn) -> None:
    # A caller that keeps no cookie is a new owner at every request, and one that keeps one can
    # make as many as it likes: all of one address's anonymous streams share its limit.
    web = behind_a_proxy(spawn, JOBCAST_MAX_STREAMS_PER_OWNER="2")
    await web.wait_http()
    here, elsewhere = coming_from("203.0.113.7"), coming_from("198.51.100.9")
    opened = []
    async with aiohttp.ClientSession() as stranger:  # keeps no cookie for an IP host
        try:
            for _ in range(4):  # two owners' worth
                response = await stranger.get(web.url + "/api/events", headers=here)
                assert response.status == 200
                opened.append(response)
            async with stranger.get(web.url + "/api/events", headers=here) as refused:
                assert refused.status == 429 and refused.headers["Retry-After"]
            # A fresh cookie from the same address is no way around it...
            async with await browser_session() as browser:
                async with browser.get(web.url + "/healthz", headers=here):
                    pass
                async with browser.get(web.url + "/api/events", headers=here) as refused:
                    assert refused.status == 429
            # ...while other addresses and API keys have shares of their own.
            async with stranger.get(web.url + "/api/events", headers=elsewhere) as other:
                assert other.status == 200
            async with stranger.get(web.url + "/api/events", headers=bearer(SERVICE_KEY) | here) as keyed:
                assert keyed.status == 200
        finally:
            for response in opened:
                response.close()


async def test_anonymous_submissions_share_their_addresss_limits(spawn) -> None:
    # 18 cookie-less batches could once fill everyone's delayed-job limit: each request was a new
    # owner with limits of its own. Now an address's anonymous owners share two owners' worth, so
    # no one client can exhaust the global limit that every other caller needs too.
    web = behind_a_proxy(spawn, JOBCAST_MAX_WAITING_PER_OWNER="3", JOBCAST_MAX_DELAYED_JOBS="10")
    spawn("worker")
    await web.wait_http()
    here, elsewhere = coming_from("203.0.113.7"), coming_from("198.51.100.9")
    later = {**demo(2, 1), "delay_s": 3600}
    async with await browser_session() as browser, aiohttp.ClientSession() as stranger:
        mine = [await submitted(browser, web.url, later, headers=here) for _ in range(3)]
        async with stranger.post(
            web.url + "/api/jobs/batch", json={"jobs": [later] * 8}, headers=here
        ) as response:
            statuses = [item["status"] for item in (await response.json())["results"]]
        assert statuses == [202] * 3 + [429] * 5  # the address's second owner's worth, no more
        async with stranger.post(web.url + "/api/jobs", json=later, headers=here) as refused:
            problem = await refused.json()
            assert refused.status == 429 and problem["type"].endswith("/too-many-waiting"), problem
        # The global limit (10 delayed jobs) still has room for everyone else.
        await submitted(stranger, web.url, later, headers=elsewhere)
        await submitted(stranger, web.url, later, headers=bearer(SERVICE_KEY) | here)
        # A job that stops waiting gives its place back to the address.
        async with browser.post(f"{web.url}/api/jobs/{mine[0]['id']}/cancel", headers=here) as response:
            assert response.status in (200, 202), await response.text()
        await submitted(stranger, web.url, later, headers=here)
        async with stranger.post(web.url + "/api/jobs", json=later, headers=here) as refused:
            assert refused.status == 429


async def test_anonymous_submission_rate_and_uploads_are_counted_by_address(spawn) -> None:
    web = behind_a_proxy(spawn, JOBCAST_MAX_SUBMISSIONS_PER_MINUTE="3", JOBCAST_DISK_QUOTA_BYTES="10000")
    await web.wait_http()
    here, elsewhere = coming_from("203.0.113.7"), coming_from("198.51.100.9")
    async with aiohttp.ClientSession() as stranger:
        for _ in range(6):  # two owners' rates, each request a new owner
            await submitted(stranger, web.url, demo(2, 1), headers=here)
        async with stranger.post(web.url + "/api/jobs", json=demo(2, 1), headers=here) as refused:
            problem = await refused.json()
            assert refused.status == 429 and problem["type"].endswith("/rate-limited"), problem
        await submitted(stranger, web.url, demo(2, 1), headers=elsewhere)
        # Uploads: two owners' disk quota (20,000 bytes) for the address, whoever sends them.
        upload_from = coming_from("192.0.2.44") | SAME_ORIGIN
        for _ in range(3):  # 6,004 bytes each
            async with stranger.post(web.url + "/api/jobs", data=csv_upload(1500), headers=upload_from) as r:
                assert r.status == 202, await r.text()
        async with stranger.post(web.url + "/api/jobs", data=csv_upload(1500), headers=upload_from) as r:
            problem = await r.json()
            assert r.status == 413 and problem["type"].endswith("/disk-quota"), problem


async def test_a_deployment_can_take_jobs_from_keys_and_operators_only(spawn) -> None:
    web = behind_a_proxy(spawn, JOBCAST_ANONYMOUS_SUBMISSIONS="false")
    await web.wait_http()
    async with await browser_session() as browser:
        async with browser.get(web.url + "/") as page:
            assert page.status == 200 and 'id="submit-form"' not in await page.text()
        for path, body in (("/api/jobs", demo(2, 1)), ("/api/jobs/batch", {"jobs": [demo(2, 1)]})):
            async with browser.post(web.url + path, json=body) as refused:
                problem = await refused.json()
                assert refused.status == 401 and problem["type"].endswith("/unauthorized"), problem
                assert refused.headers["WWW-Authenticate"] == "Bearer"
        form = aiohttp.FormData({"kind": "demo", "steps": "2"})
        async with browser.post(web.url + "/submit", data=form, headers=SAME_ORIGIN) as refused:
            assert refused.status == 401
    async with aiohttp.ClientSession() as service:
        await submitted(service, web.url, demo(2, 1), headers=bearer(SERVICE_KEY))
        async with service.get(web.url + "/") as page:  # a caller without a cookie: no form either
            assert 'id="submit-form"' not in await page.text()
