"""Snapshots, accounts, API keys, hosts, events, health (PROTOCOL §11, §12, §15)."""

from __future__ import annotations

import json
import os
import platform
import secrets
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ._accounts import Accounts, now_utc, rfc3339
from ._errors import ApiError, bad_request, json_response, not_found
from ._http import endpoint, principal_of, read_json
from ._ids import is_valid, new_id
from ._routes_capsules import manager

__all__ = ["routes"]

VERSION = "0.2.0-local"


def accounts(request: Request) -> Accounts:
    found: Accounts = request.app.state.accounts
    return found


# --- snapshots ----------------------------------------------------------------------------


@endpoint("key_or_jwt")
async def create_snapshot(request: Request) -> Response:
    body = await read_json(request)
    record = manager(request).snapshot(principal_of(request), body)
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def list_snapshots(request: Request) -> Response:
    type_filter = request.query_params.get("type")
    if type_filter is not None and type_filter not in ("base", "snapshot"):
        raise bad_request("type must be 'base' or 'snapshot'")
    templates = manager(request).list_templates(principal_of(request).team_id, type_filter)
    ready = [t for t in templates if t.type == "base" or t.layers]
    return json_response([t.to_json() for t in ready])


@endpoint("key_or_jwt")
async def delete_snapshot(request: Request) -> Response:
    manager(request).delete_template(principal_of(request), request.path_params["name"])
    return Response(status_code=204)


# --- auth and API keys --------------------------------------------------------------------


@endpoint("none")
async def signup(request: Request) -> Response:
    body = await read_json(request)
    email, password, name = body.get("email"), body.get("password"), body.get("name")
    if not isinstance(email, str) or "@" not in email or len(email) < 3:
        raise bad_request("email must be a valid address")
    if not isinstance(password, str) or len(password) < 8:
        raise bad_request("password must be at least 8 characters")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise bad_request("name must be 1 to 100 characters")
    accounts(request).signup(email, password, name)
    return json_response(
        {"message": "Account created. This local server has no mail: log in right away."}, 201
    )


@endpoint("none")
async def login(request: Request) -> Response:
    body = await read_json(request)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise bad_request("email and password are required")
    user = accounts(request).login(email, password)
    return json_response(
        {
            "token": accounts(request).issue_jwt(user),
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
    key = accounts(request).add_key(raw, principal.team_id, name, principal.actor_id)
    return json_response({**key.to_json(), "key": raw}, 201)


@endpoint("jwt")
async def list_api_keys(request: Request) -> Response:
    principal = principal_of(request)
    email = principal.user.email if principal.user else None
    keys = [k for k in accounts(request).keys.values() if k.team_id == principal.team_id]
    return json_response(
        [k.to_json(email if k.created_by == principal.actor_id else None) for k in keys]
    )


@endpoint("jwt")
async def delete_api_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    if not is_valid("key", key_id):
        raise bad_request("invalid API key ID")
    accounts(request).delete_key(key_id, principal_of(request).team_id)
    return Response(status_code=204)


# --- hosts --------------------------------------------------------------------------------


class Hosts:
    """The one local host, plus hosts users register (they stay ``pending``)."""

    def __init__(self) -> None:
        stamp = rfc3339(now_utc())
        self.local_id = new_id("host")
        self.hosts: dict[str, dict[str, Any]] = {
            self.local_id: {
                "id": self.local_id,
                "type": "regular",
                "team_id": None,
                "provider": "local",
                "availability_zone": "local",
                "arch": platform.machine(),
                "cpu_cores": os.cpu_count() or 1,
                "memory_mb": _memory_mb(),
                "disk_gb": None,
                "address": "127.0.0.1",
                "status": "online",
                "last_heartbeat_at": stamp,
                "created_by": "system",
                "created_at": stamp,
                "updated_at": stamp,
            }
        }
        self.tags: dict[str, set[str]] = {self.local_id: set()}

    def get(self, host_id: str) -> dict[str, Any]:
        if not is_valid("host", host_id):
            raise bad_request("invalid host ID")
        host = self.hosts.get(host_id)
        if host is None:
            raise not_found("host not found")
        return host


def _memory_mb() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            return int(fh.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None


def hosts(request: Request) -> Hosts:
    found: Hosts = request.app.state.hosts
    return found


def _host_json(request: Request, host: dict[str, Any]) -> dict[str, Any]:
    if host["id"] != hosts(request).local_id:
        return host
    live = [r for r in manager(request).capsules.values() if r.status == "running"]
    return {
        **host,
        "last_heartbeat_at": rfc3339(now_utc()),
        "running_vcpus": sum(r.vcpus for r in live),
        "running_memory_mb": sum(r.memory_mb for r in live),
    }


@endpoint("jwt")
async def create_host(request: Request) -> Response:
    body = await read_json(request)
    kind = body.get("type")
    if kind not in ("regular", "byoc"):
        raise bad_request("type must be 'regular' or 'byoc'")
    team_id = body.get("team_id")
    for field in ("team_id", "provider", "availability_zone"):
        if body.get(field) is not None and not isinstance(body.get(field), str):
            raise bad_request(f"{field} must be a string")
    stamp = rfc3339(now_utc())
    principal = principal_of(request)
    team_id = team_id or principal.team_id
    host = {
        "id": new_id("host"),
        "type": kind,
        "team_id": team_id,
        "provider": body.get("provider"),
        "availability_zone": body.get("availability_zone"),
        "arch": None,
        "cpu_cores": None,
        "memory_mb": None,
        "disk_gb": None,
        "address": None,
        "status": "pending",
        "last_heartbeat_at": None,
        "created_by": principal.actor_id,
        "created_at": stamp,
        "updated_at": stamp,
    }
    hosts(request).hosts[host["id"]] = host
    hosts(request).tags[host["id"]] = set()
    return json_response({"host": host, "registration_token": secrets.token_hex(32)}, 201)


@endpoint("jwt")
async def list_hosts(request: Request) -> Response:
    return json_response([_host_json(request, h) for h in hosts(request).hosts.values()])


@endpoint("jwt")
async def get_host(request: Request) -> Response:
    return json_response(_host_json(request, hosts(request).get(request.path_params["host_id"])))


def _capsules_on(request: Request, host_id: str) -> list[str]:
    if host_id != hosts(request).local_id:
        return []
    return [
        r.id for r in manager(request).capsules.values() if r.status not in ("stopped", "error")
    ]


@endpoint("jwt")
async def delete_preview(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"])
    return json_response({"host": host, "sandbox_ids": _capsules_on(request, host["id"])})


@endpoint("jwt")
async def delete_host(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"])
    if host["id"] == hosts(request).local_id:
        running = _capsules_on(request, host["id"])
        if running and request.query_params.get("force") != "true":
            raise ApiError(
                409, "has_active_sandboxes", "host has active capsules", sandbox_ids=running
            )
        raise ApiError(403, "forbidden", "the local host cannot be deleted")
    del hosts(request).hosts[host["id"]]
    hosts(request).tags.pop(host["id"], None)
    return Response(status_code=204)


@endpoint("jwt")
async def regenerate_token(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"])
    if host["status"] != "pending":
        raise ApiError(409, "conflict", "host is not pending")
    return json_response({"host": host, "registration_token": secrets.token_hex(32)}, 201)


@endpoint("jwt")
async def list_tags(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"])
    return json_response(sorted(hosts(request).tags[host["id"]]))


@endpoint("jwt")
async def add_tag(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"])
    body = await read_json(request)
    tag = body.get("tag")
    if not isinstance(tag, str) or not tag or len(tag) > 64:
        raise bad_request("tag must be a string of 1 to 64 characters")
    hosts(request).tags[host["id"]].add(tag)
    return Response(status_code=204)


@endpoint("jwt")
async def remove_tag(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"])
    hosts(request).tags[host["id"]].discard(request.path_params["tag"])
    return Response(status_code=204)


# --- events, health -----------------------------------------------------------------------


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


async def health(request: Request) -> Response:
    support = request.app.state.support
    return json_response({"status": "ok", "version": VERSION, **support.describe()})


def routes() -> list[Route]:
    return [
        Route("/v1/snapshots", create_snapshot, methods=["POST"]),
        Route("/v1/snapshots", list_snapshots, methods=["GET"]),
        Route("/v1/snapshots/{name}", delete_snapshot, methods=["DELETE"]),
        Route("/v1/auth/signup", signup, methods=["POST"]),
        Route("/v1/auth/login", login, methods=["POST"]),
        Route("/v1/api-keys", create_api_key, methods=["POST"]),
        Route("/v1/api-keys", list_api_keys, methods=["GET"]),
        Route("/v1/api-keys/{key_id}", delete_api_key, methods=["DELETE"]),
        Route("/v1/hosts", create_host, methods=["POST"]),
        Route("/v1/hosts", list_hosts, methods=["GET"]),
        Route("/v1/hosts/{host_id}", get_host, methods=["GET"]),
        Route("/v1/hosts/{host_id}", delete_host, methods=["DELETE"]),
        Route("/v1/hosts/{host_id}/delete-preview", delete_preview, methods=["GET"]),
        Route("/v1/hosts/{host_id}/token", regenerate_token, methods=["POST"]),
        Route("/v1/hosts/{host_id}/tags", list_tags, methods=["GET"]),
        Route("/v1/hosts/{host_id}/tags", add_tag, methods=["POST"]),
        Route("/v1/hosts/{host_id}/tags/{tag}", remove_tag, methods=["DELETE"]),
        Route("/v1/events/stream", events_stream, methods=["GET"]),
    ]


def utility_routes() -> list[Route]:
    return [Route("/health", health, methods=["GET"])]
