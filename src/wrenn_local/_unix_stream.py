"""A connected UNIX socket as an anyio byte stream: the server's side of an agent socket.

anyio's own UNIX stream (4.16, asyncio backend) waits for data with a future that an
``add_reader`` callback resolves. When a receive is cancelled in the same loop iteration
in which the socket becomes readable — every time a stream to the agent is left while the
capsule is still writing — that callback meets a cancelled future and asyncio logs
``Exception in callback … InvalidStateError`` (nothing is lost, but the log and the
test run see an error). :func:`anyio.wait_readable` tolerates that race, so this stream
waits with it and reads and writes the non-blocking socket itself.

Cancellation: a cancelled ``receive`` or ``send`` has read or written nothing; a send
cancelled part-way may have written a prefix (as with any stream socket).
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = ["UnixStream", "connect_unix"]

_CLOSED_ERRNOS = frozenset({9})  # EBADF: the socket was closed under us


class UnixStream(anyio.abc.ByteStream):
    """A byte stream over a connected, non-blocking ``AF_UNIX`` socket."""

    __slots__ = ("_closed", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False

    async def receive(self, max_bytes: int = 256 * 1024) -> bytes:
        await anyio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                data = self._sock.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            except OSError as exc:
                raise self._failure(exc) from exc
            if not data:
                raise anyio.EndOfStream
            return data

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        view = memoryview(item)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self._sock)
                continue
            except OSError as exc:
                raise self._failure(exc) from exc
            view = view[sent:]

    async def send_eof(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._failure(exc) from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._sock)  # a task waiting on it gets ClosedResourceError
            self._sock.close()
        await anyio.lowlevel.checkpoint()

    def _failure(self, exc: OSError) -> Exception:
        if self._closed or exc.errno in _CLOSED_ERRNOS:
            return anyio.ClosedResourceError()
        return anyio.BrokenResourceError()

    @property
    def extra_attributes(self) -> Any:
        return {anyio.abc.SocketAttribute.raw_socket: lambda: self._sock}


async def connect_unix(path: str) -> UnixStream:
    """Connect to the UNIX socket at ``path`` (an ``OSError`` if nobody listens there)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    pause = 0.001
    try:
        while True:
            try:
                sock.connect(path)
                break
            except BlockingIOError:
                # The listener's backlog is full. Unlike TCP's EINPROGRESS, a UNIX socket's
                # EAGAIN means nothing was started (the socket is writable at once, and a
                # send would fail with ENOTCONN): try again shortly, until the caller's
                # deadline or cancellation.
                await anyio.sleep(pause)
                pause = min(pause * 2, 0.05)
    except BaseException:
        sock.close()
        raise
    return UnixStream(sock)
