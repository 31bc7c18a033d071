"""The opening handshake (RFC 6455 §4.2): check the client's request, answer 101.

The answer goes through aiohttp like any other, so the app's response hooks (request id, security
headers) and the access log see it. No subprotocol and no extension is agreed: jobcast's messages
are JSON text, and its frames go out uncompressed (the same bytes to every watcher).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from aiohttp import HttpVersion11, web

from jobcast.server.http.problems import Problem

# RFC 6455 §1.3: the GUID the accept key is derived with.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def check(request: web.Request) -> str:
    """The accept key for a valid opening handshake; raises a 400 Problem saying what is wrong."""
    headers, slug = request.headers, "bad-websocket-handshake"
    if request.version < HttpVersion11:
        raise Problem(400, "a WebSocket needs HTTP/1.1", slug=slug)
    if "websocket" not in _tokens(headers.get("Upgrade", "")):
        raise Problem(400, "Upgrade: websocket is missing", slug=slug)
    if "upgrade" not in _tokens(headers.get("Connection", "")):
        raise Problem(400, "Connection: Upgrade is missing", slug=slug)
    if headers.get("Sec-WebSocket-Version", "").strip() != VERSION:
        raise Problem(
            400,
            f"only WebSocket version {VERSION} is spoken here",
            slug=slug,
            headers={"Sec-WebSocket-Version": VERSION},
        )
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        raise Problem(400, "Sec-WebSocket-Key must be 16 bytes in base64", slug=slug)
    return accept_key(key)


async def answer(request: web.Request) -> web.StreamResponse:
    """Check the handshake and send the 101 answer; the socket is then the WebSocket's."""
    response = web.StreamResponse(
        status=101,
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": check(request)},
    )
    # The connection is never an HTTP one again, whatever the request said.
    response.force_close()
    await response.prepare(request)
    return response
