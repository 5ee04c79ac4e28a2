"""Request plumbing shared by the routes: authentication, JSON bodies, error mapping,
and the server's stores as the app holds them."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Literal

import anyio
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Message, Receive

from .._accounts import Accounts, Principal
from .._agent_client import AgentFailure
from .._capsules import CapsuleManager
from .._errors import ApiError, bad_request, error_response

__all__ = [
    "AuthKind",
    "Endpoint",
    "accounts_of",
    "agent_broke_off",
    "agent_error",
    "capsules_of",
    "endpoint",
    "principal_of",
    "read_json",
]

log = logging.getLogger("wrenn_local.http")

AuthKind = Literal["key_or_jwt", "jwt", "none"]
Endpoint = Callable[[Request], Awaitable[Response]]

AGENT_STATUS = {
    "not_found": (404, "not_found"),
    "invalid_request": (400, "invalid_request"),
    "conflict": (409, "conflict"),
    "forbidden": (403, "forbidden"),
    "host_unavailable": (503, "host_unavailable"),
}


def agent_error(exc: AgentFailure) -> ApiError:
    status, code = AGENT_STATUS.get(exc.code, (502, "agent_error"))
    return ApiError(status, code, exc.message or exc.code)


def agent_broke_off(exc: AgentFailure) -> bool:
    """Whether ``exc`` says the agent failed or could not be reached (502, 503), as it
    does when its capsule is destroyed under a request, rather than refusing it (400,
    403, 404, 409: the request's own fault)."""
    return agent_error(exc).status in (502, 503)


def authenticate(accounts: Accounts, request: HTTPConnection, kind: AuthKind) -> Principal | None:
    """The PROTOCOL §2.1 order: an ``X-API-Key`` is the only credential tried when present."""
    if kind == "none":
        return None
    key = request.headers.get("x-api-key")
    bearer = request.headers.get("authorization", "")
    token = bearer[7:].strip() if bearer[:7].lower() == "bearer " else None
    if kind == "jwt":
        if not token:
            raise ApiError(401, "unauthorized", "Authorization: Bearer <token> required")
        user = accounts.check_jwt(token)
        return Principal(team_id=user.team_id, kind="user", actor_id=user.id, user=user)
    if key is not None:
        found = accounts.check_key(key)
        if found is None:
            raise ApiError(401, "unauthorized", "invalid API key")
        return Principal(team_id=found.team_id, kind="api_key", actor_id=found.id)
    if token:
        user = accounts.check_jwt(token)
        return Principal(team_id=user.team_id, kind="user", actor_id=user.id, user=user)
    raise ApiError(401, "unauthorized", "X-API-Key or Authorization: Bearer <token> required")


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def capsules_of(request: HTTPConnection) -> CapsuleManager:
    found: CapsuleManager = request.app.state.capsules
    return found


def accounts_of(request: HTTPConnection) -> Accounts:
    found: Accounts = request.app.state.accounts
    return found


class _BodyTracker:
    """The ASGI ``receive`` of a request, noting when its body has been read whole."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message


async def _refusal(request: Request, body: _BodyTracker, response: Response) -> Response:
    """An error answer to a request whose body may be unread (an upload refused early).

    Clients send the whole body before reading the answer, and closing a socket with
    unread data resets it, losing the answer: so discard what remains (bounded in bytes
    and time), then close the connection rather than leave it for the next request.
    """
    has_body = request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )
    if has_body and not body.done:
        await drain(body)
        response.headers["Connection"] = "close"
    return response


async def drain(receive: Receive, *, max_bytes: int = 256 << 20, seconds: float = 10) -> None:
    drained = 0
    with anyio.move_on_after(seconds):
        while drained < max_bytes:
            try:
                message = await receive()
            except Exception:
                return
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body"):
                return


def endpoint(kind: AuthKind) -> Callable[[Endpoint], Endpoint]:
    """Authenticate, then run the handler; every failure becomes the JSON envelope."""

    def decorate(handler: Endpoint) -> Endpoint:
        @wraps(handler)
        async def run(request: Request) -> Response:
            body = _BodyTracker(request.receive)
            request = Request(request.scope, body)
            try:
                request.state.principal = authenticate(request.app.state.accounts, request, kind)
                return await handler(request)
            except ApiError as exc:
                return await _refusal(request, body, error_response(exc))
            except AgentFailure as exc:
                # an agent that broke off may have gone with its capsule: its state then
                gone = _capsule_left_running(request) if agent_broke_off(exc) else None
                return await _refusal(request, body, error_response(gone or agent_error(exc)))
            except ClientDisconnect:
                # the client went away mid-request: nobody is left to answer
                log.info("client disconnected during %s %s", request.method, request.url.path)
                return Response(status_code=499)
            except Exception:
                # A capsule destroyed or paused while a request worked on it breaks that
                # work midway (its agent is gone): that is the capsule's state, not a
                # server failure, and is answered as if the request had come after it
                # (so is an agent that broke off above: 409 or 404, not 502).
                refusal = _capsule_left_running(request)
                if refusal is not None:
                    return await _refusal(request, body, error_response(refusal))
                log.exception("unhandled error in %s %s", request.method, request.url.path)
                return error_response(ApiError(500, "internal_error", "an internal error occurred"))

        return run

    return decorate


def _capsule_left_running(request: Request) -> ApiError | None:
    """The refusal a request on ``/v1/capsules/{id}/…`` would get now (409 not running,
    404 gone) if its capsule is no longer running; ``None`` if it still is (or the
    request is about no capsule)."""
    capsule_id = request.path_params.get("id")
    principal = getattr(request.state, "principal", None)
    if not capsule_id or principal is None or not request.url.path.startswith("/v1/capsules/"):
        return None
    try:
        capsules_of(request).running(principal, capsule_id)
    except ApiError as refusal:
        return refusal
    return None


async def read_json(request: Request, *, limit: int = 1 << 20) -> dict[str, Any]:
    """The request body as a JSON object; anything else is ``400 invalid JSON body``."""
    body = b""
    async with contextlib.aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise ApiError(413, "too_large", "request body too large")
    try:
        value = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise bad_request("invalid JSON body")
    return value
