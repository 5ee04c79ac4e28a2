"""The server-sent event stream over a real socket, chunked as a server would send it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tests.fakeapi import FakeAPI
from wrenn import AsyncWrennClient, WrennAuthenticationError, WrennProtocolError

KEY = "wrn_0123456789abcdef0123456789abcdef"


def frame(kind: str, **payload: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'event': kind, **payload})}\n\n".encode()


async def test_events_arrive_typed_across_odd_chunking(fake_api: FakeAPI) -> None:
    body = (
        frame("connected")
        + b": keepalive\n\n"
        + frame(
            "capsule.state.changed",
            resource={"id": "cl-1", "type": "capsule"},
            actor={"type": "system"},
            metadata={"from": "running", "to": "paused", "reason": "ttl_expired"},
            sandbox={"id": "cl-1", "status": "paused"},
            timestamp="2026-05-20T10:00:00Z",
        )
        + b'data: {"no_event_field": 1}\n\n'
        + frame("capsule.create", outcome="success")
    )

    async def handler(_: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 7):
                yield body[i : i + 7]
                await anyio.lowlevel.checkpoint()

        return StreamingResponse(chunks(), media_type="text/event-stream")

    fake_api.on("GET", "/v1/events/stream", handler)
    client = AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url)
    async with client as c, c.events.stream() as events:
        got = [e async for e in events]
    assert [e.event for e in got] == ["connected", "capsule.state.changed", "capsule.create"]
    changed = got[1]
    assert changed.metadata["reason"] == "ttl_expired"
    assert changed.capsule is not None
    assert changed.capsule.status == "paused"
    assert got[2].outcome == "success"
    assert fake_api.seen[0].headers["x-api-key"] == KEY


async def test_an_idle_stream_is_bounded_by_the_callers_scope(fake_api: FakeAPI) -> None:
    async def handler(_: Request) -> Response:
        async def forever() -> AsyncIterator[bytes]:
            yield frame("connected")
            await anyio.sleep(60)
            yield b""

        return StreamingResponse(forever(), media_type="text/event-stream")

    fake_api.on("GET", "/v1/events/stream", handler)
    got: list[str] = []
    async with AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url) as c:
        with anyio.move_on_after(0.3) as scope:
            async with c.events.stream() as events:
                async for event in events:
                    got.append(event.event)  # noqa: PERF401 - must record before cancellation
        assert scope.cancelled_caught
        # the connection was released: the client still works
        fake_api.answer("GET", "/v1/capsules", 200, [])
        assert await c.capsules.list() == []
    assert got == ["connected"]


async def test_stream_errors_are_mapped(fake_api: FakeAPI) -> None:
    fake_api.answer(
        "GET",
        "/v1/events/stream",
        401,
        {"error": {"code": "unauthorized", "message": "invalid API key"}},
    )
    async with AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url) as c:
        with pytest.raises(WrennAuthenticationError):
            async with c.events.stream():
                pass


async def test_garbage_event_data_is_a_protocol_error(fake_api: FakeAPI) -> None:
    fake_api.answer("GET", "/v1/events/stream", 200, b"data: {oops\n\n")
    client = AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url)
    async with client as c, c.events.stream() as events:
        with pytest.raises(WrennProtocolError):
            async for _ in events:
                pass
