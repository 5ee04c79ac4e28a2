"""Capsule routes: lifecycle, exec, processes, metrics, stats, usage (PROTOCOL §5, §6, §8)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from typing import Any

import anyio
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._accounts import rfc3339
from ._agent_client import AgentFailure
from ._capsules import CapsuleManager
from ._errors import ApiError, bad_request, json_response
from ._http import endpoint, principal_of, read_json
from ._metrics import RANGES

__all__ = ["routes"]

STATS_RANGES = {"5m": 300, "1h": 3600, "6h": 21600, "24h": 86400, "30d": 30 * 86400}


def manager(request: Request) -> CapsuleManager:
    found: CapsuleManager = request.app.state.capsules
    return found


@endpoint("key_or_jwt")
async def create(request: Request) -> Response:
    body = await read_json(request)
    record = manager(request).create(principal_of(request), body)
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def list_capsules(request: Request) -> Response:
    records = manager(request).list_for(principal_of(request))
    return json_response([r.to_json() for r in records])


@endpoint("key_or_jwt")
async def get(request: Request) -> Response:
    record = manager(request).get(principal_of(request), request.path_params["id"])
    return json_response(record.to_json(single=True))


@endpoint("key_or_jwt")
async def destroy(request: Request) -> Response:
    record = manager(request).destroy(principal_of(request), request.path_params["id"])
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def pause(request: Request) -> Response:
    record = manager(request).pause(principal_of(request), request.path_params["id"])
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def resume(request: Request) -> Response:
    record = manager(request).resume(principal_of(request), request.path_params["id"])
    return json_response(record.to_json(), 202)


@endpoint("key_or_jwt")
async def ping(request: Request) -> Response:
    record = manager(request).running(principal_of(request), request.path_params["id"])
    record.touch()
    return Response(status_code=204)


@endpoint("key_or_jwt")
async def metrics(request: Request) -> Response:
    range_name = request.query_params.get("range", "10m")
    if range_name not in RANGES:
        raise bad_request("range must be one of: " + ", ".join(RANGES))
    record = manager(request).get(principal_of(request), request.path_params["id"])
    if record.status not in ("running", "paused"):
        raise ApiError(
            404, "not_found", f"metrics not available for sandbox in state: {record.status}"
        )
    points = record.metrics.window(range_name, time.time())
    return json_response({"sandbox_id": record.id, "range": range_name, "points": points})


@endpoint("key_or_jwt")
async def stats(request: Request) -> Response:
    range_name = request.query_params.get("range", "1h")
    if range_name not in STATS_RANGES:
        raise bad_request("range must be one of: " + ", ".join(STATS_RANGES))
    mgr = manager(request)
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
    mgr = manager(request)
    points = []
    day = start
    while day <= end:
        cpu, ram = mgr.usage.get((team, day), [0.0, 0.0])
        points.append(
            {"date": day.isoformat(), "cpu_minutes": round(cpu, 3), "ram_mb_minutes": round(ram, 3)}
        )
        day += dt.timedelta(days=1)
    return json_response({"from": start.isoformat(), "to": end.isoformat(), "points": points})


# --- exec and processes -----------------------------------------------------------------


def _text_or_base64(stdout: bytes, stderr: bytes) -> tuple[str, str, str]:
    try:
        return stdout.decode("utf-8"), stderr.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return (base64.b64encode(stdout).decode(), base64.b64encode(stderr).decode(), "base64")


@endpoint("key_or_jwt")
async def exec_command(request: Request) -> Response:
    mgr = manager(request)
    record = mgr.running(principal_of(request), request.path_params["id"])
    body = await read_json(request)
    cmd = body.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise bad_request("cmd is required")
    args = body.get("args")
    envs = body.get("envs")
    args = [] if args is None else args
    envs = {} if envs is None else envs
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise bad_request("args must be a list of strings")
    if not isinstance(envs, dict) or not all(isinstance(v, str) for v in envs.values()):
        raise bad_request("envs must be an object of strings")
    cwd = body.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise bad_request("cwd must be a string")
    timeout = body.get("timeout_sec")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        timeout = 30
    record.touch()
    assert record.sandbox is not None
    request_frame: dict[str, Any] = {
        "op": "exec",
        "cmd": cmd,
        "args": args,
        "envs": envs,
        "cwd": cwd,
        "timeout": timeout,
    }
    if body.get("background"):
        tag = body.get("tag")
        if tag is not None and (not isinstance(tag, str) or not tag):
            raise bad_request("tag must be a non-empty string")
        request_frame.update(background=True, tag=tag)
        answer = await record.sandbox.agent.call(request_frame)
        return json_response(
            {"sandbox_id": record.id, "cmd": cmd, "pid": answer["pid"], "tag": answer["tag"]}, 202
        )
    started = time.perf_counter()
    out = bytearray()
    err = bytearray()
    async with record.sandbox.agent.open(request_frame) as channel:
        await channel.receive_json()  # {"pid", "tag"}
        with anyio.fail_after(timeout + 10):
            while True:
                got = await channel.receive()
                if got is None:
                    raise AgentFailure("agent_error", "the command's stream broke")
                kind, payload = got
                if kind == b"O":
                    out += payload
                elif kind == b"E":
                    err += payload
                elif kind == b"J":
                    message = json.loads(payload)
                    if "error" in message:
                        if message["error"] == "timeout":
                            raise ApiError(
                                502,
                                "agent_error",
                                f"command timed out after {timeout}s and was killed",
                            )
                        raise AgentFailure(message["error"], message.get("message", ""))
                    exit_code = int(message["exit_code"])
                    break
    record.touch()
    stdout, stderr, encoding = _text_or_base64(bytes(out), bytes(err))
    return json_response(
        {
            "sandbox_id": record.id,
            "cmd": cmd,
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": exit_code,
            "duration_ms": int((time.perf_counter() - started) * 1000),
            "encoding": encoding,
        }
    )


@endpoint("key_or_jwt")
async def list_processes(request: Request) -> Response:
    record = manager(request).running(principal_of(request), request.path_params["id"])
    record.touch()
    assert record.sandbox is not None
    answer = await record.sandbox.agent.call({"op": "ps"})
    processes = []
    for proc in answer["processes"]:
        entry: dict[str, Any] = {"pid": proc["pid"], "cmd": proc["cmd"]}
        if proc.get("tag"):
            entry["tag"] = proc["tag"]
        if proc.get("args"):
            entry["args"] = proc["args"]
        processes.append(entry)
    return json_response({"processes": processes})


@endpoint("key_or_jwt")
async def kill_process(request: Request) -> Response:
    record = manager(request).running(principal_of(request), request.path_params["id"])
    record.touch()
    assert record.sandbox is not None
    selector = request.path_params["selector"]
    signal_name = "SIGTERM" if request.query_params.get("signal") == "SIGTERM" else "SIGKILL"
    await record.sandbox.agent.call({"op": "kill", "selector": selector, "signal": signal_name})
    return Response(status_code=204)


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
        Route("/v1/capsules/{id}/exec", exec_command, methods=["POST"]),
        Route("/v1/capsules/{id}/processes", list_processes, methods=["GET"]),
        Route("/v1/capsules/{id}/processes/{selector}", kill_process, methods=["DELETE"]),
    ]
