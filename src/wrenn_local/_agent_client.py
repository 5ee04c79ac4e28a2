"""The server's side of the agent socket: one typed method per agent operation.

The frame format (``>I`` length, one kind byte, payload) and the operations are those of
``_inside/agent.py``. Nothing outside this module builds a request frame or looks at a
frame's kind byte: routes, the port proxy and the code runner call :class:`AgentClient`
and get typed answers, or one of the session objects below for operations that stream:

* :class:`ProcessStream`: a command's output and exit (``exec``, ``attach``);
* :class:`PtySession`: a terminal (``pty_start``, ``pty_connect``);
* :class:`FileDownload` and :class:`FileUpload`: a file's bytes (``read``, ``write``);
* :class:`TcpRelay`: bytes to and from a port inside the capsule (``connect``).

Every streaming method is an async context manager that connects, sends the request,
waits for the agent's first answer (raising :class:`AgentFailure` for an error) and
always closes the connection on the way out.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import anyio.abc
import attrs
from anyio.streams.buffered import BufferedByteReceiveStream

from ._unix_stream import connect_unix

__all__ = [
    "AgentChannel",
    "AgentClient",
    "AgentFailure",
    "Exited",
    "FileDownload",
    "FileUpload",
    "Output",
    "ProcessStream",
    "PtySession",
    "Started",
    "TcpRelay",
]

HEADER: Final = struct.Struct(">IB")
MAX_FRAME: Final = 8 << 20


class AgentFailure(Exception):
    """The agent answered an error, or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AgentChannel:
    """One operation's connection to the agent.

    A thousand of these can be open at once (one per exec stream), so they hold little:
    slots, and the send lock only once a second frame is sent (the request frame goes out
    before anyone else holds the channel).
    """

    __slots__ = ("_reader", "_send_lock", "_stream")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._send_lock: anyio.Lock | None = None

    async def send(self, kind: bytes, payload: bytes = b"") -> None:
        if self._send_lock is None:  # no await between the check and the assignment
            self._send_lock = anyio.Lock()
        async with self._send_lock:
            await self._stream.send(HEADER.pack(len(payload), kind[0]) + payload)

    async def send_request(self, obj: dict[str, Any]) -> None:
        """The operation's first frame: sent before the channel is shared with any other
        task, so without the send lock."""
        payload = json.dumps(obj, separators=(",", ":")).encode()
        await self._stream.send(HEADER.pack(len(payload), b"J"[0]) + payload)

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
    async def _open(self, request: dict[str, Any]) -> AsyncIterator[AgentChannel]:
        """Connect, send the request frame, and yield the channel; always closes it."""
        try:
            stream = await connect_unix(self._address())
        except OSError as exc:
            raise AgentFailure("host_unavailable", f"capsule agent unreachable: {exc}") from exc
        channel = AgentChannel(stream)
        try:
            try:
                await channel.send_request(request)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                # the agent closed the connection it had just accepted (its capsule is
                # being destroyed, say): as unreachable as a refused connection
                raise AgentFailure("host_unavailable", "capsule agent unreachable") from exc
            del request  # not kept for the life of a stream
            yield channel
        finally:
            with anyio.CancelScope(shield=True):
                await channel.aclose()

    async def _call(self, request: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """A request with one JSON answer."""
        with anyio.fail_after(timeout):
            async with self._open(request) as channel:
                return await channel.receive_json()

    # -- health

    async def ping(self) -> bool:
        """Whether the agent answers within 2 seconds."""
        try:
            await self._call({"op": "ping"}, timeout=2)
        except (AgentFailure, TimeoutError, OSError):
            return False
        return True

    # -- processes

    async def exec_background(
        self,
        cmd: str,
        *,
        args: list[str],
        envs: dict[str, str],
        cwd: str | None = None,
        timeout: float | None = None,
        tag: str | None = None,
    ) -> Started:
        """Start a command that outlives the request; ``tag`` names it (else the agent does)."""
        request = {
            "op": "exec",
            "cmd": cmd,
            "args": args,
            "envs": envs,
            "cwd": cwd,
            "timeout": timeout,
            "background": True,
            "tag": tag,
        }
        return Started.from_json(await self._call(request))

    @asynccontextmanager
    async def exec(
        self,
        cmd: str,
        *,
        args: list[str],
        envs: dict[str, str],
        cwd: str | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> AsyncIterator[ProcessStream]:
        """Run a command and follow its output until it exits.

        The agent kills it after ``timeout`` seconds (``None``: never) and then fails with
        the code ``timeout``. With ``stream``, closing the connection detaches from the
        process instead of waiting for it (exec stream WebSocket).
        """
        request: dict[str, Any] = {
            "op": "exec",
            "cmd": cmd,
            "args": args,
            "envs": envs,
            "cwd": cwd,
            "timeout": timeout,
        }
        if stream:
            request["stream"] = True
        opening = self._open(request)
        del request, args, envs  # not kept for the life of a stream
        async with opening as channel:
            yield ProcessStream(channel, Started.from_json(await channel.receive_json()))

    @asynccontextmanager
    async def attach(self, selector: str) -> AsyncIterator[ProcessStream]:
        """Follow the output of a running process, by pid or tag."""
        async with self._open({"op": "attach", "selector": selector}) as channel:
            yield ProcessStream(channel, Started.from_json(await channel.receive_json()))

    async def processes(self) -> list[dict[str, Any]]:
        """The running processes: ``{"pid", "tag", "cmd", "args"}`` each."""
        answer = await self._call({"op": "ps"})
        processes: list[dict[str, Any]] = answer["processes"]
        return processes

    async def kill(self, selector: str, signal: Literal["SIGTERM", "SIGKILL"]) -> None:
        """Signal a process (by pid or tag) and its process group."""
        await self._call({"op": "kill", "selector": selector, "signal": signal})

    # -- terminals

    @asynccontextmanager
    async def pty_start(
        self,
        cmd: object,
        *,
        args: object,
        envs: object,
        cwd: object,
        cols: int,
        rows: int,
    ) -> AsyncIterator[PtySession]:
        """Start a command on a new terminal (values as the client sent them: the agent
        checks them)."""
        request = {
            "op": "pty_start",
            "cmd": cmd,
            "args": args,
            "cols": cols,
            "rows": rows,
            "envs": envs,
            "cwd": cwd,
        }
        async with self._open(request) as channel:
            yield PtySession(channel, Started.from_json(await channel.receive_json()))

    @asynccontextmanager
    async def pty_connect(self, tag: str) -> AsyncIterator[PtySession]:
        """Reattach to a terminal that is still running."""
        async with self._open({"op": "pty_connect", "tag": tag}) as channel:
            yield PtySession(channel, Started.from_json(await channel.receive_json()))

    # -- files

    @asynccontextmanager
    async def read_file(self, path: str) -> AsyncIterator[FileDownload]:
        """Open a file for reading; errors (not found, a directory) come before any byte."""
        async with self._open({"op": "read", "path": path}) as channel:
            answer = await channel.receive_json()
            yield FileDownload(channel, size=int(answer.get("size", 0)))

    @asynccontextmanager
    async def write_file(self, path: str) -> AsyncIterator[FileUpload]:
        """Open a file for writing; it appears only when :meth:`FileUpload.finish` is
        called, and nothing is written when the block is left without it."""
        async with self._open({"op": "write", "path": path}) as channel:
            await channel.receive_json()  # ready, or the refusal (AgentFailure)
            yield FileUpload(channel)

    async def list_dir(self, path: str, depth: int) -> list[dict[str, Any]]:
        """The entries under a directory, down to ``depth`` levels."""
        answer = await self._call({"op": "list", "path": path, "depth": depth})
        entries: list[dict[str, Any]] = answer["entries"]
        return entries

    async def mkdir(self, path: str) -> dict[str, Any]:
        """Create a directory and its parents; its entry."""
        answer = await self._call({"op": "mkdir", "path": path})
        entry: dict[str, Any] = answer["entry"]
        return entry

    async def remove(self, path: str) -> None:
        """Remove a file or a whole directory."""
        await self._call({"op": "remove", "path": path})

    # -- network

    @asynccontextmanager
    async def connect(self, port: int) -> AsyncIterator[TcpRelay]:
        """A TCP connection to ``127.0.0.1:port`` inside the capsule's network namespace."""
        async with self._open({"op": "connect", "port": port}) as channel:
            await channel.receive_json()
            yield TcpRelay(channel)


# --- answers and sessions ---------------------------------------------------------------


@attrs.frozen
class Started:
    """A process the agent started or found."""

    pid: int | None
    tag: str | None

    @classmethod
    def from_json(cls, answer: dict[str, Any]) -> Started:
        return cls(pid=answer.get("pid"), tag=answer.get("tag"))


@attrs.frozen
class Output:
    """Bytes a process wrote."""

    stream: Literal["stdout", "stderr"]
    data: bytes


@attrs.frozen
class Exited:
    """A process ended."""

    exit_code: int


class ProcessStream:
    """A command's output, then its exit."""

    __slots__ = ("_channel", "started")

    def __init__(self, channel: AgentChannel, started: Started) -> None:
        self._channel = channel
        self.started = started

    async def next(self) -> Output | Exited | None:
        """The next output or the exit; ``None`` when the stream broke off.

        An error from the agent (``timeout``: the command was killed) raises
        :class:`AgentFailure`.
        """
        while True:
            got = await self._channel.receive()
            if got is None:
                return None
            kind, payload = got
            if kind == b"O":
                return Output("stdout", payload)
            if kind == b"E":
                return Output("stderr", payload)
            if kind == b"J":
                message = json.loads(payload)
                if "error" in message:
                    raise AgentFailure(str(message["error"]), str(message.get("message", "")))
                return Exited(int(message["exit_code"]))

    async def detach(self) -> None:
        """Leave the process running when this stream closes (exec stream ``stop``); a
        stream closed without it kills the command it started."""
        await self._channel.send_json({"type": "detach"})


class PtySession:
    """A terminal: its output and exit one way, input, resizes and kill the other."""

    def __init__(self, channel: AgentChannel, started: Started) -> None:
        self._channel = channel
        self.started = started

    async def next(self) -> bytes | Exited | None:
        """The next terminal output or the exit; ``None`` when the stream ended."""
        while True:
            got = await self._channel.receive()
            if got is None:
                return None
            kind, payload = got
            if kind == b"O":
                return payload
            if kind == b"J":
                message = json.loads(payload)
                if "exit_code" in message:
                    return Exited(int(message["exit_code"]))

    async def write(self, data: bytes) -> None:
        """Type into the terminal."""
        await self._channel.send(b"I", data)

    async def resize(self, cols: int, rows: int) -> None:
        await self._channel.send_json({"type": "resize", "cols": cols, "rows": rows})

    async def kill(self) -> None:
        """SIGKILL the terminal's process."""
        await self._channel.send_json({"type": "kill"})


class FileDownload:
    """A file's bytes, chunk by chunk."""

    def __init__(self, channel: AgentChannel, *, size: int) -> None:
        self._channel = channel
        self.size = size

    async def next(self) -> bytes | None:
        """The next chunk; ``b""`` at the end of the file; ``None`` when the agent broke off
        (the file was not read whole)."""
        while True:
            got = await self._channel.receive()
            if got is None:
                return None
            kind, payload = got
            if kind == b"Z":
                return b""
            if payload:
                return payload


class FileUpload:
    """A file being written: data, then :meth:`finish` or :meth:`abort`."""

    def __init__(self, channel: AgentChannel) -> None:
        self._channel = channel

    async def send(self, data: bytes) -> None:
        await self._channel.send(b"D", data)

    async def finish(self) -> None:
        """Put the file in place; raises :class:`AgentFailure` when that failed."""
        await self._channel.send(b"Z")
        await self._channel.receive_json()

    async def abort(self) -> None:
        """Give up: the agent drops the partial file. Waits for it to have done so."""
        await self._channel.send(b"X")
        await self._channel.receive()


class TcpRelay:
    """Bytes to and from a TCP port inside the capsule."""

    def __init__(self, channel: AgentChannel) -> None:
        self._channel = channel

    async def send(self, data: bytes) -> None:
        await self._channel.send(b"D", data)

    async def receive(self) -> bytes | None:
        """The next bytes from the port; ``None`` once it closed."""
        got = await self._channel.receive()
        if got is None or got[0] == b"Z":
            return None
        return got[1]
