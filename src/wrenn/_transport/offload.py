"""Bulk request and answer bodies moved over a blocking socket in a thread.

On an event loop every non-blocking ``send``/``recv`` of a large body costs a wake-up of
the loop (an ``epoll`` round, a task step, a deadline scope) and httpx2's layers copy
each piece again (h11's receive buffer). Over plain HTTP on our own transport,
:class:`Offload` opens a connection of its own for the transfer and makes it blocking:

- A streamed download (asyncio and trio) is read by a thread of its own
  (:class:`OffloadBody`): each piece one ``recv(n, MSG_WAITALL)`` straight into the
  bytes handed to the caller, read ahead up to :data:`BATCH_BYTES`; the loop is woken
  only when the caller waits for a piece.
- The upload of a large buffer already in memory (asyncio) is one ``sendall`` of the
  caller's buffer from a worker thread (``anyio.to_thread``). (Upload chunks that
  trickle in from an iterable or a file measured cheaper on the event loop, one
  crossing per chunk costing more than the loop's own writes: they go from the loop, on
  a non-blocking socket of their own, by :meth:`Offload.stream_upload` —
  :mod:`wrenn._transport.upload` — under asyncio and trio.)

Every promise of the event-loop path holds:

- Cancellation: the socket is shut down, which makes a blocked ``send``/``recv``
  return at once; the thread is waited for (joined, or back in the pool, never left
  behind), then the cancellation comes out. A connection is never reused: each
  transfer has its own, closed at its end.
- Stalls: each wait of the socket for more room or more bytes is bounded
  (:data:`SOCKET_WAIT`, kernel ``SO_RCVTIMEO``/``SO_SNDTIMEO``) and then raises
  :class:`WrennTimeoutError`; a peer that closes mid-body raises
  :class:`WrennConnectionError`; error statuses are mapped as everywhere else.
- Memory: a download's read-ahead (at most :data:`BATCH_BYTES`, each piece counted
  with :data:`PIECE_COST` on top of its bytes, and one piece of at most
  ``chunk_size``), or one caller's chunk in flight.

TLS (``https://``) and clients on a caller's own transport keep the event-loop path.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from typing import Any, Final, TypeVar, final
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._exceptions import (
    WrennConnectionError,
    WrennError,
    WrennProtocolError,
    WrennTimeoutError,
    WrennValidationError,
    error_from_response,
)
from .._protocol.http1 import (
    CHUNKED,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    Head,
    HTTP1Error,
    encode_request,
    parse_head,
)
from .retry import RetryPolicy, parse_retry_after
from .upload import send_upload, send_upload_blocking

__all__ = ["BlockingBody", "Offload", "OffloadBody", "offload_for", "on_asyncio"]

T = TypeVar("T")

# Each wait of the socket for room to send or bytes to receive (the event-loop path's
# bound on each wait for more of a download).
SOCKET_WAIT: Final = 60.0
HEAD_LIMIT: Final = 64 * 1024  # status line and headers of an answer
LINE_LIMIT: Final = 1024  # a chunk-size line, a trailer line
TRAILERS_LIMIT: Final = HEAD_LIMIT  # all the trailer lines of a chunked body
# a chunk's size: hex digits only (as the small calls' codec; not int()'s "0x", "+", "_")
_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
BATCH_BYTES: Final = 2 * 1024 * 1024  # a download's read-ahead stops at this much
# what a piece read ahead costs beyond its bytes (the bytes object's header, its deque
# slot), counted in the read-ahead: a body of 1-byte chunks held ~50 times BATCH_BYTES
PIECE_COST: Final = 64
WAKE_BYTES: Final = 1024 * 1024  # a flowing download wakes the loop at least this often
HOLD: Final = 0.002  # a piece the loop waits for is held back this long at most
CLOSE_WAIT: Final = 5.0  # how long closing a download waits for its thread
ERROR_BODY_LIMIT: Final = 1024 * 1024  # what is read of an error answer's body
try:  # bytes in a socket's receive queue (POSIX; where missing: none, nothing is held)
    import fcntl
    from termios import FIONREAD as _FIONREAD_CODE

    _FIONREAD: int | None = _FIONREAD_CODE
except ImportError:  # pragma: no cover
    _FIONREAD = None


def _queued(sock: socket.socket) -> int:
    """Bytes in ``sock``'s receive queue (0 where that cannot be told)."""
    if _FIONREAD is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


# POSIX sockets with the flags and timeouts used here (not Windows: the event loop's path)
_USABLE: Final = sys.platform != "win32" and hasattr(socket, "MSG_DONTWAIT")


def offload_for(
    base_url: str,
    own_transport: bool,
    headers: Callable[[], dict[str, str]],
    user_agent: str,
    connect_timeout: float,
) -> Offload | None:
    """An :class:`Offload` for a client's base URL, or ``None`` when its transfers stay on
    the event loop (TLS, or a transport of the caller's own)."""
    parts = urlsplit(base_url)
    if not own_transport or parts.scheme != "http" or not parts.hostname or not _USABLE:
        return None
    return Offload(
        parts.hostname,
        parts.port or 80,
        parts.netloc,
        parts.path,
        headers,
        user_agent,
        connect_timeout,
    )


def on_asyncio() -> bool:
    """Whether the running loop is asyncio's: only there is the upload of a whole buffer
    offloaded to a worker thread. (Under trio, the thread cache can keep a second idle
    worker after back-to-back transfers; trio sends from the loop, which measured as
    cheap.)"""
    return anyio.lowlevel.current_token().backend_class.__name__ == "AsyncIOBackend"


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for ``SO_RCVTIMEO``/``SO_SNDTIMEO``: at least 1 µs (zero
    would mean no bound at all), at most a year (an infinite timeout included)."""
    seconds = min(max(seconds, 0.000_001), 365 * 86400.0)
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


@final
class _Conn:
    """One blocking connection, used by one worker at a time; never reused."""

    def __init__(self, sock: socket.socket, context: str) -> None:
        self.sock = sock
        self.context = context
        self.aborted = False
        self._using = threading.Lock()  # held by the worker while it uses the socket
        self.limiter = anyio.CapacityLimiter(1)  # not the default limiter: never starved
        self._closed = False
        self._line = bytearray()  # of a line read in part (see until_crlf)

    def is_aborted(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        """Make a blocked ``send``/``recv`` return now (safe from any thread)."""
        self.aborted = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a worker thread. Cancelling the caller aborts the connection
        (so the worker returns promptly), waits for the worker (it goes back to the
        pool, never left behind) and lets the cancellation out."""
        if self.aborted or self._closed:
            raise WrennConnectionError(f"the transfer was abandoned ({self.context})")
        done = False
        failed: list[OSError | WrennError] = []
        result: T | None = None

        def work() -> T:
            with self._using:
                if self._closed:
                    raise OSError(errno.EBADF, "the transfer was abandoned")
                return func(*args)

        async def watch() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                if not done:  # the caller was cancelled
                    self.abort()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                # shielded: the worker is always waited for; the watcher ends it early
                with anyio.CancelScope(shield=True):
                    result = await anyio.to_thread.run_sync(work, limiter=self.limiter)
            except (OSError, WrennError) as exc:  # never out of the task group
                failed.append(exc)
            finally:
                done = True
                tg.cancel_scope.cancel()
        if self.is_aborted():  # (the watcher may have aborted it meanwhile)
            await anyio.lowlevel.checkpoint()  # the cancellation that aborted it, if any
        if failed:
            if isinstance(failed[0], WrennError):
                raise failed[0]
            raise self._mapped(failed[0]) from failed[0]
        return result  # type: ignore[return-value]

    def _mapped(self, exc: OSError) -> WrennError:
        if isinstance(exc, TimeoutError | BlockingIOError):  # SO_RCVTIMEO / SO_SNDTIMEO
            return WrennTimeoutError(
                f"the server sent or took nothing for {SOCKET_WAIT:g} s ({self.context})"
            )
        return WrennConnectionError(f"the connection broke: {exc} ({self.context})")

    async def aclose(self) -> None:
        """Close the socket (no worker uses it any more: :meth:`run` waits for its own)."""
        if self._closed:
            return
        self._closed = True
        with self._using:  # free: every run() has waited for its worker
            self.sock.close()

    # -- blocking steps, run in the worker ----------------------------------------------

    def until_crlf(self, terminator: bytes, limit: int, deadline: float | None = None) -> bytes:
        """Bytes up to ``terminator`` (consumed, not returned), reading no further; with
        a ``deadline`` (monotonic), each wait is bounded by the time left before it.
        Interrupted by the socket's receive timeout, what of the line was read is kept
        for the next call (which goes on with the same line)."""
        sock = self.sock
        got = self._line
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the deadline passed")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(left))
            peek = sock.recv(limit - len(got) + len(terminator), socket.MSG_PEEK)
            if not peek:
                raise WrennConnectionError(f"the server closed the connection ({self.context})")
            joined = got + peek
            end = joined.find(terminator, max(0, len(got) - len(terminator) + 1))
            if end >= 0:
                take = end + len(terminator) - len(got)
                if len(sock.recv(take, socket.MSG_WAITALL)) != take:
                    raise WrennConnectionError(f"the connection broke ({self.context})")
                self._line = bytearray()
                return bytes(joined[:end])
            if len(joined) > limit:
                raise WrennProtocolError(f"an answer line is over {limit} bytes ({self.context})")
            got += sock.recv(len(peek))


def _parse_head(raw: bytes, context: str) -> Head:
    """An answer's head, parsed by the same strict codec as the small calls' fast path."""
    try:
        return parse_head(raw)
    except HTTP1Error as exc:
        raise WrennProtocolError(f"{exc} ({context})") from None


@final
class _BodyReader:
    """Reads an answer's body in pieces of at most ``n`` bytes (in the worker)."""

    def __init__(self, conn: _Conn, head: Head) -> None:
        self._conn = conn
        self._chunked = head.framing == CHUNKED
        # fixed length: bytes left; chunked: of this chunk; None: until the close
        self._left: int | None = None if head.framing == UNTIL_CLOSE else head.length
        self._crlf_due = 0  # chunked: bytes of the CRLF after a chunk's data still to read
        self._trailers = False  # chunked: the last chunk came, its trailers are being read
        self._trailer_bytes = 0  # chunked: of the trailer lines read so far
        self.done = head.framing == NO_BODY or (head.framing == LENGTH and not head.length)

    def piece(self, n: int, deadline: float | None = None) -> bytes:
        """The next piece (``b""`` at the end of the body). Interrupted by the socket's
        receive timeout, it raises (``TimeoutError``/``BlockingIOError``) with nothing
        lost, or returns the part of the piece that came: the next call goes on. With a
        ``deadline`` (monotonic), each wait is bounded by the time left before it, so
        the call as a whole ends by then (bytes that trickle in, each within a wait's
        bound, do not stretch it); the socket's receive timeout is left changed."""
        if self.done:
            return b""
        conn = self._conn
        if self._chunked and not self._left:
            if not self._trailers:
                self._take_crlf(deadline)
                line = conn.until_crlf(b"\r\n", LINE_LIMIT, deadline)
                line = line.split(b";", 1)[0].strip(b" \t")
                if not _CHUNK_SIZE.fullmatch(line):
                    raise WrennProtocolError(f"a malformed chunk size ({conn.context})")
                size = int(line, 16)
                self._trailers = size == 0
                self._left = size
            if self._trailers:
                while line := conn.until_crlf(b"\r\n", LINE_LIMIT, deadline):  # to an empty line
                    self._trailer_bytes += len(line) + 2
                    if self._trailer_bytes > TRAILERS_LIMIT:
                        raise WrennProtocolError(
                            f"the trailers are over {TRAILERS_LIMIT} bytes ({conn.context})"
                        )
                self.done = True
                return b""
        want = n if self._left is None else min(n, self._left)
        self._bound(deadline)
        data = conn.sock.recv(want, socket.MSG_WAITALL)
        if not data:
            if self._left is None:  # framed by the end of the connection
                self.done = True
                return b""
            raise WrennConnectionError(f"the body broke off ({conn.context})")
        if self._left is not None:
            self._left -= len(data)
            if not self._left:
                self.done = not self._chunked
                self._crlf_due = 2 if self._chunked else 0
        return data

    def _bound(self, deadline: float | None) -> None:
        """The socket's next wait bounded by the time left before ``deadline``."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the deadline passed")
            self._conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(left))

    def _take_crlf(self, deadline: float | None = None) -> None:
        while self._crlf_due:
            self._bound(deadline)
            got = self._conn.sock.recv(self._crlf_due, socket.MSG_WAITALL)
            if not got or got != b"\r\n"[2 - self._crlf_due :][: len(got)]:
                raise WrennProtocolError(f"a malformed chunked body ({self._conn.context})")
            self._crlf_due -= len(got)

    def rest(self, limit: int) -> bytes:
        """The rest of the body, at most ``limit`` bytes of it (an error answer)."""
        parts: list[bytes] = []
        size = 0
        while size < limit and (data := self.piece(limit - size)):
            parts.append(data)
            size += len(data)
        return b"".join(parts)


@final
class OffloadBody:
    """An answer's body in pieces of at most ``chunk_size`` bytes, read by a thread of
    its own (one per download, started by :meth:`Offload.download`, always joined by
    :meth:`aclose`): each piece one ``recv(n, MSG_WAITALL)`` straight into the bytes
    handed over. The thread reads ahead while fewer than :data:`BATCH_BYTES` wait to be
    taken (memory: that and one piece), and wakes the event loop (one byte on a socket
    pair the loop waits on) only when the caller is waiting for a piece, so a body that
    flows costs no loop crossing per piece. Works alike under asyncio and trio; no
    worker pool is used. A body that breaks off raises :class:`WrennConnectionError`
    once the pieces before the break are taken; a wait over :data:`SOCKET_WAIT` raises
    :class:`WrennTimeoutError`. Tasks iterating it together share its pieces; once it
    is closed, iterating it raises :class:`WrennConnectionError` (never a short body)."""

    def __init__(self, conn: _Conn, chunk_size: int) -> None:
        self._conn = conn
        self._chunk_size = chunk_size
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # the thread waits here for room
        self._ready: deque[bytes] = deque()
        self._backlog = 0  # bytes in _ready, and PIECE_COST for each piece
        self._opened = False  # the answer's head is in and is not an error
        self._ended = False  # the thread has nothing more to do (it closes nothing)
        self._failure: BaseException | None = None
        self._waiting = False  # the loop waits for a wake-up
        self._stopping = False  # the caller closed the body
        self._orphaned = False  # aclose gave up waiting: the thread closes what it used
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # one task at a time waits on _wake_r (a second waiter on one socket is refused
        # by anyio: two tasks iterating the body, or aclose from another task)
        self._turn = anyio.Lock(fast_acquire=True)  # (__anext__ has had its checkpoint)
        self._thread: threading.Thread | None = None
        self._reader: _BodyReader | None = None

    def __repr__(self) -> str:
        return f"<OffloadBody ended={self._ended} aborted={self._conn.aborted}>"

    # -- the thread ---------------------------------------------------------------------

    def start(self, request: bytes, deadline: float | None, open_timeout: float) -> None:
        """Start the thread: send ``request``, read the answer's head by ``deadline``
        (monotonic; ``None``: no bound), then the body."""
        thread = threading.Thread(
            target=self._run, args=(request, deadline, open_timeout), name="wrenn download"
        )
        thread.daemon = True  # never holds the interpreter's exit (aclose joins it)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had: aclose closes what is open
            raise WrennConnectionError(
                f"cannot start the download: {exc} ({self._conn.context})"
            ) from exc
        self._thread = thread

    def _run(self, request: bytes, deadline: float | None, open_timeout: float) -> None:
        conn = self._conn
        try:
            reader = Offload._opened(conn, request, deadline, open_timeout)
            self._reader = reader
            self._hand(opened=True)
            size = self._chunk_size
            held_until: float | None = None  # pieces the loop waits for are held back
            while not reader.done:
                with self._lock:
                    while self._backlog >= BATCH_BYTES and not self._stopping:
                        self._room.wait()
                    if self._stopping:
                        break
                if held_until is None:
                    piece = reader.piece(size)
                elif (piece_or_none := self._piece_by(reader, size, held_until)) is None:
                    self._hand()  # nothing more by then: hand on what is held
                    held_until = None
                    continue
                else:
                    piece = piece_or_none
                if not piece:
                    break
                if self._hand(piece, hold=True):
                    held_until = held_until or time.monotonic() + HOLD
                else:
                    held_until = None
        except WrennError as exc:  # (a WrennTimeoutError is an OSError too: kept as it is)
            self._failure = exc
        except OSError as exc:
            self._failure = conn._mapped(exc)
        except BaseException as exc:  # a bug: the caller sees it
            self._failure = exc
        finally:
            with self._lock:
                self._ended = True
                orphaned = self._orphaned
            self._wake()
            if orphaned:  # the caller stopped waiting for this thread: nobody else may
                self._close_all()

    def _hand(self, piece: bytes = b"", *, opened: bool = False, hold: bool = False) -> bool:
        """In the thread: hand on a piece (or the news of the head, or nothing: what is
        held), waking the loop if it waits. With ``hold``, a piece the loop waits for
        is held back while the body flows (bytes of the next piece are here already,
        fewer than :data:`WAKE_BYTES` wait): the thread then reads what comes within
        :data:`HOLD` of the first held piece (:meth:`_piece_by`) before the loop is
        woken. Whether it was held."""
        with self._lock:
            if opened:
                self._opened = True
            elif piece:
                self._ready.append(piece)
                self._backlog += len(piece) + PIECE_COST
                if (
                    hold
                    and self._waiting
                    and self._backlog < WAKE_BYTES
                    and self._reader is not None
                    and _queued(self._conn.sock) > 0
                ):
                    return True
            waiting, self._waiting = self._waiting, False
        if waiting:
            self._wake()
        return False

    def _piece_by(self, reader: _BodyReader, n: int, deadline: float) -> bytes | None:
        """In the thread, while pieces are held: the next piece, or what of it comes
        by ``deadline`` (monotonic; the socket's receive timeout shortened to the time
        left, nothing read is lost when it strikes), or ``None`` if nothing of it does
        (the held pieces are then handed on)."""
        if deadline - time.monotonic() <= 0:
            return None
        sock = self._conn.sock
        try:
            return reader.piece(n, deadline)
        except (TimeoutError, BlockingIOError):
            return None
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(SOCKET_WAIT))

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def _close_all(self) -> None:
        self._conn.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the event loop -----------------------------------------------------------------

    async def _wait(self) -> None:
        """Until the thread hands something on (``_waiting`` set under the lock)."""
        try:
            await anyio.wait_readable(self._wake_r)
        finally:
            with self._lock:
                self._waiting = False
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    async def opened(self) -> None:
        """Wait for the answer's head; raise what stopped the body from opening."""
        while True:
            with self._lock:
                if self._opened:
                    return
                if self._ended:
                    assert self._failure is not None
                    raise self._failure
                self._waiting = True
            await self._wait()

    def __aiter__(self) -> OffloadBody:
        return self

    async def __anext__(self) -> bytes:
        await anyio.lowlevel.checkpoint()  # a caller's loop is cancellable at every piece
        with self._lock:
            if self._stopping:  # not the pieces read ahead, then a quiet end: a short body
                raise self._closed_error()
            if self._ready:
                return self._take()
        async with self._turn:  # tasks iterating the body together wait in turn
            while True:
                with self._lock:
                    if self._ready:
                        return self._take()
                    if self._stopping:  # closed by another task meanwhile
                        raise self._closed_error()
                    if self._ended:
                        if self._failure is not None:
                            raise self._failure
                        raise StopAsyncIteration
                    self._waiting = True
                await self._wait()

    def _closed_error(self) -> WrennConnectionError:
        return WrennConnectionError(
            "this download is closed: read its chunks inside the"
            f" `async with ... read_stream(...)` block ({self._conn.context})"
        )

    def _take(self) -> bytes:
        piece = self._ready.popleft()
        self._backlog -= len(piece) + PIECE_COST
        if self._backlog < BATCH_BYTES:
            self._room.notify()
        return piece

    def take_ready(self, limit: int) -> list[bytes]:
        """Up to ``limit`` pieces already received, without waiting (for batching)."""
        with self._lock:
            if self._stopping:
                return []
            return [self._take() for _ in range(min(limit, len(self._ready)))]

    async def aclose(self) -> None:
        """Stop the thread and close the connection (shielded and bounded: safe in a
        ``finally``). A thread still reading is made to return at once (the socket is
        shut down) and is joined; one that does not end within :data:`CLOSE_WAIT`
        (which nothing here leads to) closes its sockets itself when it ends."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._room.notify_all()
            ended = self._ended
        if self._thread is None:
            self._close_all()
            return
        if not ended:
            self._conn.abort()  # a blocked send or receive returns now
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_WAIT):
                # a task iterating meanwhile has the turn until the thread's end wakes it
                async with self._turn:
                    while True:
                        with self._lock:
                            if self._ended:
                                break
                            self._waiting = True
                        await self._wait()
        finally:  # also when the wait is interrupted (trio's KeyboardInterrupt reaches it)
            with self._lock:
                ended = self._ended
                self._orphaned = not ended
            if ended:
                self._thread.join()
                self._close_all()


@final
class BlockingBody:
    """An answer's body in pieces of at most ``chunk_size`` bytes, each read in the
    calling thread as it asks for the next (the sync API's downloads). A body that breaks
    off raises :class:`WrennConnectionError`, a wait over :data:`SOCKET_WAIT`
    :class:`WrennTimeoutError`; :meth:`close` closes the connection."""

    def __init__(self, conn: _Conn, reader: _BodyReader, chunk_size: int) -> None:
        self._conn = conn
        self._reader = reader
        self._chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"<BlockingBody done={self._reader.done} closed={self.closed}>"

    @property
    def closed(self) -> bool:
        return self._conn.sock.fileno() < 0

    def __iter__(self) -> Iterator[bytes]:
        reader, size = self._reader, self._chunk_size
        while not reader.done:
            try:
                piece = reader.piece(size)
            except OSError as exc:
                if self.closed:  # read after its block ended (the socket is gone)
                    raise WrennConnectionError(
                        "this download is closed: read its chunks inside the"
                        f" `with ... read_stream(...)` block ({self._conn.context})"
                    ) from None
                raise self._conn._mapped(exc) from exc
            if not piece:
                return
            yield piece

    def close(self) -> None:
        """Close the connection (mid-body: it is never reused)."""
        self._conn.sock.close()


@final
class Offload:
    """Streamed uploads and downloads of one client, each over its own blocking
    connection moved by a worker thread (see the module's docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        netloc: str,
        prefix: str,
        headers: Callable[[], dict[str, str]],
        user_agent: str,
        connect_timeout: float,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._host = host
        self._port = port
        self._netloc = netloc
        self._prefix = prefix.rstrip("/")
        self._headers = headers  # the credential, read at each request
        self._user_agent = user_agent

    def __repr__(self) -> str:
        return f"<Offload {self._netloc}>"

    async def _addresses(self) -> list[tuple[Any, Any, int, str, Any]]:
        """Where to connect: an address as it is, a name resolved (in a thread)."""
        try:
            ip = ipaddress.ip_address(self._host.strip("[]"))
        except ValueError:
            return list(await anyio.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM))
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 0, "", (str(ip), self._port))]

    async def _connect(self, context: str, timeout: float) -> _Conn:
        """A connected blocking socket (connecting on the loop: cancellable)."""
        last: OSError | None = None
        with anyio.move_on_after(timeout) as scope:
            for family, kind, proto, _, addr in await self._addresses():
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    err = sock.connect_ex(addr)
                    if err not in (0, errno.EINPROGRESS):
                        raise OSError(err, os.strerror(err))
                    await anyio.wait_writable(sock)
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                except OSError as exc:
                    sock.close()
                    last = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(SOCKET_WAIT))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(SOCKET_WAIT))
                return _Conn(sock, context)
        if scope.cancelled_caught:
            raise WrennTimeoutError(f"connecting timed out after {timeout:g} s ({context})")
        raise WrennConnectionError(f"cannot connect: {last} ({context})") from last

    def _head(self, path: str, headers: dict[str, str]) -> bytes:
        fields = {
            "Host": self._netloc,
            "User-Agent": self._user_agent,
            "Accept": "application/json",
            "Connection": "close",
            **self._headers(),
            **headers,
        }
        try:
            return encode_request(
                b"POST",
                f"{self._prefix}{path}".encode(),
                [(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields.items()],
                None,
            )
        except HTTP1Error as exc:
            raise WrennValidationError(f"cannot send this request: {exc}") from None
        except UnicodeEncodeError:
            raise WrennValidationError("a header holds characters HTTP cannot carry") from None

    @staticmethod
    def _read_answer(conn: _Conn, deadline: float | None = None) -> tuple[Head, _BodyReader]:
        while True:
            raw = conn.until_crlf(b"\r\n\r\n", HEAD_LIMIT, deadline)
            head = _parse_head(raw, conn.context)
            if not head.interim:
                return head, _BodyReader(conn, head)

    @staticmethod
    def _error(conn: _Conn, head: Head, reader: _BodyReader) -> WrennError:
        try:
            body = reader.rest(ERROR_BODY_LIMIT)
        except (OSError, WrennError):
            body = b""
        return error_from_response(
            head.status,
            body,
            retry_after=parse_retry_after(
                (head.get(b"retry-after") or b"").decode("latin-1") or None
            ),
            context=conn.context,
        )

    async def download(
        self, path: str, body: bytes, chunk_size: int, *, open_timeout: float
    ) -> OffloadBody:
        """Send ``body`` (JSON) to ``path`` and open the answer: connected, sent, and its
        status line and headers read within ``open_timeout`` as a whole
        (:class:`WrennTimeoutError`; ``math.inf``: no bound); an error status is raised
        mapped, with what of its body came in that time. The body's pieces are read by
        a thread of the returned :class:`OffloadBody`, which the caller closes
        (``aclose``). Cancelled while opening: the thread is stopped and joined, the
        connection closed, and the cancellation comes out."""
        context = f"POST {path}"
        request = (
            self._head(path, {"Content-Type": "application/json", "Content-Length": str(len(body))})
            + body
        )
        bounded = not math.isinf(open_timeout)
        deadline = time.monotonic() + open_timeout if bounded else None
        with anyio.move_on_after(open_timeout) as scope:
            conn = await self._connect(context, min(self._connect_timeout, open_timeout))
        if scope.cancelled_caught:
            raise WrennTimeoutError(f"no answer within {open_timeout:g} s ({context})")
        try:
            answer = OffloadBody(conn, chunk_size)
        except BaseException as exc:
            conn.sock.close()
            if isinstance(exc, OSError):  # no socket pair to be had (EMFILE, say)
                raise WrennConnectionError(f"cannot start the download: {exc} ({context})") from exc
            raise
        try:
            answer.start(request, deadline, open_timeout)
            with anyio.move_on_after(open_timeout + 1.0) as scope:  # the thread's own bound first
                await answer.opened()
            if scope.cancelled_caught:
                raise WrennTimeoutError(f"no answer within {open_timeout:g} s ({context})")
        except BaseException:
            await answer.aclose()
            raise
        return answer

    async def upload(self, path: str, headers: dict[str, str], body: AsyncIterable[bytes]) -> None:
        """POST ``body``'s chunks to ``path``, each sent from the caller's buffer, framed
        by the ``Content-Length`` of ``headers`` (required: chunks that trickle in cost
        less on the event loop). Then read the answer and raise its error, if any. The
        caller bounds the whole call; an exception from ``body`` abandons the upload (its
        connection is closed mid-body, so the server keeps nothing)."""
        context = f"POST {path}"
        if "Content-Length" not in headers:
            raise WrennValidationError("an offloaded upload needs a Content-Length")
        head_bytes = self._head(path, headers)
        conn = await self._connect(context, self._connect_timeout)
        try:
            await conn.run(conn.sock.sendall, head_bytes)
            sent_error: WrennConnectionError | None = None
            try:
                async for chunk in body:
                    await conn.run(conn.sock.sendall, chunk)
            except WrennConnectionError as exc:
                if conn.aborted:
                    raise
                sent_error = exc  # the server may have answered (and closed) early
            try:
                head, reader = await conn.run(self._read_answer, conn)
            except WrennError:
                if sent_error is not None:
                    raise sent_error from None
                raise
            if head.status >= 400:
                raise await conn.run(self._error, conn, head, reader)
            if sent_error is not None:
                raise sent_error
        finally:
            if (aclose := getattr(body, "aclose", None)) is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await aclose()  # an abandoned source is finalised now, not by the GC
            await conn.aclose()

    async def stream_upload(
        self,
        path: str,
        headers: dict[str, str],
        body: AsyncIterable[bytes],
        retry: RetryPolicy | None = None,
    ) -> None:
        """POST ``body``'s chunks to ``path`` from the event loop (asyncio or trio), over
        a non-blocking connection of their own (see :mod:`wrenn._transport.upload`):
        framed by the ``Content-Length`` of ``headers`` if there is one, else chunked.
        A connection that cannot be made is tried again as ``retry`` allows (nothing
        was sent). The caller bounds the whole call; an exception from ``body`` comes
        out as it is and abandons the upload (its connection is closed mid-body)."""
        context = f"POST {path}"
        chunked = "Content-Length" not in headers
        if chunked:
            headers = {**headers, "Transfer-Encoding": "chunked"}
        try:
            head_bytes = self._head(path, headers)
            attempt = 0
            while True:
                try:
                    conn = await self._connect(context, self._connect_timeout)
                    break
                except (WrennConnectionError, WrennTimeoutError):
                    if retry is None or attempt >= retry.max_retries:
                        raise
                await anyio.sleep(retry.delay(attempt))
                attempt += 1
        except BaseException:
            if (aclose := getattr(body, "aclose", None)) is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await aclose()
            raise
        await send_upload(conn.sock, head_bytes, body, chunked=chunked, context=context)

    def stream_upload_blocking(
        self, path: str, headers: dict[str, str], body: Iterable[bytes]
    ) -> None:
        """:meth:`stream_upload` for the sync API, blocking in the calling thread (see
        :func:`wrenn._transport.upload.send_upload_blocking`); the caller closes
        ``body``."""
        context = f"POST {path}"
        chunked = "Content-Length" not in headers
        if chunked:
            headers = {**headers, "Transfer-Encoding": "chunked"}
        head_bytes = self._head(path, headers)
        sock = self._connect_blocking(context, self._connect_timeout)
        send_upload_blocking(sock, head_bytes, body, chunked=chunked, context=context)

    def _connect_blocking(self, context: str, timeout: float) -> socket.socket:
        """A connected blocking socket, made in the calling thread: every address of the
        host tried in turn, all of them within ``timeout`` (resolving a name is the
        system resolver's own affair, as for any blocking client)."""
        end = time.monotonic() + timeout
        try:
            addresses = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise WrennConnectionError(f"cannot connect: {exc} ({context})") from exc
        last: OSError | None = None
        for family, kind, proto, _, address in addresses:
            left = end - time.monotonic()
            if left <= 0:
                break
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(None if math.isinf(left) else left)
                sock.connect(address)
                sock.settimeout(None)  # blocking: each wait bounded by the kernel's timeouts
            except TimeoutError as exc:
                sock.close()
                last = exc
                break
            except OSError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:  # Ctrl-C while connecting: nothing left open
                sock.close()
                raise
            return sock
        if last is None or isinstance(last, TimeoutError):
            raise WrennTimeoutError(f"connecting timed out after {timeout:g} s ({context})")
        raise WrennConnectionError(f"cannot connect: {last} ({context})") from last

    def download_blocking(
        self, path: str, body: bytes, chunk_size: int, *, open_timeout: float
    ) -> BlockingBody:
        """:meth:`download` for the sync API, in the calling thread: ``body`` (JSON) sent
        to ``path``, and the answer's status line and headers, within ``open_timeout``
        as a whole (else :class:`WrennTimeoutError`; ``math.inf``: no bound). An error
        status is raised mapped, with what of its body came within that time. The
        body's pieces are then read as the caller asks for them, straight into the
        bytes handed over; each wait is bounded by :data:`SOCKET_WAIT`, so a body that
        stops is reported within twice that (a wait that ends with part of a piece
        hands that part on first). A ``KeyboardInterrupt`` (Ctrl-C during a blocking
        receive) comes out as it is, the socket closed. The caller closes the returned
        body."""
        context = f"POST {path}"
        head_bytes = self._head(
            path, {"Content-Type": "application/json", "Content-Length": str(len(body))}
        )
        bounded = not math.isinf(open_timeout)
        deadline = time.monotonic() + open_timeout if bounded else None
        sock = self._connect_blocking(context, min(self._connect_timeout, open_timeout))
        try:
            conn = _Conn(sock, context)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(SOCKET_WAIT))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(SOCKET_WAIT))
            try:
                reader = self._opened(conn, head_bytes + body, deadline, open_timeout)
            except WrennError:  # (a WrennTimeoutError is an OSError too: not mapped again)
                raise
            except OSError as exc:
                raise conn._mapped(exc) from exc
        except BaseException:
            sock.close()
            raise
        return BlockingBody(conn, reader, chunk_size)

    @staticmethod
    def _opened(
        conn: _Conn, request: bytes, deadline: float | None, open_timeout: float
    ) -> _BodyReader:
        """Send ``request`` and read the answer's head by ``deadline`` (else
        :class:`WrennTimeoutError`); an error status is raised mapped, with what of its
        body came by then. The reader of the body, each of its waits bounded by
        :data:`SOCKET_WAIT` from here on."""
        try:
            conn.sock.sendall(request)
            head, reader = Offload._read_answer(conn, deadline)
            if head.status >= 400:
                raise Offload._error_within(conn, head, reader, deadline)
        except (TimeoutError, BlockingIOError):
            raise WrennTimeoutError(
                f"no answer within {open_timeout:g} s ({conn.context})"
            ) from None
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(SOCKET_WAIT))
        return reader

    @staticmethod
    def _error_within(
        conn: _Conn, head: Head, reader: _BodyReader, deadline: float | None
    ) -> WrennError:
        """The error of an error answer, with what of its body (at most
        :data:`ERROR_BODY_LIMIT`) comes before ``deadline``."""
        parts: list[bytes] = []
        size = 0
        try:
            while size < ERROR_BODY_LIMIT:
                data = reader.piece(ERROR_BODY_LIMIT - size, deadline)
                if not data:
                    break
                parts.append(data)
                size += len(data)
        except (OSError, WrennError):
            pass  # the status says what failed; the body is only its detail
        return error_from_response(
            head.status,
            b"".join(parts),
            retry_after=parse_retry_after(
                (head.get(b"retry-after") or b"").decode("latin-1") or None
            ),
            context=conn.context,
        )
