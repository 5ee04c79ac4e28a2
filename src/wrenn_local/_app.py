"""The Starlette application: every route under ``/v1`` and ``/api/v1``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from ._accounts import Accounts, AttemptThrottle
from ._capsules import CapsuleManager
from ._events import EventHub
from ._hosts import Hosts
from ._isolation import HostSupport
from ._options import ServerOptions
from ._port_links import PortLinks
from ._routes import http_routes, utility_routes, websocket_routes

__all__ = ["WrennApp", "build_app"]

OPENAPI = Path(__file__).with_name("openapi.yaml")


async def openapi(_: Request) -> Response:
    return PlainTextResponse(OPENAPI.read_text(), media_type="application/yaml")


async def not_found(_: Request, __: Exception) -> Response:
    # The real router answers unknown paths with Go's plain-text 404 (PROTOCOL §1).
    return PlainTextResponse("404 page not found\n", status_code=404)


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> set[str]:
    """Every method some route serves at this path (routes are one per method here)."""
    found: set[str] = set()
    for route in routes:
        if isinstance(route, Mount):
            match, child = route.matches(scope)
            if match is not Match.NONE:
                found |= allowed_methods(route.routes, {**scope, **child})
        elif isinstance(route, Route) and route.methods:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                found |= route.methods
    return found


async def not_allowed(request: Request, _: Exception) -> Response:
    # An empty body as the real router, plus the Allow header RFC 9110 requires.
    allow = allowed_methods(request.app.routes, request.scope)
    return Response(status_code=405, headers={"Allow": ", ".join(sorted(allow))})


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return await not_found(request, exc)
    if status == 405:
        return await not_allowed(request, exc)
    return Response(status_code=status)


class WrennApp(Starlette):
    """The application, with its WebSocket routes served straight from here.

    A WebSocket lives as long as its stream, and so does every coroutine frame between
    hypercorn and the endpoint: Starlette's error and exception middleware, the router and
    the route's session wrapper hold two ``WebSocket`` objects, their closures and scope
    copies (about 5 KiB per open stream; a thousand streams are a normal load). The
    WebSocket routes (``/v1/...`` and ``/api/v1/...``) are matched here first and their
    endpoint called directly: the same endpoint, the same ``path_params`` and ``app``,
    and, as Starlette does for WebSockets, no error handling of its own (an exception
    reaches hypercorn, which closes the connection). Everything else goes through
    Starlette as before.
    """

    def __init__(self, *, websockets: list[WebSocketRoute], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._websockets = websockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            root = scope.get("root_path") or ""
            if root and path.startswith(root + "/"):  # as Starlette's routing reads it
                path = path[len(root) :]
            if path.startswith("/api/"):
                path = path[4:]
            for route in self._websockets:
                found = route.path_regex.match(path)
                if found is not None:
                    params = {
                        key: route.param_convertors[key].convert(value)
                        for key, value in found.groupdict().items()
                    }
                    scope["app"] = self
                    scope["path_params"] = params
                    await route.endpoint(WebSocket(scope, receive, send))
                    return
        await super().__call__(scope, receive, send)


def build_app(
    *,
    accounts: Accounts,
    capsules: CapsuleManager,
    events: EventHub,
    support: HostSupport,
    options: ServerOptions | None = None,
    sse_keepalive: float = 15.0,
    pty_ping_interval: float = 30.0,
    port_links: PortLinks | None = None,
) -> Starlette:
    sockets = websocket_routes()
    api: list[BaseRoute] = [*http_routes(), *sockets]
    routes: list[BaseRoute] = [
        *utility_routes(),
        Route("/openapi.yaml", openapi, methods=["GET"]),
        *api,
        Mount("/api", routes=api),
    ]
    handlers: dict[Any, Any] = {404: not_found, 405: not_allowed, HTTPException: http_error}
    app = WrennApp(websockets=sockets, routes=routes, exception_handlers=handlers)
    options = options or ServerOptions()
    app.state.accounts = accounts
    app.state.options = options
    app.state.auth_throttle = AttemptThrottle(options.auth_burst, options.auth_interval)
    app.state.hashing = anyio.CapacityLimiter(2)  # PBKDF2 threads at once
    app.state.capsules = capsules
    app.state.events = events
    app.state.support = support
    app.state.hosts = Hosts()
    app.state.sse_keepalive = sse_keepalive
    app.state.pty_ping_interval = pty_ping_interval
    app.state.port_links = port_links or PortLinks(options.browser_link_seconds)
    return app
