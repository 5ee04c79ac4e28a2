"""Serve an ASGI app with hypercorn inside the caller's task group, under asyncio or trio.

The listening socket is bound here (port 0 picks a free port) and handed to hypercorn as
``fd://``, so the address is known before the server task starts and connections made
at once queue in the backlog instead of being refused.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

__all__ = ["current_backend", "serve_asgi"]

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def current_backend() -> str:
    """``"asyncio"`` or ``"trio"``: the event loop running the caller."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "trio"
    return "asyncio"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def _trio_send_race_taken_as_closed() -> None:
    """Hypercorn's trio server (0.17) sends EOF when a connection closes without taking
    the send lock its data sends hold: a send racing it (a WebSocket peer that closes
    while frames are going out) fails with ``trio.BusyResourceError``, which nothing
    catches, and that ends the whole server. Taken here as what it means: the connection
    is going away, as hypercorn treats a broken one."""
    import trio
    from hypercorn.events import Closed
    from hypercorn.trio import tcp_server

    original = tcp_server.TCPServer.protocol_send
    if getattr(original, "_wrenn_race", False):
        return

    async def protocol_send(self: Any, event: Any) -> None:
        try:
            await original(self, event)
        except trio.BusyResourceError:
            await self.protocol.handle(Closed())

    protocol_send._wrenn_race = True  # type: ignore[attr-defined]
    tcp_server.TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]


def _peer_gone_lets_the_connection_go(tcp_server: Any) -> None:
    """Hypercorn (0.18) keeps a connection whose client closed it while idle until its
    keep-alive timeout: the end of file ends the read loop, but the connection's task
    group still holds the keep-alive timer's task, so the socket sits in CLOSE_WAIT for
    ``keep_alive_timeout`` (30 s here) after every client that closes. A program that
    opens and closes clients in a loop (or a CLI run per command) then holds hundreds of
    descriptors. Here the read loop's end stops that timer, and none is started again
    once the peer has gone (a request still in flight then ends as it would have)."""
    from hypercorn.events import Updated

    server = tcp_server.TCPServer
    if getattr(server._read_data, "_wrenn_peer_gone", False):
        return
    read_data, protocol_send = server._read_data, server.protocol_send

    async def _read_data(self: Any) -> None:
        await read_data(self)
        self._wrenn_peer_gone = True
        await self.idle_task.stop()

    async def send(self: Any, event: Any) -> None:
        if isinstance(event, Updated) and event.idle and getattr(self, "_wrenn_peer_gone", False):
            return  # (idle now, with nobody left to send it a request: let it end)
        await protocol_send(self, event)

    _read_data._wrenn_peer_gone = True  # type: ignore[attr-defined]
    server._read_data = _read_data
    server.protocol_send = send


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    graceful_timeout: float = 1.0,
) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` until the block is left; yields the bound ``(host, port)``."""
    from hypercorn.config import Config

    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("wrenn_local.hypercorn")
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = 30
    config.websocket_ping_interval = None
    stop = anyio.Event()

    async def trigger() -> None:
        await stop.wait()

    backend = current_backend()
    error: Exception | None = None
    # Hypercorn is shielded from the caller's cancellation (Ctrl-C, SIGTERM, a deadline):
    # cancelled mid-shutdown it fails with errors of its own. Leaving the block always
    # shuts it down gracefully instead, bounded by graceful_timeout and a margin.
    shield = anyio.CancelScope(shield=True)

    async def run_hypercorn() -> None:
        with shield:
            if backend == "trio":
                from hypercorn.trio import serve as trio_serve
                from hypercorn.trio import tcp_server as trio_tcp

                _trio_send_race_taken_as_closed()
                _peer_gone_lets_the_connection_go(trio_tcp)
                await trio_serve(app, config, shutdown_trigger=trigger)
            else:
                from hypercorn.asyncio import serve as asyncio_serve
                from hypercorn.asyncio import tcp_server as asyncio_tcp

                _peer_gone_lets_the_connection_go(asyncio_tcp)
                await asyncio_serve(app, config, shutdown_trigger=trigger)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_hypercorn)
        try:
            yield host, bound_port
        except Exception as exc:
            # Shut hypercorn down gracefully (bounded by graceful_timeout) and raise the
            # error afterwards: letting it through would cancel hypercorn mid-shutdown,
            # which it reports as errors of its own, and wrap the error in a group.
            error = exc
        finally:
            stop.set()
            shield.deadline = anyio.current_time() + graceful_timeout + 5
    if error is not None:
        raise error
