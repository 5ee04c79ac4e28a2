"""Streamed uploads over plain ``http://`` on the event loop, from the caller's chunks,
over a non-blocking socket of their own (asyncio and trio).

Through httpx2 every chunk of an upload of unknown size cost h11's chunked framing (the
chunk copied into one buffer with its size line), the stream layers' bookkeeping and a
wait of the loop for each socket event with the kernel's default send buffer. Here a
chunk leaves with one ``sendmsg`` of its size line, the caller's own bytes and a CRLF
(no copy; with a ``Content-Length``, the bytes alone); small chunks go together, up to
:data:`BATCH_BYTES`; the socket's send buffer is :data:`SEND_BUFFER` (a wait of the loop
per several MiB, not per few hundred KiB); the answer is parsed by
:mod:`wrenn._protocol.http1`.

The promises of the other paths hold:

- Cancellation at any point (before the head, mid-body, waiting for the answer) closes
  the socket at once: the server sees a body that ends early and keeps no file. A
  connection carries one upload (``Connection: close``) and is never reused.
- Stalls: each wait for room in the socket or for the answer is bounded by
  :data:`SOCKET_WAIT` and then raises :class:`WrennTimeoutError`; a peer that breaks
  the connection raises :class:`WrennConnectionError`, unless it answered first (an
  early error answer, e.g. a 404, wins); error statuses are mapped as everywhere else.
- An exception from the caller's chunks comes out unchanged (the upload is abandoned).
- Memory: at most :data:`BATCH_BYTES` of small chunks, or one caller's chunk, held.

The sync API's uploads take the same path blocking in the caller's thread
(:func:`send_upload_blocking`: ``poll`` for the waits, the same bounds and errors).

TLS (``https://``) and clients on a caller's own transport keep httpx2's path.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import AsyncIterable, Iterable
from typing import Final

import anyio
import anyio.lowlevel

from .._exceptions import (
    WrennConnectionError,
    WrennError,
    WrennProtocolError,
    WrennTimeoutError,
    error_from_response,
)
from .._protocol.http1 import HTTP1Error, ResponseParser
from .retry import parse_retry_after

__all__ = ["BATCH_BYTES", "SEND_BUFFER", "SOCKET_WAIT", "send_upload", "send_upload_blocking"]

SOCKET_WAIT: Final = 60.0  # each wait for room to send or for the answer's bytes
PEEK_EVERY: Final = 0.25  # how often a wait for room looks for an early answer
SEND_BUFFER: Final = 4 * 1024 * 1024  # the socket's send buffer (the kernel doubles it)
BATCH_BYTES: Final = 64 * 1024  # small chunks are held until this much, then sent together
BATCH_PIECES: Final = 96  # and at most this many buffers in one sendmsg (IOV_MAX: 1024)
ANSWER_LIMIT: Final = 2 * 1024 * 1024  # the answer to an upload is small JSON
_LAST_CHUNK: Final = b"0\r\n\r\n"


class _SendFailed(WrennConnectionError):
    """The connection broke while sending (the server may have answered first)."""


class _Batch:
    """The wire pieces of the chunks not sent yet: each chunk with its chunked framing
    (size line and CRLF as pieces of their own: the chunk is not copied) or as it is."""

    def __init__(self, head: bytes, *, chunked: bool) -> None:
        self.pieces: list[bytes] = [head]  # the head leaves with the first chunk
        self.held = len(head)
        self._chunked = chunked

    def add(self, chunk: bytes) -> bool:
        """Hold ``chunk``; whether the pieces held are now worth a send."""
        if self._chunked:
            self.pieces += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
        else:
            self.pieces.append(chunk)
        self.held += len(chunk)
        return self.held >= BATCH_BYTES or len(self.pieces) >= BATCH_PIECES

    def take(self) -> list[bytes]:
        pieces, self.pieces, self.held = self.pieces, [], 0
        return pieces

    def last(self) -> list[bytes]:
        """Everything still held, and the end of a chunked body."""
        if self._chunked:
            self.pieces.append(_LAST_CHUNK)
        return self.take()


def _sent(sock: socket.socket, views: list[bytes | memoryview], context: str) -> None:
    """One ``sendmsg`` of as much of ``views`` as the socket takes now; what went is
    dropped from ``views``."""
    try:
        sent = sock.sendmsg(views)
    except BlockingIOError:
        return
    except OSError as exc:
        raise _SendFailed(f"the connection broke: {exc} ({context})") from None
    while sent:
        first = len(views[0])
        if sent >= first:
            sent -= first
            del views[0]
        else:
            views[0] = memoryview(views[0])[sent:]
            sent = 0


def _answered(sock: socket.socket) -> bool:
    """Whether the server sent something (or closed its side) already."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) is not None
    except BlockingIOError:
        return False
    except OSError:
        return True  # broken: reading the answer reports it


def _room_wait(sock: socket.socket, end: float, context: str) -> float:
    """How long the next wait for room may be (at most :data:`PEEK_EVERY`: a server that
    answered early, refused the upload and reads no more ends the wait)."""
    if _answered(sock):
        raise _SendFailed(f"the server answered before the whole body was sent ({context})")
    left = end - time.monotonic()
    if left <= 0:
        raise WrennTimeoutError(f"the server took nothing for {SOCKET_WAIT:g} s ({context})")
    return min(left, PEEK_EVERY)


def _read_some(sock: socket.socket, parser: ResponseParser, got: int, context: str) -> int:
    """Feed what the socket has of the answer to ``parser``: the bytes read so far
    (-1: the answer is complete; raises ``BlockingIOError`` when nothing is there)."""
    try:
        data = sock.recv(64 * 1024)
        if not data:
            parser.end_of_stream()
            return -1
        got += len(data)
        if got > ANSWER_LIMIT:
            raise WrennProtocolError(f"the answer is over {ANSWER_LIMIT} bytes ({context})")
        return -1 if parser.feed(data) else got
    except (WrennError, BlockingIOError):
        raise  # WrennTimeoutError is an OSError too: not a broken connection
    except HTTP1Error as exc:
        if parser.status or "closed" not in str(exc):
            raise WrennProtocolError(f"{exc} ({context})") from None
        raise WrennConnectionError(f"{exc} ({context})") from None
    except OSError as exc:
        raise WrennConnectionError(f"the connection broke: {exc} ({context})") from None


def _no_answer(context: str) -> WrennTimeoutError:
    return WrennTimeoutError(f"no answer within {SOCKET_WAIT:g} s after the body ({context})")


def _outcome(answer: ResponseParser, sent_error: _SendFailed | None, context: str) -> None:
    """Raise the answer's error (it wins over a broken send), or the send's."""
    if answer.status >= 400:
        retry_after = next(
            (v for n, v in answer.headers if n.lower() == b"retry-after"), b""
        ).decode("latin-1")
        raise error_from_response(
            answer.status,
            answer.body,
            retry_after=parse_retry_after(retry_after or None),
            context=context,
        )
    if sent_error is not None:
        raise sent_error


def _prepare(sock: socket.socket) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


# --- on the event loop -------------------------------------------------------------------


async def _send(sock: socket.socket, pieces: list[bytes], context: str) -> None:
    """Send every piece, in order, from the caller's buffers; wait for room as needed."""
    views: list[bytes | memoryview] = list(pieces)
    while True:
        _sent(sock, views, context)
        if not views:
            return
        end = time.monotonic() + SOCKET_WAIT
        while True:
            with anyio.move_on_after(_room_wait(sock, end, context)) as scope:
                await anyio.wait_writable(sock)
            if not scope.cancelled_caught:
                break


async def _answer(sock: socket.socket, context: str) -> ResponseParser:
    """The whole answer (interim answers skipped), read from the socket."""
    parser = ResponseParser()
    got = 0
    while got >= 0:
        try:
            got = _read_some(sock, parser, got, context)
        except BlockingIOError:
            with anyio.move_on_after(SOCKET_WAIT) as scope:
                await anyio.wait_readable(sock)
            if scope.cancelled_caught:
                raise _no_answer(context) from None
    return parser


async def send_upload(
    sock: socket.socket,
    head: bytes,
    body: AsyncIterable[bytes],
    *,
    chunked: bool,
    context: str,
) -> None:
    """Send the request ``head`` and ``body``'s chunks on ``sock`` (connected; this call
    owns and closes it), chunked or as they are (``head`` has their ``Content-Length``),
    then read the answer and raise its error, if any. The caller bounds the whole call;
    the source is closed (``aclose``) when the upload ends early."""
    try:
        _prepare(sock)
        batch = _Batch(head, chunked=chunked)
        unchecked = 0  # bytes sent since the last checkpoint of the loop
        sent_error: _SendFailed | None = None
        try:
            async for chunk in body:
                if chunk and batch.add(chunk):
                    unchecked += batch.held
                    await _send(sock, batch.take(), context)
                    if unchecked >= SEND_BUFFER:  # the socket never made us wait: let others run
                        await anyio.lowlevel.checkpoint()
                        unchecked = 0
            await _send(sock, batch.last(), context)
        except _SendFailed as exc:
            sent_error = exc  # the server may have answered (and closed) early
        try:
            answer = await _answer(sock, context)
        except WrennError:
            if sent_error is not None:
                raise sent_error from None
            raise
        _outcome(answer, sent_error, context)
    finally:
        sock.close()
        if (aclose := getattr(body, "aclose", None)) is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await aclose()  # an abandoned source is finalised now, not by the GC


# --- blocking, in the caller's thread (the sync API) ---------------------------------------


def _wait(sock: socket.socket, event: int, seconds: float) -> bool:
    poller = select.poll()
    poller.register(sock, event)
    return bool(poller.poll(seconds * 1000))


def _send_blocking(sock: socket.socket, pieces: list[bytes], context: str) -> None:
    views: list[bytes | memoryview] = list(pieces)
    while True:
        _sent(sock, views, context)
        if not views:
            return
        end = time.monotonic() + SOCKET_WAIT
        while not _wait(sock, select.POLLOUT, _room_wait(sock, end, context)):
            pass


def _answer_blocking(sock: socket.socket, context: str) -> ResponseParser:
    parser = ResponseParser()
    got = 0
    while got >= 0:
        try:
            got = _read_some(sock, parser, got, context)
        except BlockingIOError:
            if not _wait(sock, select.POLLIN, SOCKET_WAIT):
                raise _no_answer(context) from None
    return parser


def send_upload_blocking(
    sock: socket.socket,
    head: bytes,
    body: Iterable[bytes],
    *,
    chunked: bool,
    context: str,
) -> None:
    """:func:`send_upload` for the sync API, in the calling thread: the same framing,
    bounds and errors. An exception from ``body`` (also ``KeyboardInterrupt``) comes out
    as it is; the socket is closed whatever happens (the caller closes ``body``)."""
    try:
        _prepare(sock)
        batch = _Batch(head, chunked=chunked)
        sent_error: _SendFailed | None = None
        try:
            for chunk in body:
                if chunk and batch.add(chunk):
                    _send_blocking(sock, batch.take(), context)
            _send_blocking(sock, batch.last(), context)
        except _SendFailed as exc:
            sent_error = exc
        try:
            answer = _answer_blocking(sock, context)
        except WrennError:
            if sent_error is not None:
                raise sent_error from None
            raise
        _outcome(answer, sent_error, context)
    finally:
        sock.close()
