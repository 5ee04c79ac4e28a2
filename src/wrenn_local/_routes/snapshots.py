"""Snapshots and templates (PROTOCOL §11): create a snapshot, list and delete templates."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import bad_request, json_response
from ._http import capsules_of, endpoint, principal_of, read_json

__all__ = ["routes"]


@endpoint("key_or_jwt")
async def create_snapshot(request: Request) -> Response:
    body = await read_json(request)
    record = capsules_of(request).snapshot(principal_of(request), body)
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def list_snapshots(request: Request) -> Response:
    type_filter = request.query_params.get("type")
    if type_filter is not None and type_filter not in ("base", "snapshot"):
        raise bad_request("type must be 'base' or 'snapshot'")
    store = capsules_of(request).templates
    listed = store.listed(principal_of(request).team_id, type_filter)
    return json_response([t.to_json() for t in listed])


@endpoint("key_or_jwt")
async def delete_snapshot(request: Request) -> Response:
    capsules_of(request).delete_template(principal_of(request), request.path_params["name"])
    return Response(status_code=204)


def routes() -> list[Route]:
    return [
        Route("/v1/snapshots", create_snapshot, methods=["POST"]),
        Route("/v1/snapshots", list_snapshots, methods=["GET"]),
        Route("/v1/snapshots/{name}", delete_snapshot, methods=["DELETE"]),
    ]
