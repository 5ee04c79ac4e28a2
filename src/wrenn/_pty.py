"""PTY sessions: an interactive terminal in a capsule over one WebSocket (PROTOCOL §9).

``async with cap.pty() as term:`` starts a shell; ``await term.write(b"ls\\n")`` types;
``async for data in term.output()`` yields the terminal's output bytes and ends when the
process exits (``term.exit_code`` is then set); ``async for event in term`` yields
:class:`PtyEvent` objects as the official SDK does (output, ping, exit, ...). The
server's keepalive pings are answered for you.

The terminal belongs to the block: leaving ``cap.pty()`` while the process still runs
ends the process (normally, by an exception or by cancellation), unless
``term.detach()`` was called — then it keeps running and ``cap.pty_connect(term.tag)``
reattaches. A session opened with ``pty_connect`` is never ended by leaving its block.
``async with term:`` (the session's own block, as in the official SDK) kills the process
and reads up to its exit when it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Final, final

import anyio
import anyio.lowlevel
import attrs

from ._exceptions import WrennError, WrennValidationError, WrennWebSocketClosedError
from ._models.base import WireModel
from ._models.enums import LenientStrEnum
from ._protocol import pty as protocol
from ._text import wire_text
from ._transport.http import HTTPTransport, api_path

# wsproto is loaded with the first WebSocket, not with the SDK.
if TYPE_CHECKING:
    from ._transport.websocket import WebSocket

__all__ = ["AsyncPtySession", "PtyEvent", "PtyEventType", "PtyOutput", "open_pty"]

KILL_TIMEOUT: Final = 5.0


class PtyEventType(LenientStrEnum):
    """Kinds of terminal events (unknown kinds are kept, never an error)."""

    started = "started"
    output = "output"
    exit = "exit"
    error = "error"
    ping = "ping"


@attrs.frozen
class PtyEvent(WireModel):
    """One terminal event: ``output`` (``data`` is bytes), ``ping`` (already answered),
    ``exit`` (``exit_code``), a non-fatal ``error`` (``data`` is its text), ``started``
    (``pid``, ``tag``). A fatal error raises instead of arriving as an event."""

    type: PtyEventType
    pid: int | None = None
    tag: str | None = None
    data: bytes | str | None = None
    exit_code: int | None = None
    fatal: bool | None = None


@final
class AsyncPtySession:
    """An attached terminal. See the module documentation."""

    tag: str | None
    pid: int | None
    exit_code: int | None

    def __init__(self, ws: WebSocket, *, tag: str | None, pid: int | None) -> None:
        self._ws = ws
        self.tag = tag
        self.pid = pid
        self.exit_code: int | None = None
        self.detached = False
        # the ``started`` event read on opening (tag, pid): iteration yields it first,
        # as the official SDK's does, unless other events were read before
        self._started: PtyEvent | None = None

    def detach(self) -> None:
        """Keep the terminal's process running when the ``cap.pty()`` block ends
        (reattach later with ``capsule.pty_connect(tag)``)."""
        self.detached = True

    async def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Type ``data`` (a str, or bytes or another bytes-like object) into the terminal
        (one binary frame); anything else raises :class:`WrennValidationError`."""
        value: object = data
        if isinstance(value, str):
            payload = wire_text(value, "a terminal write").encode()
        else:
            try:
                # bytes(5) would be five NUL bytes: only what has a buffer is bytes-like
                payload = memoryview(value).tobytes()  # type: ignore[arg-type]
            except TypeError:
                raise WrennValidationError(
                    f"a terminal write takes str or bytes, not {type(value).__name__}"
                ) from None
        await self._ws.send_bytes(payload)

    async def resize(self, cols: int, rows: int) -> None:
        """Resize the terminal; bad sizes raise :class:`WrennValidationError` (a ValueError)."""
        await self._ws.send_text(protocol.resize_frame(cols, rows))

    async def kill(self) -> None:
        """SIGKILL the terminal's process; iteration then ends with ``exit_code`` -1."""
        await self._ws.send_text(protocol.KILL)

    async def __aenter__(self) -> AsyncPtySession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """The session's own block (official SDK): kill the process, read up to its
        ``exit`` (bounded), close the socket."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(KILL_TIMEOUT):
            if self.exit_code is None and not self._ws.closed:
                try:
                    await self.kill()
                    while await self._next_event() is not None:
                        pass
                except WrennError:
                    pass  # already gone
            await self._ws.aclose()

    def __aiter__(self) -> AsyncPtySession:
        return self

    async def __anext__(self) -> PtyEvent:
        """The next event (official SDK form). Ends after ``exit``; raises if the
        connection ends first, or on a fatal error. Waits without its own deadline."""
        if (started := self._started) is not None:
            self._started = None
            return started
        event = await self._next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    def output(self) -> PtyOutput:
        """The terminal's output as bytes, until the process exits::

        async for chunk in term.output(): ...
        """
        return PtyOutput(self)

    async def _next_event(self) -> PtyEvent | None:
        self._started = None
        if self.exit_code is not None:
            return None
        try:
            message = await self._ws.receive()
        except WrennWebSocketClosedError as exc:
            raise WrennWebSocketClosedError(
                exc.close_code, "terminal connection ended before the process exited"
            ) from exc
        if isinstance(message, bytes):
            return PtyEvent(type=PtyEventType.output, data=message)
        control = protocol.parse_control(message)
        if control.kind == "ping":
            await self._ws.send_text(protocol.PONG)
            return PtyEvent(type=PtyEventType.ping)
        if control.kind == "exit":
            self.exit_code = control.exit_code
            return PtyEvent(type=PtyEventType.exit, exit_code=self.exit_code)
        if control.kind == "fatal":
            raise protocol.error_of(control)
        if control.kind == "error":
            text = control.data.decode("utf-8", errors="replace")
            return PtyEvent(type=PtyEventType.error, data=text, fatal=False)
        if control.kind == "output":  # 0.2-era servers send base64 text frames
            return PtyEvent(type=PtyEventType.output, data=control.data)
        if control.kind == "started":
            self.pid = control.pid if control.pid is not None else self.pid
            self.tag = control.tag or self.tag
            return PtyEvent(type=PtyEventType.started, pid=self.pid, tag=self.tag)
        return PtyEvent(type=PtyEventType(protocol.kind_of(message)))

    def take_ready(self, limit: int) -> list[PtyEvent]:
        """Output events already received, without waiting (for batching)."""
        return [PtyEvent(type=PtyEventType.output, data=d) for d in self._take_output(limit)]

    def _take_output(self, limit: int) -> list[bytes]:
        """Output chunks already received, without waiting (control frames are left for
        the next ``__anext__``, which answers pings)."""
        out: list[bytes] = []
        if limit > 0:
            self._started = None
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


@final
class PtyOutput:
    """A terminal's output bytes (see :meth:`AsyncPtySession.output`)."""

    def __init__(self, session: AsyncPtySession) -> None:
        self._session = session

    def __aiter__(self) -> PtyOutput:
        return self

    async def __anext__(self) -> bytes:
        while True:
            event = await self._session._next_event()
            if event is None:
                raise StopAsyncIteration
            if event.type is PtyEventType.output and isinstance(event.data, bytes):
                return event.data

    def take_ready(self, limit: int) -> list[bytes]:
        return self._session._take_output(limit)


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
            if session.exit_code is None and not session.detached and not ws.closed:
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
            session._started = PtyEvent(type=PtyEventType.started, pid=control.pid, tag=control.tag)
            return
        if control.kind in ("error", "fatal"):
            raise protocol.error_of(control)
