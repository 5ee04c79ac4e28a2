"""The server's side of the agent socket (see ``_inside/agent.py`` for the frame format)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["AgentChannel", "AgentClient", "AgentFailure"]

HEADER: Final = struct.Struct(">IB")
MAX_FRAME: Final = 8 << 20


class AgentFailure(Exception):
    """The agent answered an error, or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AgentChannel:
    """One operation's connection to the agent."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._send_lock = anyio.Lock()

    async def send(self, kind: bytes, payload: bytes = b"") -> None:
        async with self._send_lock:
            await self._stream.send(HEADER.pack(len(payload), kind[0]) + payload)

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.send(b"J", json.dumps(obj, separators=(",", ":")).encode())

    async def receive(self) -> tuple[bytes, bytes] | None:
        """The next frame as ``(kind, payload)``, or ``None`` when the agent closed."""
        try:
            head = await self._reader.receive_exactly(HEADER.size)
            length, kind = HEADER.unpack(head)
            if length > MAX_FRAME:
                raise AgentFailure("agent_error", "oversized frame from agent")
            payload = await self._reader.receive_exactly(length) if length else b""
        except (
            anyio.IncompleteRead,
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            ConnectionError,
        ):
            return None
        return bytes([kind]), payload

    async def receive_json(self) -> dict[str, Any]:
        """The next frame, which must be JSON; agent errors are raised."""
        got = await self.receive()
        if got is None:
            raise AgentFailure("agent_error", "the capsule agent closed the connection")
        kind, payload = got
        if kind != b"J":
            raise AgentFailure("agent_error", "unexpected frame from the capsule agent")
        message: dict[str, Any] = json.loads(payload)
        if "error" in message:
            raise AgentFailure(str(message["error"]), str(message.get("message", "")))
        return message

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class AgentClient:
    """Connects to one agent's socket.

    Unix socket paths are limited to 108 bytes and a data directory can be deep, so the
    client holds an ``O_PATH`` descriptor of the socket's directory and connects through
    ``/proc/self/fd/N/<name>``, which is always short.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._dir_fd: int | None = None

    def _address(self) -> str:
        if len(str(self.socket_path)) < 100:
            return str(self.socket_path)
        if self._dir_fd is None:
            self._dir_fd = os.open(self.socket_path.parent, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._dir_fd}/{self.socket_path.name}"

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    @asynccontextmanager
    async def open(self, request: dict[str, Any]) -> AsyncIterator[AgentChannel]:
        """Connect, send the request frame, and yield the channel; always closes it."""
        try:
            stream = await anyio.connect_unix(self._address())
        except OSError as exc:
            raise AgentFailure("host_unavailable", f"capsule agent unreachable: {exc}") from exc
        channel = AgentChannel(stream)
        try:
            await channel.send_json(request)
            yield channel
        finally:
            with anyio.CancelScope(shield=True):
                await channel.aclose()

    async def call(self, request: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """A request with one JSON answer."""
        with anyio.fail_after(timeout):
            async with self.open(request) as channel:
                return await channel.receive_json()

    async def ping(self) -> bool:
        try:
            await self.call({"op": "ping"}, timeout=2)
        except (AgentFailure, TimeoutError, OSError):
            return False
        return True
