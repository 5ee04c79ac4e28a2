"""The team's server-sent event stream (PROTOCOL §12)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ._http import endpoint, principal_of

__all__ = ["routes"]


@endpoint("key_or_jwt")
async def events_stream(request: Request) -> Response:
    team = principal_of(request).team_id
    hub = request.app.state.events
    keepalive = float(request.app.state.sse_keepalive)

    async def body() -> AsyncIterator[bytes]:
        async with hub.subscribe(team) as queue:
            yield b'event: connected\ndata: {"event":"connected"}\n\n'
            while True:
                with anyio.move_on_after(keepalive) as scope:
                    try:
                        event = await queue.receive()
                    except anyio.EndOfStream:
                        return
                if scope.cancelled_caught:
                    yield b": keepalive\n\n"
                    continue
                data = json.dumps(event, separators=(",", ":"))
                yield f"event: {event['event']}\ndata: {data}\n\n".encode()

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def routes() -> list[Route]:
    return [Route("/v1/events/stream", events_stream, methods=["GET"])]
