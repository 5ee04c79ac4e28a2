"""Capsule routes: lifecycle, ping, metrics, stats, usage (PROTOCOL §5)."""

from __future__ import annotations

import datetime as dt
import time

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._accounts import rfc3339
from .._errors import ApiError, bad_request, json_response
from .._metrics import RANGES
from .._port_links import QUERY, PortLinks
from ._http import capsules_of, endpoint, principal_of, read_json

__all__ = ["routes"]

STATS_RANGES = {"5m": 300, "1h": 3600, "6h": 21600, "24h": 86400, "30d": 30 * 86400}


@endpoint("key_or_jwt")
async def create(request: Request) -> Response:
    body = await read_json(request)
    record = capsules_of(request).create(principal_of(request), body)
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def list_capsules(request: Request) -> Response:
    records = capsules_of(request).list_for(principal_of(request))
    return json_response([r.to_json() for r in records])


@endpoint("key_or_jwt")
async def get(request: Request) -> Response:
    record = capsules_of(request).get(principal_of(request), request.path_params["id"])
    return json_response(record.to_json(single=True))


@endpoint("key_or_jwt")
async def destroy(request: Request) -> Response:
    record = capsules_of(request).destroy(principal_of(request), request.path_params["id"])
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def pause(request: Request) -> Response:
    record = capsules_of(request).pause(principal_of(request), request.path_params["id"])
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def resume(request: Request) -> Response:
    record = capsules_of(request).resume(principal_of(request), request.path_params["id"])
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def ping(request: Request) -> Response:
    record = capsules_of(request).running(principal_of(request), request.path_params["id"])
    record.touch()
    return Response(status_code=204)


@endpoint("key_or_jwt")
async def metrics(request: Request) -> Response:
    range_name = request.query_params.get("range", "10m")
    if range_name not in RANGES:
        raise bad_request("range must be one of: " + ", ".join(RANGES))
    record = capsules_of(request).get(principal_of(request), request.path_params["id"])
    if record.status not in ("running", "paused"):
        raise ApiError(
            404, "not_found", f"metrics not available for capsule in state: {record.status}"
        )
    points = record.metrics.window(range_name, time.time())
    return json_response({"sandbox_id": record.id, "range": range_name, "points": points})


@endpoint("key_or_jwt")
async def stats(request: Request) -> Response:
    range_name = request.query_params.get("range", "1h")
    if range_name not in STATS_RANGES:
        raise bad_request("range must be one of: " + ", ".join(STATS_RANGES))
    mgr = capsules_of(request)
    team = principal_of(request).team_id
    now = time.time()
    series = [s for s in mgr.team_stats.get(team, ()) if s[0] >= now - STATS_RANGES[range_name]]
    live = [r for r in mgr.capsules.values() if r.team_id == team and r.status == "running"]
    return json_response(
        {
            "range": range_name,
            "current": {
                "running_count": len(live),
                "vcpus_reserved": sum(r.vcpus for r in live),
                "memory_mb_reserved": sum(r.memory_mb for r in live),
            },
            "peaks": {
                "running_count": max((s[1] for s in series), default=len(live)),
                "vcpus": max((s[2] for s in series), default=sum(r.vcpus for r in live)),
                "memory_mb": max((s[3] for s in series), default=sum(r.memory_mb for r in live)),
            },
            "series": {
                "labels": [rfc3339(dt.datetime.fromtimestamp(int(s[0]), dt.UTC)) for s in series],
                "running": [s[1] for s in series],
                "vcpus": [s[2] for s in series],
                "memory_mb": [s[3] for s in series],
            },
        }
    )


@endpoint("key_or_jwt")
async def usage(request: Request) -> Response:
    today = dt.datetime.now(dt.UTC).date()
    query = request.query_params
    try:
        end = dt.date.fromisoformat(query["to"]) if "to" in query else today
        # without `from`, the 30 days that end at `to`
        start = dt.date.fromisoformat(query["from"]) if "from" in query else end - dt.timedelta(29)
    except ValueError:
        raise bad_request("from and to must be dates (YYYY-MM-DD)") from None
    if start > end:
        raise bad_request("from must not be after to")
    if (end - start).days > 92:
        raise bad_request("the range may span at most 92 days")
    team = principal_of(request).team_id
    mgr = capsules_of(request)
    points = []
    day = start
    while day <= end:
        cpu, ram = mgr.usage.get((team, day), [0.0, 0.0])
        points.append(
            {"date": day.isoformat(), "cpu_minutes": round(cpu, 3), "ram_mb_minutes": round(ram, 3)}
        )
        day += dt.timedelta(days=1)
    return json_response({"from": start.isoformat(), "to": end.isoformat(), "points": points})


@endpoint("key_or_jwt")
async def browser_token(request: Request) -> Response:
    """A local extension: a short-lived link to a capsule's port that a browser can open
    (``_port_links.py``); the proxy trades its token for a cookie."""
    text = request.path_params["port"]
    port = int(text) if text.isdigit() and len(text) <= 5 else 0
    if not 1 <= port <= 65535:
        raise bad_request("invalid port")
    record = capsules_of(request).get(principal_of(request), request.path_params["id"])
    if record.status in ("stopped", "error"):
        raise ApiError(404, "not_found", "capsule not found")
    links: PortLinks = request.app.state.port_links
    token, expires = links.issue(record.id, port)
    server_port = request.url.port or request.scope.get("server", (None, 80))[1]
    url = f"http://{port}-{record.id}.localhost:{server_port}/?{QUERY}={token}"
    expires_at = rfc3339(dt.datetime.fromtimestamp(expires, dt.UTC))
    return json_response({"token": token, "url": url, "expires_at": expires_at})


class _CapsuleSegment(Convertor[str]):
    """A path segment naming a capsule: anything but the static siblings ``stats`` and
    ``usage``, so ``DELETE /v1/capsules/stats`` is a 405 (as the real router), not a bad ID."""

    regex = r"(?!(?:stats|usage)$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("capsule", _CapsuleSegment())


def routes() -> list[Route]:
    return [
        Route("/v1/capsules", create, methods=["POST"]),
        Route("/v1/capsules", list_capsules, methods=["GET"]),
        Route("/v1/capsules/stats", stats, methods=["GET"]),
        Route("/v1/capsules/usage", usage, methods=["GET"]),
        Route("/v1/capsules/{id:capsule}", get, methods=["GET"]),
        Route("/v1/capsules/{id:capsule}", destroy, methods=["DELETE"]),
        Route("/v1/capsules/{id}/pause", pause, methods=["POST"]),
        Route("/v1/capsules/{id}/resume", resume, methods=["POST"]),
        Route("/v1/capsules/{id}/ping", ping, methods=["POST"]),
        Route("/v1/capsules/{id}/metrics", metrics, methods=["GET"]),
        Route("/v1/capsules/{id}/ports/{port}/browser-token", browser_token, methods=["POST"]),
    ]
