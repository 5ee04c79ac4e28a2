"""The fast path for small REST calls over plain ``http://``: one buffer out, one
complete answer in, on connections of its own.

A small JSON call through httpcore2 cost more client CPU than the bytes it moves: h11's
events, the pool's bookkeeping, a deadline scope per read, and the request sent in two
``send`` calls (head, then body), each of which, on loopback, runs the server's side of
TCP in the sender's time slice. Here the request leaves in one ``send``, the answer is
parsed by :mod:`wrenn._protocol.http1`, and the only deadline is the caller's (the
transport's call deadline; the connect has its own bound).

Two pools with one rule: a connection goes back to its pool only after a complete
answer that lets it be reused (see :attr:`ResponseParser.reusable`). A call that fails,
times out, is cancelled or is interrupted (``KeyboardInterrupt``) at any point closes
its connection, so no half-read answer can reach the next call. An idle connection is
checked before reuse (one non-blocking peek: the server closed it, or sent something
unasked) and dropped after :data:`KEEPALIVE_EXPIRY` seconds.

* :class:`AsyncFastPool`: non-blocking sockets waited on with ``anyio.wait_readable``
  (asyncio and trio); at most ``max_connections`` calls at once.
* :class:`SyncFastPool`: blocking sockets with timeouts, used by the sync API in the
  caller's own thread (no hand-over to the portal's loop); thread-safe.

Failures are raised as httpx2's exceptions (``ConnectError``, ``ConnectTimeout``,
``ReadError``, ``WriteError``, ``ReadTimeout``, ``RemoteProtocolError``), so the
transport maps and retries them exactly as it does httpcore2's.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import time
from collections import deque
from typing import Final, final

import anyio
import anyio.lowlevel
import httpx2 as httpx

from .._protocol.http1 import HTTP1Error, ResponseParser

__all__ = ["KEEPALIVE_EXPIRY", "AsyncFastPool", "SyncFastPool"]

KEEPALIVE_EXPIRY: Final = 5.0  # httpx's default; servers' idle timeouts are about as long
READ_SIZE: Final = 256 * 1024
MAX_IDLE: Final = 100


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _alive(sock: socket.socket) -> bool:
    """An idle connection is usable: nothing to read on it (no close, nothing unasked).
    The socket must be non-blocking."""
    try:
        sock.recv(1, socket.MSG_PEEK)  # b"": the server closed it; bytes: unasked for
    except BlockingIOError:
        return True  # nothing to read: still open, in step
    except OSError:
        pass
    return False


def _new_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


class _Idle:
    """Idle connections, newest last (thread-safe: deque append and pop are atomic)."""

    def __init__(self) -> None:
        self._idle: deque[tuple[socket.socket, float]] = deque()
        self.closed = False

    def take(self) -> socket.socket | None:
        while True:
            try:
                sock, since = self._idle.pop()
            except IndexError:
                return None
            if time.monotonic() - since < KEEPALIVE_EXPIRY and _alive(sock):
                return sock
            sock.close()

    def put(self, sock: socket.socket) -> None:
        if self.closed or len(self._idle) >= MAX_IDLE:
            sock.close()
            return
        self._idle.append((sock, time.monotonic()))
        if self._closed_meanwhile():  # by another thread: close what just went in
            self.close()

    def _closed_meanwhile(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        while True:
            try:
                sock, _ = self._idle.pop()
            except IndexError:
                return
            sock.close()

    def __len__(self) -> int:
        return len(self._idle)


@final
class AsyncFastPool:
    """Plain-TCP connections to one origin for the async transport's small calls."""

    def __init__(self, host: str, port: int, *, connect_timeout: float, max_connections: int):
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._max = max_connections
        self._idle = _Idle()
        self._slots: anyio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"<AsyncFastPool {self._host}:{self._port} idle={len(self._idle)}>"

    @property
    def idle(self) -> int:
        """Connections waiting for the next call."""
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections; a connection in use is closed when its call ends."""
        self._idle.close()

    async def exchange(self, request: bytes, *, head: bool = False) -> ResponseParser:
        """Send ``request`` (a whole HTTP/1.1 request) and read its whole answer."""
        slots = self._slots
        if slots is None:
            slots = self._slots = anyio.Semaphore(self._max)
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            await slots.acquire()
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # nothing is sent once cancelled
            sock = self._idle.take()
            if sock is None:
                sock = await self._connect()
            try:
                parser = await self._exchange(sock, request, head)
            except BaseException:
                sock.close()  # mid-exchange: never reused
                raise
            if parser.reusable:
                self._idle.put(sock)
            else:
                sock.close()
            return parser
        finally:
            slots.release()

    async def _exchange(self, sock: socket.socket, request: bytes, head: bool) -> ResponseParser:
        try:
            view = memoryview(request)
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    await anyio.wait_writable(sock)
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        parser = ResponseParser(head_request=head)
        try:
            while True:
                await anyio.wait_readable(sock)
                try:
                    data = sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                if not data:
                    parser.end_of_stream()
                    return parser
                if parser.feed(data):
                    return parser
        except HTTP1Error as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc

    async def _connect(self) -> socket.socket:
        try:
            with anyio.fail_after(self._connect_timeout):
                addresses: list[tuple[int, tuple[str, int]]]
                if _is_ip(self._host):
                    v6 = ":" in self._host
                    addresses = [
                        (socket.AF_INET6 if v6 else socket.AF_INET, (self._host, self._port))
                    ]
                else:
                    infos = await anyio.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
                    addresses = [
                        (int(info[0]), (str(info[4][0]), int(info[4][1]))) for info in infos
                    ]
                error: OSError = OSError("the host name resolves to no address")
                for family, address in addresses:
                    sock = _new_socket(family)
                    try:
                        try:
                            sock.connect(address)
                        except BlockingIOError:
                            await anyio.wait_writable(sock)
                            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                            if code:
                                raise OSError(code, os.strerror(code)) from None
                        return sock
                    except OSError as exc:
                        sock.close()
                        error = exc
                    except BaseException:
                        sock.close()
                        raise
                raise error
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("connecting timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc


@final
class SyncFastPool:
    """Plain-TCP connections to one origin for the sync API's small calls, used
    blocking in the caller's thread. Safe to use from several threads at once (each
    call holds its connection alone)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float) -> None:
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._idle = _Idle()

    def __repr__(self) -> str:
        return f"<SyncFastPool {self._host}:{self._port} idle={len(self._idle)}>"

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def closed(self) -> bool:
        return self._idle.closed

    def close(self) -> None:
        """Close the idle connections; a connection in use is closed when its call ends."""
        self._idle.close()

    def exchange(self, request: bytes, *, end: float, head: bool = False) -> ResponseParser:
        """Send ``request`` and read its whole answer before ``time.monotonic()`` reaches
        ``end`` (``math.inf``: no limit); past it, ``ReadTimeout``/``WriteTimeout``."""
        if self._idle.closed:
            raise httpx.ConnectError("the client is closed")
        sock = self._idle.take()
        if sock is None:
            sock = self._connect(end)
        try:
            parser = self._exchange(sock, request, end, head)
        except BaseException:  # also KeyboardInterrupt: the answer is abandoned
            sock.close()
            raise
        if parser.reusable:
            sock.settimeout(0.0)  # idle: non-blocking, for the peek before reuse
            self._idle.put(sock)
        else:
            sock.close()
        return parser

    @staticmethod
    def _left(end: float) -> float | None:
        if end == float("inf"):
            return None
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _exchange(
        self, sock: socket.socket, request: bytes, end: float, head: bool
    ) -> ResponseParser:
        try:
            sock.settimeout(self._left(end))
            sock.sendall(request)
        except TimeoutError as exc:
            raise httpx.WriteTimeout("sending the request timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        parser = ResponseParser(head_request=head)
        try:
            while True:
                data = sock.recv(READ_SIZE)
                if not data:
                    parser.end_of_stream()
                    return parser
                if parser.feed(data):
                    return parser
                sock.settimeout(self._left(end))
        except TimeoutError as exc:
            raise httpx.ReadTimeout("reading the answer timed out") from exc
        except HTTP1Error as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc

    def _connect(self, end: float) -> socket.socket:
        left = self._left_connect(end)
        try:
            sock = socket.create_connection((self._host, self._port), timeout=left)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("connecting timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _left_connect(self, end: float) -> float | None:
        left = self._connect_timeout
        if end != float("inf"):
            left = min(left, end - time.monotonic())
        if left <= 0:
            raise httpx.ConnectTimeout("no time left to connect")
        return None if math.isinf(left) else left  # None: connect with no bound
