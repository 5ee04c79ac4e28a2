"""Request bodies written straight to the socket on asyncio before Python 3.12.

Before 3.12, an asyncio transport that cannot send a whole buffer at once copies the
rest into its own ``bytearray`` and sends it from there: an upload written in 1 MiB
pieces is copied once more in full, plus a wake-up per drain. :class:`DirectWriteBackend`
wraps httpcore2's backend so that, on such a loop, every write of a plain TCP connection
is sent from a ``memoryview`` of the caller's buffer (no copy), waiting for the socket to
become writable in between (``anyio.wait_writable`` on a duplicate of the socket's
descriptor: the original belongs to the transport). Reading is left to the transport.
A connection upgraded to TLS, trio, and Python 3.12+ (whose transports keep views, not
copies) go through httpcore2 unchanged.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel
import httpcore2
from anyio.abc import SocketAttribute
from httpcore2._backends.auto import AutoBackend

__all__ = ["DirectWriteBackend"]

# Only where the transport would copy: CPython's selector transports before 3.12.
_COPYING_TRANSPORTS: Final = sys.version_info < (3, 12)
YIELD_BYTES: Final = 1024 * 1024


class _DirectWriteStream(httpcore2.AsyncNetworkStream):
    """A plain TCP stream whose writes bypass the transport's write buffer."""

    def __init__(
        self, inner: httpcore2.AsyncNetworkStream, sock: socket.socket, transport: Any
    ) -> None:
        self._inner = inner
        self._sock: socket.socket | None = sock
        self._transport = transport  # its reading paused while this stream reads itself
        self._unyielded = 0  # bytes moved since this stream last let other tasks run
        transport.pause_reading()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        sock = self._sock
        if sock is None:
            return await self._inner.read(max_bytes, timeout)
        await anyio.lowlevel.checkpoint_if_cancelled()
        waited = False
        try:
            while True:
                try:
                    data = sock.recv(max_bytes)
                    break
                except BlockingIOError:
                    # a deadline scope only when there is something to wait for
                    waited = True
                    with anyio.fail_after(timeout):
                        await anyio.wait_readable(sock)
        except TimeoutError as exc:
            raise httpcore2.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore2.ReadError(str(exc)) from exc
        await self._yield_now_and_then(waited, len(data))
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        sock = self._sock
        if sock is None:  # upgraded to TLS, or closed
            await self._inner.write(buffer, timeout)
            return
        if not buffer:
            return
        await anyio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(buffer)
        waited = False
        try:
            with anyio.fail_after(timeout):  # bounds the whole write, as httpcore2's does
                while True:
                    try:
                        sent = sock.send(view)
                    except BlockingIOError:
                        waited = True
                        await anyio.wait_writable(sock)
                        continue
                    if sent == len(view):
                        break
                    view = view[sent:]
        except TimeoutError as exc:
            raise httpcore2.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore2.WriteError(str(exc)) from exc
        finally:
            view.release()
        await self._yield_now_and_then(waited, len(buffer))

    async def _yield_now_and_then(self, waited: bool, size: int) -> None:
        """Let other tasks run at least once per :data:`YIELD_BYTES` moved without
        waiting (a checkpoint per read was a loop iteration per read)."""
        if waited:
            self._unyielded = 0
            return
        self._unyielded += size
        if self._unyielded >= YIELD_BYTES:
            self._unyielded = 0
            await anyio.lowlevel.cancel_shielded_checkpoint()

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def aclose(self) -> None:
        self._drop_socket()
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        self._drop_socket()  # TLS goes through the transport from now on
        self._transport.resume_reading()
        return await self._inner.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DirectWriteBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's default backend, with :class:`_DirectWriteStream` where it pays."""

    def __init__(self) -> None:
        self._inner = AutoBackend()  # httpcore2's own choice: anyio on asyncio, trio on trio

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        # Under asyncio httpcore2 speaks through an anyio socket stream; under trio through
        # trio's own (whose writes already send from views): only the first is wrapped.
        raw = getattr(stream, "_stream", None)
        if not _COPYING_TRANSPORTS or not isinstance(raw, anyio.abc.SocketStream):
            return stream
        transport = getattr(raw, "_transport", None)
        if transport is None or not hasattr(transport, "pause_reading"):
            return stream
        fd = raw.extra(SocketAttribute.raw_socket).fileno()
        # A second descriptor of the same socket: waiting on it does not disturb the
        # transport, which keeps the original registered for reading.
        dup = socket.socket(fileno=os.dup(fd))
        dup.setblocking(False)
        return _DirectWriteStream(stream, dup, transport)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
