"""Sign-up, log-in and API keys (PROTOCOL §15.1, §15.2)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._accounts import Accounts, AttemptThrottle, User
from .._errors import ApiError, bad_request, json_response
from .._ids import is_valid
from ._http import accounts_of, endpoint, principal_of, read_json

__all__ = ["routes"]


def _throttle(request: Request) -> None:
    throttle: AttemptThrottle = request.app.state.auth_throttle
    client = request.client.host if request.client else "?"
    wait = throttle.take(client)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"too many sign-up or log-in attempts; retry in {wait:.0f} s",
        )


async def _slow(request: Request, fn: Callable[..., User], *args: str) -> User:
    """PBKDF2 in a worker thread, at most two at once (``app.state.hashing``): a flood of
    log-ins neither stalls the event loop nor takes every thread."""
    user: User = await anyio.to_thread.run_sync(fn, *args, limiter=request.app.state.hashing)
    return user


@endpoint("none")
async def signup(request: Request) -> Response:
    if not request.app.state.options.allow_signup:
        raise ApiError(
            403,
            "forbidden",
            "sign-up is disabled on this server (start it with --allow-signup)",
        )
    _throttle(request)
    body = await read_json(request)
    email, password, name = body.get("email"), body.get("password"), body.get("name")
    if not isinstance(email, str) or "@" not in email or len(email) < 3:
        raise bad_request("email must be a valid address")
    if not isinstance(password, str) or len(password) < 8:
        raise bad_request("password must be at least 8 characters")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise bad_request("name must be 1 to 100 characters")
    await _slow(request, accounts_of(request).signup, email, password, name)
    return json_response(
        {"message": "Account created. This local server has no mail: log in right away."}, 201
    )


@endpoint("none")
async def login(request: Request) -> Response:
    _throttle(request)
    body = await read_json(request)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise bad_request("email and password are required")
    user = await _slow(request, accounts_of(request).login, email, password)
    return json_response(
        {
            "token": accounts_of(request).issue_jwt(user),
            "user_id": user.id,
            "team_id": user.team_id,
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "is_admin": user.is_admin,
        }
    )


@endpoint("jwt")
async def create_api_key(request: Request) -> Response:
    body = await read_json(request)
    name = body.get("name")
    if name is None or name == "":
        name = "Unnamed API Key"
    if not isinstance(name, str) or len(name) > 100:
        raise bad_request("name must be a string of at most 100 characters")
    principal = principal_of(request)
    raw = Accounts.generate_key()
    key = accounts_of(request).add_key(raw, principal.team_id, name, principal.actor_id)
    return json_response({**key.to_json(), "key": raw}, 201)


@endpoint("jwt")
async def list_api_keys(request: Request) -> Response:
    principal = principal_of(request)
    email = principal.user.email if principal.user else None
    keys = [k for k in accounts_of(request).keys.values() if k.team_id == principal.team_id]
    return json_response(
        [k.to_json(email if k.created_by == principal.actor_id else None) for k in keys]
    )


@endpoint("jwt")
async def delete_api_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    if not is_valid("key", key_id):
        raise bad_request("invalid API key ID")
    accounts_of(request).delete_key(key_id, principal_of(request).team_id)
    return Response(status_code=204)


def routes() -> list[Route]:
    return [
        Route("/v1/auth/signup", signup, methods=["POST"]),
        Route("/v1/auth/login", login, methods=["POST"]),
        Route("/v1/api-keys", create_api_key, methods=["POST"]),
        Route("/v1/api-keys", list_api_keys, methods=["GET"]),
        Route("/v1/api-keys/{key_id}", delete_api_key, methods=["DELETE"]),
    ]
