"""Exec and attach streams over WebSocket: typed events, never a false finish."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.lowlevel

from .._exceptions import WrennError, WrennValidationError, WrennWebSocketClosedError
from .._models.streams import StreamEvent
from .._protocol.exec_stream import BINARY_OUTPUT, ExecStreamProtocol, State
from .._transport.http import HTTPTransport, api_path

# wsproto is loaded with the first WebSocket, not with the SDK.
if TYPE_CHECKING:
    from .._transport.websocket import WebSocket

__all__ = ["AsyncExecStream", "attach_path", "exec_path", "open_stream", "process_selector"]


@final
class AsyncExecStream:
    """An open exec or attach stream; iterate it for :class:`StreamStart`,
    :class:`StreamStdout`, :class:`StreamStderr` and finally :class:`StreamExit`.

    Iteration ends after ``exit``. If the connection ends first — cleanly or not — it
    raises :class:`WrennConnectionError`: a stream that stopped early never looks
    finished. In-band errors raise their mapped exception (``authentication failed`` is
    :class:`WrennAuthenticationError`, ``sandbox not found`` :class:`WrennNotFoundError`).
    Waiting for the next event has no deadline of its own: bound it with your scope.
    Output the server sends while you are not reading waits in a bounded buffer; when it
    is full the server is slowed down (TCP backpressure) rather than memory growing.
    """

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._protocol = ExecStreamProtocol(binary=ws.subprotocol == BINARY_OUTPUT)
        self._pending: deque[StreamEvent] = deque()  # read ahead by wait_started

    @property
    def pid(self) -> int | None:
        return self._protocol.pid

    @property
    def binary_frames(self) -> bool:
        """Whether the server accepted binary output frames (events carry ``raw``)."""
        return self._protocol.binary

    @property
    def exit_code(self) -> int | None:
        """The exit code once ``exit`` arrived, else None."""
        return self._protocol.exit_code

    def __aiter__(self) -> AsyncExecStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._pending:
            return self._pending.popleft()
        while True:
            if self._protocol.state is State.EXITED:
                raise StopAsyncIteration
            try:
                message = await self._ws.receive()
            except WrennWebSocketClosedError as exc:
                self._protocol.ended(exc.close_code, exc.reason)
                raise StopAsyncIteration from None
            event = self._protocol.receive(message)
            if event is not None:
                return event

    async def wait_started(self) -> int | None:
        """Read until the process's pid is known (events read are kept for iteration);
        None if the stream ended first. No deadline of its own."""
        while self._protocol.pid is None and self._protocol.state is not State.EXITED:
            try:
                message = await self._ws.receive()
            except WrennWebSocketClosedError:
                return None
            event = self._protocol.receive(message)
            if event is not None:
                self._pending.append(event)
        return self._protocol.pid

    def take_ready(self, limit: int) -> list[StreamEvent]:
        """Up to ``limit`` events already received, without waiting (for batching)."""
        out: list[StreamEvent] = []
        while self._pending and len(out) < limit:
            out.append(self._pending.popleft())
        while len(out) < limit and self._protocol.state is not State.EXITED:
            message = self._ws.receive_nowait()
            if message is None:
                break
            event = self._protocol.receive(message)
            if event is not None:
                out.append(event)
        return out

    async def wait(self) -> int:
        """Read (and drop) the rest of the stream; return the exit code."""
        async for _ in self:
            pass
        assert self._protocol.exit_code is not None
        return self._protocol.exit_code

    async def stop(self) -> None:
        """Detach: ask the server to stop streaming. The process keeps running."""
        if self._protocol.state is State.RUNNING:
            await self._ws.send_text(json.dumps({"type": "stop"}))


@asynccontextmanager
async def open_stream(
    http: HTTPTransport,
    path: str,
    first: dict[str, Any] | None,
    *,
    on_early_exit: Callable[[int], Awaitable[None]] | None = None,
) -> AsyncIterator[AsyncExecStream]:
    """An exec or attach stream for the block. When the stream started a process
    (``first`` is a start frame) and the block is left before it exited — at any point,
    entry included — ``on_early_exit(pid)`` is awaited (shielded; it bounds itself),
    else the server is asked to stop streaming."""
    starts = first is not None and first.get("type") == "start" and "cmd" in first
    offer = (BINARY_OUTPUT,) if http.config.binary_frames else ()
    async with http.websocket(path, subprotocols=offer) as ws:
        stream = AsyncExecStream(ws)
        sending = False
        try:
            if first is not None:
                sending = True
                # Sent whole or not at all: a send cut by cancellation would leave the
                # process started and the connection unusable for ending it.
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    try:
                        await ws.send_text(json.dumps(first))
                    except WrennWebSocketClosedError:
                        # The server answered first (an in-band error, then its close):
                        # reading the stream surfaces that answer, which says more.
                        pass
                await anyio.lowlevel.checkpoint()
            yield stream
        finally:
            if starts and sending and stream._protocol.state is not State.EXITED:
                with anyio.CancelScope(shield=True):
                    await _left_early(stream, on_early_exit)


async def _left_early(
    stream: AsyncExecStream, on_early_exit: Callable[[int], Awaitable[None]] | None
) -> None:
    if on_early_exit is None:
        # Detach: ask the server to stop streaming, so the close is quick.
        with anyio.move_on_after(1):
            try:
                await stream.stop()
            except WrennError:
                pass
        return
    pid = stream.pid
    if pid is None:  # left before the start event was read: read it (bounded)
        with anyio.move_on_after(2):
            try:
                pid = await stream.wait_started()
            except WrennError:
                pid = None
    if pid is not None:
        await on_early_exit(pid)


def exec_path(capsule_id: str) -> str:
    return api_path("capsules", capsule_id, "exec", "stream")


def process_selector(selector: int | str) -> str:
    """A process's pid (an int, 1 or more; not a bool) or tag (a non-empty str) as the
    ``/processes/{selector}`` segment; anything else raises :class:`WrennValidationError`
    (``str(None)``, ``str(True)`` or ``str(1.5)`` would name another process, or none)."""
    value: object = selector
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    raise WrennValidationError(
        "a process is selected by its pid (an int, 1 or more) or its tag (a non-empty"
        f" str), not {value!r}"
    )


def attach_path(capsule_id: str, selector: int | str) -> str:
    return api_path("capsules", capsule_id, "processes", process_selector(selector), "stream")
