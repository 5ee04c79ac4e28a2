"""Our WebSocket client: wsproto over anyio TCP/TLS, owned by the caller's scope.

``async with connect_websocket(url, ...) as ws:`` opens the connection (bounded by
``open_timeout``), validates the handshake, and starts **one reader task** inside the
block's own task group. The reader pulls up to 256 KiB per read, feeds wsproto, answers
pings at once, assembles fragmented messages (refusing any over ``max_message_size``
with close code 1009) and pushes whole messages into a bounded queue. When the queue
holds ``max_queue`` messages or ``max_queued_bytes`` bytes the reader stops reading the
socket, so a slow consumer slows the peer through TCP instead of growing memory. (The
bound is checked between reads, so the queue can exceed it by what one read completes:
at most 256 KiB plus one partial message.)

Sends go through one path under a lock. A send cancelled or failed after some of its
bytes went out leaves the connection unusable (it is "poisoned"), since the peer would
see half a frame. Leaving the block closes the connection: a close frame, a bounded wait
for the peer's, then the socket is closed no matter what — also on error and on
cancellation (shielded, at most ``close_timeout`` seconds).

A clean close (1000/1001) ends iteration; any other end — an error code, a protocol
violation, the TCP connection dropping without a close frame — raises
:class:`WrennWebSocketClosedError`, so a stream that stopped early never looks finished.

Liveness: with ``ping_interval`` set, a second task of the block sends a ping whenever
nothing has been received for ``ping_interval`` seconds. If nothing at all (the pong or
any other frame) arrives within ``ping_timeout`` seconds after it, the peer is taken for
gone — a host that vanished or a network that black-holes traffic sends no FIN and no
RST, and would otherwise leave ``receive()`` waiting forever — and the connection fails:
every waiting and later ``receive()`` raises :class:`WrennConnectionError`. Pings go out
only when the connection is idle and never once closing has begun (a ping crossing the
close handshake has crashed server workers, hypercorn 0.18 under trio).
"""

from __future__ import annotations

import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, NoReturn, final
from urllib.parse import urlsplit

import anyio
import anyio.abc
import attrs
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .._concurrency import helper_tasks
from .._exceptions import (
    WrennConfigurationError,
    WrennConnectionError,
    WrennError,
    WrennProtocolError,
    WrennTimeoutError,
    WrennWebSocketClosedError,
    error_from_response,
)
from .retry import parse_retry_after

__all__ = ["WebSocket", "WebSocketStatistics", "connect_websocket"]

READ_SIZE: Final = 256 * 1024
CLOSE_DISCARD_LIMIT: Final = 4 * 1024 * 1024  # data discarded while closing before giving up
CLEAN_CODES: Final = frozenset({1000, 1001})
MAX_HANDSHAKE_BODY: Final = 64 * 1024

Message = str | bytes


@attrs.frozen
class WebSocketStatistics:
    """A snapshot of a connection's state, for debugging and tests."""

    queued_messages: int
    queued_bytes: int
    messages_received: int
    bytes_received: int
    ping_latency: float | None
    close_code: int | None
    close_reason: str | None
    state: str


@final
class WebSocket:
    """An open WebSocket connection; build it with :func:`connect_websocket`."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        ws: WSConnection,
        *,
        url: str,
        max_message_size: int,
        max_queue: int,
        max_queued_bytes: int,
        close_timeout: float,
        ping_interval: float | None = None,
        ping_timeout: float = 20.0,
    ) -> None:
        self._stream = stream
        self._ws = ws
        self._url = url
        self._max_message_size = max_message_size
        self._max_queue = max_queue
        self._max_queued_bytes = max_queued_bytes
        self._close_timeout = close_timeout
        self._queue: deque[Message] = deque()
        self._queued_bytes = 0
        self._message_ready = anyio.Event()
        self._space = anyio.Event()
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._poisoned = False
        self._closed_event = anyio.Event()
        self._close_code: int | None = None
        self._close_reason: str | None = None
        self._failure: WrennError | None = None
        self._local_close_sent = False
        self._pings: dict[bytes, float] = {}
        self._ping_latency: float | None = None
        self._pong_event = anyio.Event()
        self._received_messages = 0
        self._received_bytes = 0
        self._partial: list[Message] = []
        self._partial_size = 0
        self._discarded = 0
        self._close_wait_over = anyio.Event()
        self._reader_done = anyio.Event()
        self._reader_scope: anyio.CancelScope | None = None
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._last_received = time.monotonic()
        self._activity = anyio.Event()
        self.subprotocol: str | None = None  # what the server chose of those offered

    def __repr__(self) -> str:
        state = "closed" if self._closed_event.is_set() else "open"
        return f"<WebSocket {self._url} {state} queued={len(self._queue)}>"

    # --- receiving -------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next message (``str`` for text frames, ``bytes`` for binary ones).

        Waits without a deadline of its own: bound it with your cancel scope. Cancelling
        the wait loses nothing (the message stays queued).

        Raises:
            WrennWebSocketClosedError: the connection ended; ``.ok`` tells a clean close
                (1000/1001) from an error or a dropped connection.
        """
        while not self._queue:
            if self._closed_event.is_set():
                raise self._end_error()
            await self._wait_message()
        message = self._queue.popleft()
        self._queued_bytes -= len(message)
        if len(self._queue) < self._max_queue and self._queued_bytes <= self._max_queued_bytes:
            self._space.set()
        return message

    def receive_nowait(self) -> Message | None:
        """The next message if one is already queued, else None (never waits)."""
        if not self._queue:
            return None
        message = self._queue.popleft()
        self._queued_bytes -= len(message)
        if len(self._queue) < self._max_queue and self._queued_bytes <= self._max_queued_bytes:
            self._space.set()
        return message

    def next_is_binary(self) -> bool:
        return bool(self._queue) and isinstance(self._queue[0], bytes)

    async def _wait_message(self) -> None:
        self._message_ready = anyio.Event()
        if self._queue or self._closed_event.is_set():
            return
        await self._message_ready.wait()

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> Message:
        """Iteration ends at a clean close and raises at any other end; breaking out of
        it early is fine (nothing is left to clean up)."""
        try:
            return await self.receive()
        except WrennWebSocketClosedError as exc:
            if exc.ok:
                raise StopAsyncIteration from None
            raise

    def _end_error(self) -> WrennError:
        if self._failure is not None:
            return self._failure
        code = self._close_code if self._close_code is not None else 1006
        return WrennWebSocketClosedError(code, self._close_reason or "", url=self._url)

    # --- sending ---------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send one text message. See :meth:`send_bytes` for cancellation rules."""
        await self._send(TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        """Send one binary message.

        Blocks while the socket's send buffer is full (the peer is slow). Cancelling a
        send before any byte went out is harmless; cancelling it after some bytes went
        out makes the connection unusable (later sends raise), since the peer would see
        half a frame.

        Raises:
            WrennWebSocketClosedError: the connection is closed or closing.
        """
        await self._send(BytesMessage(data=bytes(data)))

    async def _send(self, event: Event) -> None:
        if self._closed_event.is_set() or self._local_close_sent or self._poisoned:
            raise (
                self._end_error()
                if self._closed_event.is_set()
                else WrennWebSocketClosedError(
                    1006, "connection is closing or unusable", url=self._url
                )
            )
        try:
            data = self._ws.send(event)
        except LocalProtocolError as exc:
            raise WrennWebSocketClosedError(1006, "connection is closing", url=self._url) from exc
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            if self._poisoned:
                raise WrennWebSocketClosedError(1006, "a previous send was cut", url=self._url)
            done = False
            try:
                await self._stream.send(data)
                done = True
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self._poisoned = True
                raise WrennConnectionError(f"sending on {self._url} failed") from exc
            finally:
                if not done:
                    self._poisoned = True

    async def ping(self, payload: bytes | None = None, *, timeout: float = 10.0) -> float:
        """Send a ping and wait for its pong; return the round trip in seconds."""
        payload = payload or str(time.monotonic_ns()).encode()
        self._pings[payload] = time.monotonic()
        await self._send(Ping(payload=payload))
        with anyio.fail_after(timeout):
            while payload in self._pings:
                if self._closed_event.is_set():
                    raise self._end_error()
                self._pong_event = anyio.Event()
                await self._pong_event.wait()
        assert self._ping_latency is not None
        return self._ping_latency

    # --- state -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed_event.is_set()

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    def statistics(self) -> WebSocketStatistics:
        return WebSocketStatistics(
            queued_messages=len(self._queue),
            queued_bytes=self._queued_bytes,
            messages_received=self._received_messages,
            bytes_received=self._received_bytes,
            ping_latency=self._ping_latency,
            close_code=self._close_code,
            close_reason=self._close_reason,
            state=self._ws.state.name,
        )

    # --- the reader task ---------------------------------------------------------------

    async def _reader(self, initial: list[Event]) -> None:
        """Read, parse and queue until the connection ends. Never raises.

        ``initial`` holds events parsed from the read that also carried the 101 response.
        """
        # Shielded from the caller's cancel scopes: a block cancelled from outside still
        # reads in its clean-up (e.g. the pid it needs to end a process). The reader ends
        # when the connection closes, or by stop_reader() when the block is left.
        with anyio.CancelScope(shield=True) as scope:
            self._reader_scope = scope
            try:
                await self._read_loop(initial)
            finally:
                self._reader_done.set()
                self._close_wait_over.set()

    def stop_reader(self) -> None:
        """End the reader task (after :meth:`aclose`; it normally ends by itself then)."""
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    async def _read_loop(self, initial: list[Event]) -> None:
        try:
            await self._dispatch(initial)
            while not self._closed_event.is_set():
                await self._wait_for_space()
                try:
                    data = await self._stream.receive(READ_SIZE)
                except (
                    anyio.EndOfStream,
                    anyio.BrokenResourceError,
                    anyio.ClosedResourceError,
                    OSError,
                    ssl.SSLError,
                ):
                    self._mark_closed(1006, "connection lost without a close frame")
                    return
                self._received_bytes += len(data)
                self._last_received = time.monotonic()
                self._activity.set()
                await self._handle_events(data)
        except WrennError as exc:
            self._failure = exc
            self._mark_closed(self._close_code or 1006, str(exc))
        except Exception as exc:  # a bug must end the connection, not the caller's scope
            self._failure = WrennProtocolError(f"WebSocket reader failed: {exc!r}")
            self._failure.__cause__ = exc
            self._mark_closed(1006, "reader failed")

    async def _keepalive(self) -> None:
        """Ping when idle; fail the connection when the peer stops answering.

        Runs in the block's task group until the block ends (cancelled with it).
        """
        interval = self._ping_interval
        assert interval is not None
        while not self._closed_event.is_set() and not self._local_close_sent:
            idle = time.monotonic() - self._last_received
            if idle < interval:
                await anyio.sleep(interval - idle)
                continue
            if self._queue:
                # Unread messages: the peer was alive; the consumer is the slow one (the
                # reader is paused for backpressure, so nothing new can arrive).
                self._last_received = time.monotonic()
                continue
            received = self._received_bytes
            payload = b"wrenn-keepalive-" + str(time.monotonic_ns()).encode()
            self._pings[payload] = time.monotonic()
            # The send is inside the bound too: to a peer that stopped acknowledging, a
            # full send buffer would block it forever.
            with anyio.move_on_after(self._ping_timeout):
                try:
                    await self._send(Ping(payload=payload))
                except WrennError:
                    return  # closing or broken: the reader reports it
                while self._received_bytes == received and not self._closed_event.is_set():
                    self._activity = anyio.Event()
                    await self._activity.wait()
            if (
                self._received_bytes == received
                and not self._closed_event.is_set()
                and not self._local_close_sent
            ):
                self._failure = WrennConnectionError(
                    f"{self._url} did not answer a ping within {self._ping_timeout:g} s "
                    "(the peer is gone or the network drops traffic)"
                )
                self._mark_closed(1006, "keepalive ping timed out")
                return

    async def _wait_for_space(self) -> None:
        while len(self._queue) >= self._max_queue or self._queued_bytes > self._max_queued_bytes:
            self._space = anyio.Event()
            await self._space.wait()

    async def _handle_events(self, data: bytes) -> None:
        try:
            self._ws.receive_data(data)
            events = list(self._ws.events())
        except RemoteProtocolError as exc:
            raise WrennProtocolError(f"WebSocket protocol violation: {exc}") from exc
        await self._dispatch(events)

    async def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TextMessage | BytesMessage):
                await self._on_data(event)
            elif isinstance(event, Ping):
                await self._reply(event.response())
            elif isinstance(event, Pong):
                started = self._pings.pop(bytes(event.payload), None)
                if started is not None:
                    self._ping_latency = time.monotonic() - started
                self._pong_event.set()
            elif isinstance(event, CloseConnection):
                code = event.code
                reason = event.reason or ""
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._reply(event.response())
                self._mark_closed(code, reason)
                return

    async def _on_data(self, event: TextMessage | BytesMessage) -> None:
        data = event.data
        chunk: Message = data if isinstance(data, str) else bytes(data)
        self._partial.append(chunk)
        self._partial_size += len(chunk)
        if self._partial_size > self._max_message_size:
            await self._reply(CloseConnection(code=1009, reason="message too big"))
            self._close_code, self._close_reason = 1009, "message too big"
            raise WrennWebSocketClosedError(
                1009, f"message over {self._max_message_size} bytes", url=self._url
            )
        if not event.message_finished:
            return
        if self._local_close_sent:
            # We are closing: nobody will read this. Dropping it lets the reader reach the
            # peer's close frame instead of stalling on a full queue; a peer that keeps
            # streaming past a bounded amount is not waited for any longer.
            self._discarded += self._partial_size
            self._partial = []
            self._partial_size = 0
            if self._discarded > CLOSE_DISCARD_LIMIT:
                self._close_wait_over.set()
            return
        message: Message = (
            "".join(p for p in self._partial if isinstance(p, str))
            if isinstance(event, TextMessage)
            else b"".join(p for p in self._partial if isinstance(p, bytes))
        )
        self._partial = []
        self._partial_size = 0
        self._queue.append(message)
        self._queued_bytes += len(message)
        self._received_messages += 1
        self._message_ready.set()

    async def _reply(self, event: Event) -> None:
        try:
            data = self._ws.send(event)
        except LocalProtocolError:
            return
        try:
            await self._write(data)
        except WrennError:
            return  # the read side will notice the broken connection

    def _mark_closed(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code = code
            self._close_reason = reason
        self._closed_event.set()
        self._close_wait_over.set()
        self._message_ready.set()
        self._pong_event.set()
        self._space.set()
        self._activity.set()

    # --- closing -------------------------------------------------------------------------

    async def _await_peer_close(self) -> None:
        """Wait for the peer's close frame, discarding data, within the discard budget."""
        while not self._closed_event.is_set() and self._discarded <= CLOSE_DISCARD_LIMIT:
            if not self._reader_done.is_set():
                await self._close_wait_over.wait()
                continue
            # The reader is gone (cancelled with the caller's scope): read here instead.
            try:
                data = await self._stream.receive(READ_SIZE)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
                ssl.SSLError,
            ):
                self._mark_closed(1006, "connection lost while closing")
                return
            try:
                await self._handle_events(data)
            except WrennError:
                return

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close: send a close frame, wait for the peer's (bounded), close the socket.

        Shielded from cancellation and bounded by the connection's ``close_timeout``.
        Messages not yet received are dropped. Safe to call more than once.
        """
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self._close_timeout):
                if not self._closed_event.is_set() and not self._local_close_sent:
                    self._local_close_sent = True
                    try:
                        data = self._ws.send(CloseConnection(code=code, reason=reason))
                        await self._write(data)
                    except (LocalProtocolError, WrennError):
                        pass
                # Unblock the reader if the consumer left messages behind.
                self._queue.clear()
                self._queued_bytes = 0
                self._space.set()
                await self._await_peer_close()
            if self._close_code is None:
                self._close_code, self._close_reason = code, reason
            self._closed_event.set()
            with anyio.move_on_after(self._close_timeout):
                await self._stream.aclose()


def _parse_url(url: str) -> tuple[str, str, int, str, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise WrennConfigurationError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return parts.hostname, host_header, port, target, secure


async def _handshake(
    stream: anyio.abc.ByteStream, ws: WSConnection, url: str
) -> tuple[list[Event], str | None]:
    """Read until the handshake is decided; return the events that came after the 101
    and the subprotocol the server chose (None: none)."""
    reject_status: int | None = None
    reject_headers: dict[bytes, bytes] = {}
    body = bytearray()
    while True:
        try:
            data = await stream.receive(READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError, ssl.SSLError) as exc:
            raise WrennConnectionError(f"connection closed during the handshake ({url})") from exc
        try:
            ws.receive_data(data)
            events = list(ws.events())
        except RemoteProtocolError as exc:
            raise WrennProtocolError(f"bad WebSocket handshake from {url}: {exc}") from exc
        for index, event in enumerate(events):
            if isinstance(event, AcceptConnection):
                return events[index + 1 :], event.subprotocol
            if isinstance(event, RejectConnection):
                reject_status = event.status_code
                reject_headers = {k.lower(): v for k, v in event.headers}
                if not event.has_body:
                    _reject(reject_status, b"", reject_headers, url)
            elif isinstance(event, RejectData):
                if len(body) < MAX_HANDSHAKE_BODY:
                    body += event.data
                if event.body_finished and reject_status is not None:
                    _reject(reject_status, bytes(body), reject_headers, url)


def _reject(status: int, body: bytes, headers: Mapping[bytes, bytes], url: str) -> NoReturn:
    retry = headers.get(b"retry-after")
    raise error_from_response(
        status,
        body,
        retry_after=parse_retry_after(retry.decode("latin-1") if retry else None),
        context=f"WebSocket upgrade of {url}",
    )


@asynccontextmanager
async def connect_websocket(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    max_message_size: int = 16 * 1024 * 1024,
    max_queue: int = 64,
    max_queued_bytes: int = 4 * 1024 * 1024,
    ping_interval: float | None = None,
    ping_timeout: float = 20.0,
    subprotocols: Sequence[str] = (),
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket for the duration of the block.

    Args:
        url: ``ws://`` or ``wss://`` (IPv6 literals in brackets are fine).
        headers: Extra request headers (e.g. ``X-API-Key``); never logged. A ``Host``
            entry replaces the Host derived from the URL.
        ssl_context: For ``wss://``; defaults to the system trust store with verification.
        open_timeout: Bound on connecting plus the handshake.
        close_timeout: Bound on each closing step.
        max_message_size: A larger message closes the connection with code 1009.
        max_queue, max_queued_bytes: How much unread input is held before reading stops.
        ping_interval: Ping after this many seconds with nothing received (``None``: never).
        ping_timeout: With ``ping_interval``: seconds to wait for any frame after a ping
            before the connection fails with :class:`WrennConnectionError`.
        subprotocols: Offered in ``Sec-WebSocket-Protocol``; the one the server chose
            is ``.subprotocol`` (None when it chose none, as servers that do not know
            the offer do).

    Raises:
        WrennAPIError: the server refused the upgrade (mapped like a REST error).
        WrennConnectionError / WrennTimeoutError / WrennProtocolError: as named.
    """
    host, host_header, port, target, secure = _parse_url(url)
    if max_message_size <= 0 or max_queue <= 0 or not open_timeout > 0:  # (inf: no bound)
        raise WrennConfigurationError("limits and open_timeout must be positive")
    if (ping_interval is not None and not ping_interval > 0) or not ping_timeout > 0:
        raise WrennConfigurationError("ping_interval and ping_timeout must be positive")
    stream: anyio.abc.ByteStream | None = None
    leftover: list[Event] = []
    chosen: str | None = None
    ws = WSConnection(ConnectionType.CLIENT)
    try:
        with anyio.fail_after(open_timeout):
            try:
                if secure:
                    stream = await anyio.connect_tcp(
                        host,
                        port,
                        tls=True,
                        ssl_context=ssl_context or ssl.create_default_context(),
                        tls_standard_compatible=False,
                    )
                else:
                    stream = await anyio.connect_tcp(host, port)
            except ssl.SSLError as exc:
                raise WrennConnectionError(
                    f"TLS failure connecting to {url}: {exc.reason}"
                ) from exc
            except OSError as exc:
                raise WrennConnectionError(
                    f"cannot connect to {url}: {exc.strerror or exc}"
                ) from exc
            given = dict(headers or {})
            # A caller may name the Host itself (routing through a proxy by Host header).
            host_value = next((given.pop(k) for k in list(given) if k.lower() == "host"), None)
            extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in given.items()]
            request = Request(
                host=host_value or host_header,
                target=target,
                extra_headers=extra,
                subprotocols=list(subprotocols),
            )
            await stream.send(ws.send(request))
            leftover, chosen = await _handshake(stream, ws, url)
    except TimeoutError as exc:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        raise WrennTimeoutError(f"WebSocket to {url} not open within {open_timeout:g} s") from exc
    except BaseException:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        raise
    conn = WebSocket(
        stream,
        ws,
        url=url,
        max_message_size=max_message_size,
        max_queue=max_queue,
        max_queued_bytes=max_queued_bytes,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    conn.subprotocol = chosen
    async with helper_tasks() as tg:  # the body's exception leaves bare
        tg.start_soon(conn._reader, leftover)
        if ping_interval is not None:
            tg.start_soon(conn._keepalive)
        try:
            yield conn
        finally:
            await conn.aclose()
            conn.stop_reader()
