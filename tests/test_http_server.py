"""`jobcast web`'s HTTP server: the header-read timeout (slowloris) and unparseable requests
answered as problem+json, against a real `jobcast web` process."""

from __future__ import annotations

import asyncio
import inspect
import json
import time

from jobcast.server.http import server as http


async def read_answer(reader: asyncio.StreamReader, timeout: float = 20) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 answer (the server closes the connection after)."""
    raw = await asyncio.wait_for(reader.read(), timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_the_aiohttp_internals_relied_on_exist() -> None:
    for owner, names in http.INTERNALS.items():
        for name in names:
            # Slots and methods are class attributes; other instance attributes are set in __init__.
            assert hasattr(owner, name) or f"self.{name} =" in inspect.getsource(owner.__init__), (
                f"{owner.__name__}.{name} is gone: server/http/server.py needs a look"
            )


async def test_a_slow_header_trickle_is_cut_at_the_header_timeout(spawn) -> None:
    web = spawn("web", JOBCAST_HEADER_TIMEOUT_S="1")
    await web.wait_http()
    reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
    writer.write(f"GET /api/kinds HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n".encode())
    started = time.monotonic()

    async def trickle() -> None:
        # A header byte every 0.2 s, forever: the keep-alive timeout (75 s) would never cut it.
        while True:
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.2)

    trickling = asyncio.create_task(trickle())
    try:
        status, headers, body = await read_answer(reader)
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
        writer.close()
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 408
    assert time.monotonic() - started < 20  # cut long before the keep-alive timeout

    # A connection that sends nothing at all is cut too; an honest client is still served.
    reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
    status, _, _ = await read_answer(reader)
    writer.close()
    assert status == 408
    await web.wait_http()


async def test_a_kept_alive_connection_gets_the_timeout_afresh_per_request(spawn) -> None:
    web = spawn("web", JOBCAST_HEADER_TIMEOUT_S="1")
    await web.wait_http()
    reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n\r\n".encode()
    for _ in range(2):
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))[15:]
        )
        await reader.readexactly(length)
        # Idle between requests: governed by the keep-alive timeout, not the header timeout.
        await asyncio.sleep(1.5)
    writer.close()


async def test_unparseable_requests_get_problem_json_without_echo_or_traceback(spawn) -> None:
    web = spawn("web")
    await web.wait_http()
    marker = "SECRETMARKER"
    bad_requests = {
        "over-long URL": f"GET /api/jobs?{marker}={'a' * 9000} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "over-long header": f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-{marker}: {'b' * 9000}\r\n\r\n",
        "bad method": f"G{marker}(T / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "bad version": f"GET /{marker} HTTP/9.x\r\nHost: 127.0.0.1\r\n\r\n",
        "bad chunking": f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n{marker}\r\n",
    }
    for name, raw in bad_requests.items():
        reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
        writer.write(raw.encode())
        status, headers, body = await read_answer(reader)
        writer.close()
        assert status == 400, name
        assert headers["content-type"] == "application/problem+json", name
        assert headers["server"] == "jobcast", name
        problem = json.loads(body)
        assert problem["status"] == 400 and problem["type"].endswith("/bad-request"), name
        assert marker not in body.decode(), name
    await web.wait_http()
    log = web.log()
    assert "Traceback" not in log
    assert marker not in log
