"""PTY sessions: an interactive terminal in a capsule over one WebSocket (PROTOCOL §9).

``async with cap.pty() as term:`` starts a shell; ``await term.write(b"ls\\n")`` types;
``async for data in term.output()`` yields the terminal's output bytes and ends when the
process exits (``term.exit_code`` is then set); ``async for event in term`` yields
:class:`PtyEvent` objects as the official SDK does (output, ping, exit, ...). The
server's keepalive pings are answered for you. Leaving the ``cap.pty()`` block closes the
WebSocket only: the process keeps running and ``cap.pty_connect(term.tag)`` reattaches
(``term.kill()`` ends it). ``async with term:`` (the session's own block, as in the
official SDK) kills the process when it ends.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final, final

import anyio
import attrs

from ._exceptions import WrennError, WrennValidationError, WrennWebSocketClosedError
from ._http import HTTPTransport, api_path
from ._models.base import WireModel
from ._models.enums import LenientStrEnum
from ._resources.streams import open_stream
from ._stream_protocol import in_band_error
from ._ws import WebSocket

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

    async def write(self, data: bytes | str) -> None:
        """Type ``data`` into the terminal (one binary frame)."""
        await self._ws.send_bytes(data.encode() if isinstance(data, str) else bytes(data))

    async def resize(self, cols: int, rows: int) -> None:
        if cols <= 0 or rows <= 0:
            raise WrennValidationError("cols and rows must be positive")
        await self._ws.send_text(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    async def kill(self) -> None:
        """SIGKILL the terminal's process; iteration then ends with ``exit_code`` -1."""
        await self._ws.send_text(json.dumps({"type": "kill"}))

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
        frame = _json(message)
        kind = frame.get("type") or "ping"
        if kind == "ping":
            await self._ws.send_text('{"type":"pong"}')
            return PtyEvent(type=PtyEventType.ping)
        if kind == "exit":
            code = frame.get("exit_code")
            self.exit_code = code if isinstance(code, int) else -1
            return PtyEvent(type=PtyEventType.exit, exit_code=self.exit_code)
        if kind == "error":
            text = str(frame.get("data") or "pty error")
            if frame.get("fatal"):
                raise in_band_error(text)
            return PtyEvent(type=PtyEventType.error, data=text, fatal=False)
        if kind == "output":  # 0.2-era servers send base64 text frames
            data = frame.get("data")
            return PtyEvent(
                type=PtyEventType.output,
                data=base64.b64decode(data) if isinstance(data, str) else None,
            )
        if kind == "started":
            pid = frame.get("pid")
            self.pid = pid if isinstance(pid, int) else self.pid
            self.tag = frame.get("tag") or self.tag
            return PtyEvent(type=PtyEventType.started, pid=self.pid, tag=self.tag)
        return PtyEvent(type=PtyEventType(str(kind)))

    def take_ready(self, limit: int) -> list[PtyEvent]:
        """Output events already received, without waiting (for batching)."""
        return [PtyEvent(type=PtyEventType.output, data=d) for d in self._take_output(limit)]

    def _take_output(self, limit: int) -> list[bytes]:
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


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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
    if cols <= 0 or rows <= 0:
        raise WrennValidationError("cols and rows must be positive")
    first: dict[str, Any]
    if tag is not None:
        first = {"type": "connect", "tag": tag}
    else:
        first = {"type": "start", "cmd": cmd, "cols": cols, "rows": rows}
        if args:
            first["args"] = list(args)
        if envs:
            first["envs"] = dict(envs)
        if cwd:
            first["cwd"] = cwd
    async with open_stream(http, api_path("capsules", capsule_id, "pty"), first) as stream:
        ws = stream._ws
        session = AsyncPtySession(ws, tag=tag, pid=None)
        if tag is None:
            # the `started` frame carries the tag and pid; errors come instead of it
            while True:
                message = await ws.receive()
                if isinstance(message, bytes):
                    continue
                frame = _json(message)
                if frame.get("type") == "started":
                    session.tag = frame.get("tag")
                    pid = frame.get("pid")
                    session.pid = pid if isinstance(pid, int) else None
                    break
                if frame.get("type") == "error":
                    raise in_band_error(str(frame.get("data") or "pty error"))
        yield session
