"""A TCP proxy that misbehaves on purpose, between the SDK and a real wrenn_local.

Each new connection takes the :class:`Fault` the test has set at that moment (the plan
is read at accept time, so a test can let its setup through and break only what
follows). A fault can add latency, cap bandwidth, reset the connection (RST) once a
number of bytes went through in either direction, close it cleanly part-way through a
response (truncation), or half-close it (the client sees end-of-stream while its own
side stays open). ``reset_all()`` breaks every live connection at once;
``silence_all()`` black-holes them: bytes are swallowed both ways and nothing — no FIN,
no RST — tells either side (a host that vanished, a dead NAT entry).

Mocks cannot produce these failures faithfully; a real proxy over real sockets can.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import attrs

from tests.tcp import serve_tcp

CHUNK = 16 * 1024


@attrs.frozen
class Fault:
    latency: float = 0.0  # seconds added before each chunk is forwarded, both ways
    bandwidth: float | None = None  # bytes per second, each direction
    reset_up_after: int | None = None  # RST once this many client->server bytes passed
    reset_down_after: int | None = None  # RST once this many server->client bytes passed
    close_down_after: int | None = None  # clean close (FIN both ways) after N bytes down
    half_close_down_after: int | None = None  # FIN to the client after N bytes down


NO_FAULT = Fault()


def _reset(stream: anyio.abc.SocketStream) -> None:
    """Make the coming close an abortive one (RST instead of FIN)."""
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@attrs.define
class FaultProxy:
    target_port: int
    api_key: str = ""
    fault: Fault = NO_FAULT
    port: int = 0
    connections: int = 0
    _live: set[anyio.abc.SocketStream] = attrs.field(factory=set)
    _broken: anyio.Event = attrs.field(factory=anyio.Event)
    _silent: anyio.Event = attrs.field(factory=anyio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset_all(self) -> None:
        """Reset every connection open right now (new ones are not affected)."""
        for stream in list(self._live):
            _reset(stream)
        self._broken.set()
        self._broken = anyio.Event()

    def silence_all(self) -> None:
        """Black-hole every connection open right now (new ones are not affected)."""
        self._silent.set()
        self._silent = anyio.Event()

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        fault = self.fault
        self.connections += 1
        broken = self._broken
        silent = self._silent
        try:
            upstream = await anyio.connect_tcp("127.0.0.1", self.target_port)
        except OSError:
            return
        async with upstream:
            self._live.update((client, upstream))
            try:
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        await broken.wait()
                        tg.cancel_scope.cancel()

                    async def up() -> None:
                        await self._pump(client, upstream, fault, silent, down=False)
                        tg.cancel_scope.cancel()

                    async def down() -> None:
                        await self._pump(upstream, client, fault, silent, down=True)
                        tg.cancel_scope.cancel()

                    tg.start_soon(watch)
                    tg.start_soon(up)
                    tg.start_soon(down)
            finally:
                self._live.difference_update((client, upstream))

    async def _pump(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        fault: Fault,
        silent: anyio.Event,
        *,
        down: bool,
    ) -> None:
        passed = 0
        reset_at = fault.reset_down_after if down else fault.reset_up_after
        close_at = fault.close_down_after if down else None
        half_at = fault.half_close_down_after if down else None
        limits = [x for x in (reset_at, close_at, half_at) if x is not None]
        while True:
            try:
                data = await source.receive(CHUNK)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                if silent.is_set():
                    await anyio.sleep_forever()  # black-holed: the end is not passed on
                try:
                    await sink.send_eof()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
                await anyio.sleep_forever()  # the other direction may still be busy
            if silent.is_set():
                continue  # black-holed: swallowed, and nobody is told
            if limits:
                data = data[: max(0, min(limits) - passed)]
            if fault.latency:
                await anyio.sleep(fault.latency)
            if fault.bandwidth:
                await anyio.sleep(len(data) / fault.bandwidth)
            if data:
                try:
                    await sink.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    return
            passed += len(data)
            if reset_at is not None and passed >= reset_at:
                _reset(source)
                _reset(sink)
                return
            if close_at is not None and passed >= close_at:
                return  # both sides are closed when the handler ends: a clean FIN
            if half_at is not None and passed >= half_at:
                await sink.send_eof()  # the client reads end-of-stream, may still write
                await anyio.sleep_forever()


@asynccontextmanager
async def fault_proxy(target_port: int, api_key: str = "") -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(target_port, api_key)
    async with serve_tcp(proxy.handle) as port:
        proxy.port = port
        yield proxy
