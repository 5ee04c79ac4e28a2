"""A raw TCP peer for behaviour a well-behaved HTTP server never shows.

It reads one request head (and body, per Content-Length), counts it, then misbehaves as
told: closes without answering, answers half a response, or answers properly. It is a
real socket peer, so the SDK's real connection code is exercised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import anyio
import anyio.abc

from tests.tcp import serve_tcp

Mode = Literal["close", "truncate", "ok"]


class RawServer:
    def __init__(self, modes: list[Mode]) -> None:
        self.modes = modes
        self.requests = 0
        self.port = 0

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        # serve_tcp closes the stream
        buf = b""
        while True:
            try:
                while b"\r\n\r\n" not in buf:
                    chunk = await stream.receive()
                    buf += chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(rest) < length:
                rest += await stream.receive()
            buf = rest[length:]
            mode = self.modes[min(self.requests, len(self.modes) - 1)]
            self.requests += 1
            if mode == "close":
                return
            if mode == "truncate":
                await stream.send(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b'content-length: 100\r\n\r\n{"id": '
                )
                return
            payload = b'{"ok": true}'
            await stream.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
            )


@asynccontextmanager
async def raw_server(modes: list[Mode]) -> AsyncIterator[RawServer]:
    server = RawServer(modes)
    async with serve_tcp(server._handle) as port:
        server.port = port
        yield server
