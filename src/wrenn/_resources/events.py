"""``client.events``: the team's server-sent event stream."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, Self, final

import anyio

from .._config import CLIENT_DEFAULT, Timeout
from .._exceptions import WrennConnectionError, WrennProtocolError
from .._models import Event
from .._protocol.sse import SSEParser
from .._transport.errors import map_transport_errors
from .._transport.http import HTTPTransport, api_path, httpx
from .converter import structure
from .scoped import ScopedIterable

__all__ = ["DEFAULT_IDLE_TIMEOUT", "AsyncEvents", "EventStream"]

DEFAULT_IDLE_TIMEOUT: Final = 90.0


@final
class EventStream:
    """An open event stream; iterate it with ``async for``.

    Iteration waits for the next event without a deadline of its own (events can be
    minutes apart): bound it with the caller's cancel scope (``anyio.move_on_after``).
    Messages that are not JSON events (keepalives, comments) are skipped. When the server
    closes the stream iteration ends; a broken connection raises
    :class:`WrennConnectionError` — also when nothing at all, not even a keepalive
    comment, arrived for ``idle_timeout`` seconds (the server sends those while idle,
    so silence means the peer or the network is gone). Unread events are dropped when
    the block is left.
    """

    def __init__(
        self, response: httpx.Response, context: str, idle_timeout: float | None = None
    ) -> None:
        self._chunks = response.aiter_raw()
        self._context = context
        self._idle_timeout = idle_timeout
        self._parser = SSEParser()
        self._pending: deque[Event] = deque()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            chunk = await self._next_chunk()
            for message in self._parser.feed(chunk):
                event = _decode(message.data)
                if event is not None:
                    self._pending.append(event)
        return self._pending.popleft()

    async def _next_chunk(self) -> bytes:
        if self._idle_timeout is None:
            with map_transport_errors(self._context):
                return await anext(self._chunks)
        with anyio.move_on_after(self._idle_timeout):
            with map_transport_errors(self._context):
                return await anext(self._chunks)
        raise WrennConnectionError(
            f"nothing received for {self._idle_timeout:g} s, not even a keepalive "
            f"({self._context}): the server or the network is gone"
        )

    async def aclose(self) -> None:
        await self._chunks.aclose()


def _decode(data: str) -> Event | None:
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise WrennProtocolError("an event's data is not JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        return None
    return structure(payload, Event, what="event")


@final
class AsyncEvents:
    """Reached as ``client.events``."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http

    def stream(
        self,
        *,
        open_timeout: Timeout = CLIENT_DEFAULT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> ScopedIterable[EventStream, Event]:
        """``GET /v1/events/stream`` as an async context manager::

            async with client.events.stream() as events:
                async for event in events:
                    ...

        Leaving the block (normally, by error or by cancellation) closes the connection.
        Iteration raises :class:`WrennConnectionError` when nothing, not even a
        keepalive, arrived for ``idle_timeout`` seconds (``None``: wait forever).
        ``async for event in client.events.stream()`` works too (the official SDK's
        form; see :class:`ScopedIterable`: break out, then ``aclose()`` it).
        """
        return ScopedIterable(lambda: self._open(open_timeout, idle_timeout))

    @asynccontextmanager
    async def _open(
        self, open_timeout: Timeout, idle_timeout: float | None
    ) -> AsyncIterator[EventStream]:
        path = api_path("events", "stream")
        async with self._http.stream(
            "GET",
            path,
            headers={"Accept": "text/event-stream"},
            open_timeout=open_timeout,
            read_timeout=None,
        ) as response:
            events = EventStream(response, f"GET {path}", idle_timeout)
            try:
                yield events
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await events.aclose()
