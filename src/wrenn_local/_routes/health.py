"""``GET /health``: liveness, version and this server's isolation level (no auth)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import json_response

__all__ = ["VERSION", "routes"]

VERSION = "0.2.0-local"


async def health(request: Request) -> Response:
    support = request.app.state.support
    return json_response({"status": "ok", "version": VERSION, **support.describe()})


def routes() -> list[Route]:
    return [Route("/health", health, methods=["GET"])]
