"""PTY sessions: an interactive terminal in a capsule over one WebSocket (PROTOCOL §9).

``async with cap.pty() as term:`` starts a shell; ``await term.write(b"ls\\n")`` types;
``async for data in term`` yields the terminal's output bytes and ends when the process
exits (``term.exit_code`` is then set). The server's keepalive pings are answered for you.
The terminal belongs to the block: leaving it while the process still runs ends the
process (normally, by an exception or by cancellation), unless ``term.detach()`` was
called — then it keeps running and ``cap.pty_connect(term.tag)`` reattaches. A session
opened with ``pty_connect`` is never ended by leaving its block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import final

import anyio
import anyio.lowlevel

from ._exceptions import WrennError, WrennWebSocketClosedError
from ._protocol import pty as protocol
from ._transport.http import HTTPTransport, api_path
from ._transport.websocket import WebSocket

__all__ = ["AsyncPtySession", "open_pty"]


@final
class AsyncPtySession:
    """An attached terminal. See the module documentation."""

    def __init__(self, ws: WebSocket, *, tag: str | None, pid: int | None) -> None:
        self._ws = ws
        self.tag = tag
        self.pid = pid
        self.exit_code: int | None = None
        self.detached = False

    def detach(self) -> None:
        """Keep the terminal's process running when the block ends (reattach later with
        ``capsule.pty_connect(tag)``)."""
        self.detached = True

    async def write(self, data: bytes | str) -> None:
        """Type ``data`` into the terminal (one binary frame)."""
        await self._ws.send_bytes(data.encode() if isinstance(data, str) else bytes(data))

    async def resize(self, cols: int, rows: int) -> None:
        await self._ws.send_text(protocol.resize_frame(cols, rows))

    async def kill(self) -> None:
        """SIGKILL the terminal's process; iteration then ends with ``exit_code`` -1."""
        await self._ws.send_text(protocol.KILL)

    def __aiter__(self) -> AsyncPtySession:
        return self

    async def __anext__(self) -> bytes:
        """The next chunk of output. Ends after ``exit``; raises if the connection ends
        first, or on a fatal error frame. Waits without its own deadline."""
        while self.exit_code is None:
            try:
                message = await self._ws.receive()
            except WrennWebSocketClosedError as exc:
                raise WrennWebSocketClosedError(
                    exc.close_code, "terminal connection ended before the process exited"
                ) from exc
            if isinstance(message, bytes):
                return message
            control = protocol.parse_control(message)
            if control.kind == "ping":
                await self._ws.send_text(protocol.PONG)
            elif control.kind == "exit":
                self.exit_code = control.exit_code
            elif control.kind == "fatal":
                raise protocol.error_of(control)
            elif control.kind == "output":
                return control.data
        raise StopAsyncIteration

    def take_ready(self, limit: int) -> list[bytes]:
        """Output chunks already received, without waiting (control frames are left for
        the next ``__anext__``, which answers pings)."""
        out: list[bytes] = []
        while len(out) < limit and self.exit_code is None and self._ws.next_is_binary():
            message = self._ws.receive_nowait()
            assert isinstance(message, bytes)
            out.append(message)
        return out

    async def wait(self) -> int:
        """Read (and drop) output until the process exits; return its exit code."""
        async for _ in self:
            pass
        assert self.exit_code is not None
        return self.exit_code


@asynccontextmanager
async def open_pty(
    http: HTTPTransport,
    capsule_id: str,
    *,
    cmd: str = "/bin/bash",
    args: Sequence[str] | None = None,
    cols: int = 80,
    rows: int = 24,
    envs: Mapping[str, str] | None = None,
    cwd: str | None = None,
    tag: str | None = None,
) -> AsyncIterator[AsyncPtySession]:
    if tag is not None:
        first = protocol.connect_frame(tag)
    else:
        first = protocol.start_frame(cmd, args=args, cols=cols, rows=rows, envs=envs, cwd=cwd)
    async with http.websocket(api_path("capsules", capsule_id, "pty")) as ws:
        session = AsyncPtySession(ws, tag=tag, pid=None)
        session.detached = tag is not None  # reattached: not ours to end
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):  # whole or not
                try:
                    await ws.send_text(first)
                except WrennWebSocketClosedError:
                    pass  # the server answered first (an in-band error): reading says more
            await anyio.lowlevel.checkpoint()
            if tag is None:
                await _started(ws, session)
            yield session
        finally:
            if session.exit_code is None and not session.detached:
                # The terminal belongs to the block, from the start frame on: end its
                # process (the kill frame follows the start on the same connection, so
                # it also reaches a process whose start was never confirmed).
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    try:
                        await ws.send_text(protocol.KILL)
                    except WrennError:
                        pass


async def _started(ws: WebSocket, session: AsyncPtySession) -> None:
    """Wait for the ``started`` frame (tag and pid); an error comes instead of it."""
    while True:
        message = await ws.receive()
        if isinstance(message, bytes):
            continue
        control = protocol.parse_control(message)
        if control.kind == "started":
            session.tag = control.tag
            session.pid = control.pid
            return
        if control.kind in ("error", "fatal"):
            raise protocol.error_of(control)
