"""Hosts (PROTOCOL §15.3): the local host, registered hosts, their tokens and tags."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._accounts import now_utc, rfc3339
from .._errors import ApiError, bad_request, json_response
from .._hosts import Hosts
from .._ids import new_id
from ._http import capsules_of, endpoint, principal_of, read_json

__all__ = ["routes"]


def hosts(request: Request) -> Hosts:
    found: Hosts = request.app.state.hosts
    return found


def _host_json(request: Request, host: dict[str, Any]) -> dict[str, Any]:
    if host["id"] != hosts(request).local_id:
        return host
    live = [r for r in capsules_of(request).capsules.values() if r.status == "running"]
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
    if team_id not in (None, principal.team_id):
        raise ApiError(403, "forbidden", "hosts can only be registered for your own team")
    team_id = principal.team_id
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
    return json_response({"host": host, "registration_token": secrets.token_hex(32)}, 201)


@endpoint("jwt")
async def list_hosts(request: Request) -> Response:
    team_id = principal_of(request).team_id
    return json_response(
        [
            _host_json(request, h)
            for h in hosts(request).hosts.values()
            if hosts(request).visible(h, team_id)
        ]
    )


@endpoint("jwt")
async def get_host(request: Request) -> Response:
    return json_response(
        _host_json(
            request,
            hosts(request).get(request.path_params["host_id"], principal_of(request).team_id),
        )
    )


def _capsules_on(request: Request, host_id: str) -> list[str]:
    if host_id != hosts(request).local_id:
        return []
    team_id = principal_of(request).team_id
    return [
        r.id
        for r in capsules_of(request).capsules.values()
        if r.status not in ("stopped", "error") and r.team_id == team_id
    ]


@endpoint("jwt")
async def delete_preview(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"], principal_of(request).team_id)
    return json_response({"host": host, "sandbox_ids": _capsules_on(request, host["id"])})


@endpoint("jwt")
async def delete_host(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"], principal_of(request).team_id)
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
    host = hosts(request).get(request.path_params["host_id"], principal_of(request).team_id)
    if host["status"] != "pending":
        raise ApiError(409, "conflict", "host is not pending")
    return json_response({"host": host, "registration_token": secrets.token_hex(32)}, 201)


@endpoint("jwt")
async def list_tags(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"], principal_of(request).team_id)
    return json_response(sorted(hosts(request).tags_of(host, principal_of(request).team_id)))


@endpoint("jwt")
async def add_tag(request: Request) -> Response:
    host = hosts(request).get(request.path_params["host_id"], principal_of(request).team_id)
    body = await read_json(request)
    tag = body.get("tag")
    if not isinstance(tag, str) or not tag or len(tag) > 64:
        raise bad_request("tag must be a string of 1 to 64 characters")
    hosts(request).tags_of(host, principal_of(request).team_id).add(tag)
    return Response(status_code=204)


@endpoint("jwt")
async def remove_tag(request: Request) -> Response:
    team_id = principal_of(request).team_id
    host = hosts(request).get(request.path_params["host_id"], team_id)
    hosts(request).tags_of(host, team_id).discard(request.path_params["tag"])
    return Response(status_code=204)


def routes() -> list[Route]:
    return [
        Route("/v1/hosts", create_host, methods=["POST"]),
        Route("/v1/hosts", list_hosts, methods=["GET"]),
        Route("/v1/hosts/{host_id}", get_host, methods=["GET"]),
        Route("/v1/hosts/{host_id}", delete_host, methods=["DELETE"]),
        Route("/v1/hosts/{host_id}/delete-preview", delete_preview, methods=["GET"]),
        Route("/v1/hosts/{host_id}/token", regenerate_token, methods=["POST"]),
        Route("/v1/hosts/{host_id}/tags", list_tags, methods=["GET"]),
        Route("/v1/hosts/{host_id}/tags", add_tag, methods=["POST"]),
        Route("/v1/hosts/{host_id}/tags/{tag}", remove_tag, methods=["DELETE"]),
    ]
