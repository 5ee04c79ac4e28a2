"""Team-scoped server-sent events (PROTOCOL §12): a bounded queue per subscriber.

A subscriber that cannot keep up (its queue is full) is disconnected rather than allowed
to grow the server's memory; it sees its stream end and may reconnect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._accounts import now_utc, rfc3339

__all__ = ["EventHub"]


class EventHub:
    def __init__(self, *, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[int, tuple[str, MemoryObjectSendStream[dict[str, Any]]]] = {}
        self._next = 0

    @asynccontextmanager
    async def subscribe(
        self, team_id: str
    ) -> AsyncIterator[MemoryObjectReceiveStream[dict[str, Any]]]:
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](self._queue_size)
        key = self._next
        self._next += 1
        self._subscribers[key] = (team_id, send)
        try:
            yield receive
        finally:
            self._subscribers.pop(key, None)
            send.close()
            receive.close()

    def publish(
        self,
        team_id: str,
        event: str,
        *,
        resource_id: str,
        resource_type: str = "capsule",
        actor: dict[str, Any] | None = None,
        outcome: str | None = None,
        metadata: dict[str, str] | None = None,
        capsule: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        payload: dict[str, Any] = {
            "event": event,
            "resource": {"id": resource_id, "type": resource_type},
            "actor": actor or {"type": "system"},
            "metadata": metadata or {},
            "timestamp": rfc3339(now_utc()),
        }
        if outcome is not None:
            payload["outcome"] = outcome
        if capsule is not None:
            payload["sandbox"] = capsule
        if error is not None:
            payload["error"] = error
        for key, (team, stream) in list(self._subscribers.items()):
            if team != team_id:
                continue
            try:
                stream.send_nowait(payload)
            except anyio.WouldBlock:
                stream.close()  # too slow: disconnect instead of buffering without bound
                self._subscribers.pop(key, None)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.pop(key, None)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
