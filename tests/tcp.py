"""A TCP test server that shuts down without losing sockets.

Cancelling ``listener.serve()`` can drop a connection accepted a moment earlier (its
socket is then closed only by the garbage collector). Here the listener is closed first,
so ``accept`` ends cleanly, and only then are the connection handlers cancelled; each
handler's stream is closed by an ``async with``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def serve_tcp(
    handler: Handler, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    multi = await anyio.create_tcp_listener(local_host=host, local_port=0)
    (listener,) = multi.listeners  # one address
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def run(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            if tls is None:
                await handler(stream)
                return
            try:
                wrapped = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=tls, standard_compatible=False
                )
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                return
            await handler(wrapped)  # type: ignore[arg-type]

    async def accept_loop(tg: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            tg.start_soon(run, stream)

    async with anyio.create_task_group() as tg:
        tg.start_soon(accept_loop, tg)
        try:
            yield port
        finally:
            await listener.aclose()
            tg.cancel_scope.cancel()
