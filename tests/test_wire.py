"""The fast path's assumptions, checked on real aiohttp responses: it writes raw HTTP/1.1 chunks
and unmasked, uncompressed WebSocket frames behind aiohttp's back, so it must only be enabled when
the prepared response frames its bytes exactly that way."""

from __future__ import annotations

from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.test_utils import make_mocked_request

from jobcast.server.fanout.events import Event
from jobcast.server.fanout.wire import sse_chunk, sse_fast_path, sse_text


async def prepared_sse(version, *, chunked: bool, compress: bool) -> tuple[web.Request, web.StreamResponse]:
    request = make_mocked_request("GET", "/api/events", version=version, headers={"Accept-Encoding": "gzip"})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    if chunked:
        response.enable_chunked_encoding()
    if compress:
        response.enable_compression()
    await response.prepare(request)
    return request, response


async def test_the_sse_fast_path_only_for_uncompressed_http11_chunks() -> None:
    assert sse_fast_path(*await prepared_sse(HttpVersion11, chunked=True, compress=False))
    assert not sse_fast_path(*await prepared_sse(HttpVersion11, chunked=True, compress=True))
    assert not sse_fast_path(*await prepared_sse(HttpVersion11, chunked=False, compress=False))
    assert not sse_fast_path(*await prepared_sse(HttpVersion10, chunked=False, compress=False))


def test_an_event_is_framed_once_for_every_watcher() -> None:
    event = Event("j", 3, b"progress", b'{"seq":3}')
    text = sse_text(event)
    assert text == b'id: 3\nevent: progress\ndata: {"seq":3}\n\n' and sse_text(event) is text
    assert sse_chunk(event) == b"%x\r\n%s\r\n" % (len(text), text) and sse_chunk(event) is sse_chunk(event)
