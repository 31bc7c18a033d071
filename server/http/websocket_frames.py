"""RFC 6455 framing: the frames clients send (masked, maybe fragmented) read into whole messages,
and the frames the server sends (unmasked, never fragmented).

No extension is ever negotiated (the handshake answers none), so every reserved bit must be
clear. What breaks the protocol raises `ProtocolError` with the close code the connection ends
with: 1002 for a malformed frame, 1007 for text that is not UTF-8, 1009 for a message over the
size limit, which is checked from a frame's header, before its payload is buffered.
"""

from __future__ import annotations

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = (CONTINUATION, TEXT, BINARY)
CONTROL_OPCODES = (CLOSE, PING, PONG)

# Close codes (RFC 6455 §7.4.1) jobcast sends.
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_TEXT = 1007
TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
# Codes a peer may send in its close frame: the defined ones, and those for libraries (3000-3999)
# and applications (4000-4999). 1005 and 1006 are never sent on the wire; 1004 is reserved.
VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


class ProtocolError(Exception):
    """The peer broke the protocol: the connection closes with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def encode(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (as a server sends)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()[:123]


def parse_close(payload: bytes) -> int | None:
    """The code of a peer's close frame (None: it gave none). Raises ProtocolError."""
    if not payload:
        return None
    if len(payload) == 1:
        raise ProtocolError(PROTOCOL_ERROR, "a close frame's code is two bytes")
    code = int.from_bytes(payload[:2], "big")
    if code not in VALID_CLOSE_CODES and not 3000 <= code <= 4999:
        raise ProtocolError(PROTOCOL_ERROR, f"close code {code} is not one a peer may send")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError(INVALID_TEXT, "a close frame's reason must be UTF-8") from None
    return code


def unmask(mask: bytes, payload: bytes) -> bytes:
    """XOR the payload with the repeated 4-byte key, as one big-integer operation (linear, in C)."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class FrameReader:
    """A client's frames, in whatever pieces the socket delivers them, read into messages one
    at a time, so that the caller parses no more than it has room for.

    `next` returns the next whole message: `(TEXT, str)`, `(BINARY, bytes)`, or a control frame
    `(CLOSE | PING | PONG, bytes)`, which may arrive between the fragments of a message; None
    until more bytes are fed. An idle reader holds nothing but its slots.
    """

    __slots__ = ("_opcode", "_parts", "_pending", "_pos", "_size", "max_message_bytes")

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._pending = b""  # bytes received and not read yet, from _pos on
        self._pos = 0
        self._parts: list[bytes] | None = None  # the fragments of a message not yet whole
        self._opcode = TEXT
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._pending = self._pending[self._pos :] + data if self._pending else data
        self._pos = 0

    @property
    def unread(self) -> int:
        return len(self._pending) - self._pos

    def next(self) -> tuple[int, str | bytes] | None:
        while (header := self._header(self._pending, self._pos)) is not None:
            fin, opcode, length, head = header
            buffer, start = self._pending, self._pos + head
            frame_end = start + 4 + length
            if frame_end > len(buffer):
                return None
            payload = unmask(buffer[start : start + 4], buffer[start + 4 : frame_end])
            # Nothing read is kept: an idle reader holds no bytes.
            self._pending, self._pos = (b"", 0) if frame_end == len(buffer) else (buffer, frame_end)
            if opcode in CONTROL_OPCODES:
                return opcode, payload
            if fin and self._parts is None:
                return self._message(opcode, payload)
            if self._parts is None:
                self._parts, self._opcode, self._size = [], opcode, 0
            self._parts.append(payload)
            self._size += length
            if fin:
                whole, self._parts = b"".join(self._parts), None
                return self._message(self._opcode, whole)
        return None

    def _header(self, buffer: bytes, pos: int) -> tuple[int, int, int, int] | None:
        """The frame at `pos`: (fin, opcode, payload length, header length without the mask),
        or None while its header is not all in."""
        end = len(buffer)
        if end - pos < 2:
            return None
        first, second = buffer[pos], buffer[pos + 1]
        fin, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
        if first & 0x70:
            raise ProtocolError(PROTOCOL_ERROR, "reserved bits set with no extension agreed")
        if not second & 0x80:
            raise ProtocolError(PROTOCOL_ERROR, "a client's frames must be masked")
        head = 2
        if length >= 126:
            head = 4 if length == 126 else 10
            if end - pos < head:
                return None
            length = int.from_bytes(buffer[pos + 2 : pos + head], "big")
        self._check(fin, opcode, length)
        return fin, opcode, length, head

    def _check(self, fin: int, opcode: int, length: int) -> None:
        """Refuse a frame from its header alone: nothing of a frame that breaks the rules (or a
        message that would be too big) is buffered."""
        if opcode in CONTROL_OPCODES:
            if not fin or length > 125:
                raise ProtocolError(PROTOCOL_ERROR, "control frames are whole and at most 125 bytes")
            return
        if opcode not in DATA_OPCODES:
            raise ProtocolError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if opcode == CONTINUATION and self._parts is None:
            raise ProtocolError(PROTOCOL_ERROR, "a continuation frame with no message to continue")
        if opcode != CONTINUATION and self._parts is not None:
            raise ProtocolError(PROTOCOL_ERROR, "a new message before the last one ended")
        size = (self._size if opcode == CONTINUATION else 0) + length
        if size > self.max_message_bytes:
            raise ProtocolError(TOO_BIG, f"messages are at most {self.max_message_bytes} bytes")

    @staticmethod
    def _message(opcode: int, payload: bytes) -> tuple[int, str | bytes]:
        if opcode == BINARY:
            return BINARY, payload
        try:
            return TEXT, payload.decode()
        except UnicodeDecodeError:
            raise ProtocolError(INVALID_TEXT, "a text message must be UTF-8") from None
