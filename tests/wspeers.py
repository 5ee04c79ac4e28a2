"""Independent WebSocket peers for testing our client.

``websockets_server`` runs the `websockets` library's asyncio server in its own thread
and event loop, so it is a separate peer whatever backend the test runs on.
``raw_server`` is a wsproto server over plain anyio sockets that can do what a polite
library will not: frames glued to the 101 response, invalid UTF-8, a TCP cut at any byte.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from tests.tcp import serve_tcp

Handler = Callable[[Any], Awaitable[None]]


@contextmanager
def websockets_server(
    handler: Handler,
    *,
    ssl_context: ssl.SSLContext | None = None,
    process_request: Callable[..., Any] | None = None,
    subprotocols: list[str] | None = None,
) -> Iterator[str]:
    from websockets.asyncio.server import serve

    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        state["loop"] = loop

        async def main() -> None:
            stop = asyncio.Event()
            state["stop"] = stop
            async with serve(
                handler,
                "127.0.0.1",
                0,
                ssl=ssl_context,
                process_request=process_request,
                subprotocols=subprotocols,  # type: ignore[arg-type]
                ping_interval=None,
                max_size=None,
            ) as server:
                state["port"] = next(iter(server.sockets)).getsockname()[1]
                ready.set()
                await stop.wait()

        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    scheme = "wss" if ssl_context else "ws"
    try:
        yield f"{scheme}://127.0.0.1:{state['port']}"
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


RawScript = Callable[[anyio.abc.SocketStream, WSConnection], Awaitable[None]]


@asynccontextmanager
async def raw_server(
    script: RawScript,
    *,
    glue: bytes = b"",
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """Accept one handshake per connection, send ``glue`` in the same write as the 101,
    then run ``script`` with the stream and the server-side wsproto connection."""

    async def handle(stream: anyio.abc.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            try:
                ws.receive_data(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            if any(isinstance(e, Request) for e in ws.events()):
                break
        await stream.send(ws.send(AcceptConnection()) + glue)
        try:
            await script(stream, ws)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            pass

    async with serve_tcp(handle, host=host, tls=tls) as port:
        shown = f"[{host}]" if ":" in host else host
        yield f"{'wss' if tls else 'ws'}://{shown}:{port}"


async def until_closed(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
    """Answer pings and the client's close frame, like a polite peer, until it is gone."""
    from wsproto.events import CloseConnection, Ping

    while True:
        try:
            ws.receive_data(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return
        for event in ws.events():
            if isinstance(event, Ping | CloseConnection):
                await stream.send(ws.send(event.response()))
            if isinstance(event, CloseConnection):
                return
