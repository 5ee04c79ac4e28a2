"""PTY sessions: an interactive terminal in a capsule over one WebSocket (PROTOCOL §9).

``async with cap.pty() as term:`` starts a shell; ``await term.write(b"ls\\n")`` types;
``async for data in term`` yields the terminal's output bytes and ends when the process
exits (``term.exit_code`` is then set). The server's keepalive pings are answered for you.
Leaving the block closes the WebSocket only: the process keeps running and
``cap.pty_connect(term.tag)`` reattaches (``term.kill()`` ends it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

from ._exceptions import WrennValidationError, WrennWebSocketClosedError
from ._protocol.exec_stream import in_band_error
from ._resources.streams import open_stream
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
            frame = _json(message)
            kind = frame.get("type") or "ping"
            if kind == "ping":
                await self._ws.send_text('{"type":"pong"}')
            elif kind == "exit":
                code = frame.get("exit_code")
                self.exit_code = code if isinstance(code, int) else -1
            elif kind == "error" and frame.get("fatal"):
                raise in_band_error(str(frame.get("data") or "pty error"))
            elif kind == "output" and isinstance(frame.get("data"), str):  # 0.2-era servers
                import base64

                return base64.b64decode(frame["data"])
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
