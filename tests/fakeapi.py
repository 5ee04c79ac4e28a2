"""A scriptable ASGI app for transport and resource tests.

It is served by hypercorn on a real socket, so requests cross a real HTTP/1.1 stack.
Tests register a handler per ``(method, path)`` and read back what arrived. End-to-end
behaviour of the real protocol is tested against ``wrenn_local`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Awaitable[Response]]


@attrs.define
class Seen:
    method: str
    path: str
    raw_path: bytes
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    if body is None:
        return Response(status_code=status, headers=headers)
    if isinstance(body, bytes | str):
        return Response(body, status_code=status, headers=headers, media_type="text/plain")
    return Response(
        json.dumps(body) + "\n", status_code=status, headers=headers, media_type="application/json"
    )


class FakeAPI:
    def __init__(self) -> None:
        self.base_url = ""
        self.seen: list[Seen] = []
        self._routes: dict[tuple[str, str], Handler] = {}

    def on(self, method: str, path: str, handler: Handler) -> None:
        self._routes[(method.upper(), path)] = handler

    def answer(
        self, method: str, path: str, status: int = 200, body: Any = None, **headers: str
    ) -> None:
        async def handler(_: Request) -> Response:
            return reply(status, body, {k.replace("_", "-"): v for k, v in headers.items()})

        self.on(method, path, handler)

    def sequence(self, method: str, path: str, *answers: tuple[int, Any, dict[str, str]]) -> None:
        """Answer successive requests with successive ``(status, body, headers)``."""
        queue = list(answers)

        async def handler(_: Request) -> Response:
            status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
            return reply(status, body, headers)

        self.on(method, path, handler)

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if s.method == method and s.path == path)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        request = Request(scope, receive)
        body = await request.body()
        self.seen.append(
            Seen(
                method=request.method,
                path=request.url.path,
                raw_path=scope.get("raw_path") or b"",
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        handler = self._routes.get((request.method, request.url.path))
        if handler is None:
            response: Response = Response("404 page not found", 404, media_type="text/plain")
        else:
            response = await handler(request)
        await response(scope, receive, send)


async def sleep_then(seconds: float, response: Response) -> Response:
    await anyio.sleep(seconds)
    return response
