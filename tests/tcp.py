"""A TCP test server that shuts down without losing sockets.

Cancelling ``listener.serve()`` can drop a connection accepted a moment earlier (its
socket is then closed only by the garbage collector). Here the listener is closed first,
so ``accept`` ends cleanly, and only then are the connection handlers cancelled; each
handler's stream is closed by an ``async with``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def serve_tcp(handler: Handler) -> AsyncIterator[int]:
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    (listener,) = multi.listeners  # one address: 127.0.0.1
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def run(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await handler(stream)

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
