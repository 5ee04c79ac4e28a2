"""A sans-I/O HTTP/1.1 client codec for small calls: a request in one buffer, an answer
read whole (bytes in, one complete response out).

It serves the transport's fast path for plain REST calls (``wrenn._transport.fast``),
where h11's event machinery was most of a small call's client CPU. It is strict where
strictness protects the connection pool: the body is delimited by ``Content-Length``
(all copies equal) or by ``Transfer-Encoding: chunked`` (which wins), or else by the
server closing the connection; 1xx interim answers are skipped; an answer to ``HEAD``
and a 204 or 304 have no body. A connection may be used again only when
:attr:`ResponseParser.reusable` is true: the answer was complete, the server did not
ask to close, and no stray byte followed it. Anything malformed raises
:class:`HTTP1Error` (the transport turns it into its protocol error).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, final

__all__ = [
    "CHUNKED",
    "LENGTH",
    "NO_BODY",
    "UNTIL_CLOSE",
    "HTTP1Error",
    "Head",
    "ResponseParser",
    "encode_request",
    "parse_head",
]

MAX_HEAD: Final = 64 * 1024  # status line + headers (h11 allows 16 KiB; servers send less)
MAX_CHUNK_LINE: Final = 4096

# RFC 9110 token characters for header names; values without CR, LF or NUL
_NAME: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")
_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]")

# how an answer's body is framed (:attr:`Head.framing`)
NO_BODY: Final = 0  # HEAD, 204, 304
LENGTH: Final = 1  # Content-Length
CHUNKED: Final = 2  # Transfer-Encoding: chunked
UNTIL_CLOSE: Final = 3  # the server closing the connection


class HTTP1Error(ValueError):
    """The server's bytes are not a valid HTTP/1.1 answer (or ended early)."""


def encode_request(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes | None
) -> bytes:
    """The request as one buffer: request line, headers, blank line, body. The caller
    supplies ``Host`` and ``Content-Length``; names and values are checked here (no
    CR/LF injection through a header)."""
    if not _NAME.fullmatch(method) or b" " in target or _BAD_VALUE.search(target):
        raise HTTP1Error("invalid request line")
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if not _NAME.fullmatch(name) or _BAD_VALUE.search(value):
            raise HTTP1Error(f"invalid header {name!r}")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    if body:
        parts.append(body)
    return b"".join(parts)


@final
class Head:
    """An answer's status line and headers, and how its body is framed."""

    __slots__ = ("framing", "headers", "interim", "keep_alive", "length", "status")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        *,
        framing: int,
        length: int,
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.headers = headers
        self.framing = framing
        self.length = length  # the body's length when framing is LENGTH, else 0
        self.keep_alive = keep_alive
        self.interim = 100 <= status < 200

    def get(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case), copies joined by ``,``."""
        values = [v for n, v in self.headers if n.lower() == name]
        return b",".join(values) if values else None


def parse_head(raw: bytes, *, head_request: bool = False) -> Head:
    """Parse an answer's status line and headers (``raw``: up to, not including, the
    blank line). Strict: a token header name, no CR/LF/NUL in a value, Content-Length
    copies all equal, only ``chunked`` as a transfer coding (which wins over a length,
    and then the connection is not reused), 101 refused. Raises :class:`HTTP1Error`."""
    lines = raw.split(b"\r\n")
    match = _STATUS.fullmatch(lines[0])
    if match is None:
        raise HTTP1Error(f"not an HTTP/1.x status line: {lines[0][:40]!r}")
    status = int(match[2])
    if status == 101:
        raise HTTP1Error("unexpected protocol switch (101)")
    headers: list[tuple[bytes, bytes]] = []
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    keep_alive = match[1] == b"1"
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _NAME.fullmatch(name):
            raise HTTP1Error("malformed header line in the answer")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise HTTP1Error("malformed header value in the answer")
        headers.append((name, value))
        low = name.lower()
        if low == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif low == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",")]
        elif low == b"connection" and b"close" in [t.strip().lower() for t in value.split(b",")]:
            keep_alive = False

    def head(framing: int, length: int = 0) -> Head:
        return Head(status, headers, framing=framing, length=length, keep_alive=keep_alive)

    if 100 <= status < 200 or head_request or status in (204, 304):
        return head(NO_BODY)
    if codings:
        if codings != [b"chunked"]:
            raise HTTP1Error("unsupported Transfer-Encoding in the answer")
        if lengths:  # RFC 9112 §6.3: chunked wins, but the sender is suspect
            keep_alive = False
        return head(CHUNKED)
    if lengths:
        if len(lengths) != 1:
            raise HTTP1Error("conflicting Content-Length values in the answer")
        (length,) = lengths
        if not _DIGITS.fullmatch(length):
            raise HTTP1Error("invalid Content-Length in the answer")
        return head(LENGTH, int(length))
    keep_alive = False
    return head(UNTIL_CLOSE)


@final
class ResponseParser:
    """Feed it the bytes of one answer; :meth:`feed` returns True once it is complete
    (then :attr:`status`, :attr:`headers` and :attr:`body` are set)."""

    def __init__(self, *, head_request: bool = False) -> None:
        self._head_request = head_request
        self._buf = bytearray()
        self._in_head = True
        self._framing = 0
        self._left = 0  # body bytes still due (Content-Length) or of the current chunk
        self._chunk_state = 0  # 0: size line, 1: data, 2: CRLF after data, 3: trailers
        self._parts: list[bytes] = []
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.keep_alive = True
        self.stray = False  # bytes after the answer: the connection is not reused

    @property
    def body(self) -> bytes:
        return b"".join(self._parts)

    @property
    def reusable(self) -> bool:
        """The answer is complete and the connection may carry the next request."""
        return self.complete and self.keep_alive and not self.stray

    def feed(self, data: bytes) -> bool:
        """Add bytes from the socket; True when the answer is complete."""
        if self.complete:
            if data:
                self.stray = True
            return True
        if not data:
            return False
        if self._in_head:
            self._buf += data
            if not self._parse_head():
                return False
            if self._no_body():
                if self._buf:
                    self.stray = True
                return True
            data = bytes(self._buf)
            self._buf.clear()
            if not data:
                return False
        return self._feed_body(data)

    def _no_body(self) -> bool:
        return self.complete  # a method: mypy would keep the narrowing from above

    def end_of_stream(self) -> None:
        """The server closed the connection: completes an answer delimited by the close,
        otherwise raises :class:`HTTP1Error`."""
        if self.complete:
            return
        if not self._in_head and self._framing == UNTIL_CLOSE:
            self.complete = True
            self.keep_alive = False
            return
        if self._in_head and not self._buf:
            raise HTTP1Error("the server closed the connection without answering")
        raise HTTP1Error("the server closed the connection before the answer was complete")

    # --- the head ----------------------------------------------------------------------

    def _parse_head(self) -> bool:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise HTTP1Error("the answer's headers are too large")
                return False
            if end > MAX_HEAD:
                raise HTTP1Error("the answer's headers are too large")
            head = parse_head(bytes(self._buf[:end]), head_request=self._head_request)
            del self._buf[: end + 4]
            if head.interim:
                continue  # an interim answer (100 Continue, 103 Early Hints): skip it
            self.status = head.status
            self.headers = head.headers
            self.keep_alive = head.keep_alive
            self._in_head = False
            self._framing = head.framing
            if head.framing == NO_BODY or (head.framing == LENGTH and head.length == 0):
                self.complete = True
            elif head.framing == LENGTH:
                self._left = head.length
            return True

    # --- the body ----------------------------------------------------------------------

    def _feed_body(self, data: bytes) -> bool:
        if self._framing == LENGTH:
            if len(data) < self._left:
                self._parts.append(data)
                self._left -= len(data)
                return False
            if len(data) > self._left:
                self.stray = True
                data = data[: self._left]
            self._parts.append(data)
            self._left = 0
            self.complete = True
            return True
        if self._framing == UNTIL_CLOSE:
            self._parts.append(data)
            return False
        self._buf += data
        return self._chunks()

    def _chunks(self) -> bool:
        buf = self._buf
        while True:
            if self._chunk_state == 1:  # chunk data
                take = min(self._left, len(buf))
                if take:
                    self._parts.append(bytes(buf[:take]))
                    del buf[:take]
                    self._left -= take
                if self._left:
                    return False
                self._chunk_state = 2
            if self._chunk_state == 2:  # the CRLF after a chunk's data
                if len(buf) < 2:
                    return False
                if buf[:2] != b"\r\n":
                    raise HTTP1Error("malformed chunk in the answer")
                del buf[:2]
                self._chunk_state = 0
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_CHUNK_LINE:
                    raise HTTP1Error("chunk header line too long in the answer")
                return False
            line = bytes(buf[:end])
            del buf[: end + 2]
            if self._chunk_state == 3:  # trailers, until an empty line
                if not line:
                    self.complete = True
                    if buf:
                        self.stray = True
                    return True
                continue
            size = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(size):
                raise HTTP1Error("invalid chunk size in the answer")
            self._left = int(size, 16)
            self._chunk_state = 1 if self._left else 3
