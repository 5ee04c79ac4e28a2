"""WebSocket routes: exec stream, process attach and PTY (PROTOCOL §2.2, §7, §8.3, §9).

Authentication follows §2.2: valid header credentials are checked before the upgrade;
missing or invalid ones still get the 101, then the first frame must be
``{"type": "auth", "token": <JWT>}`` within 5 s, else an in-band error and a close. A
malformed capsule ID is refused before the upgrade with the JSON 400.

Every relay runs in a task group of its own connection: leaving the handler (client gone,
process ended, server stopping) cancels both directions and closes the agent channel.
Closing an exec or attach stream detaches from the process, it does not kill it; a PTY
outlives its WebSocket too and can be reattached by tag.
"""

from __future__ import annotations

import base64
import codecs
import json
import logging
from typing import Any, Final

import anyio
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._accounts import Accounts, Principal
from ._agent_client import AgentChannel, AgentFailure
from ._capsules import CapsuleManager, CapsuleRecord
from ._errors import ApiError, error_response
from ._http import authenticate
from ._ids import is_valid

__all__ = ["routes"]

log = logging.getLogger("wrenn_local.ws")

AUTH_DEADLINE: Final = 5.0
EXIT_LINGER: Final = 30.0


class StreamEnd(Exception):
    """Send ``message`` (a JSON frame) and close."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(message.get("data", ""))
        self.message = message


async def _receive_json(ws: WebSocket) -> dict[str, Any] | None:
    """The next text frame as a JSON object (None for anything unparseable or binary)."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def _open(ws: WebSocket, *, fatal: bool) -> tuple[Principal, CapsuleRecord] | None:
    """Authenticate and find the running capsule; on failure answer as §2.2 and §7.2 say."""
    capsule_id = ws.path_params["id"]
    if not is_valid("cl", capsule_id):
        await ws.send_denial_response(
            error_response(ApiError(400, "invalid_request", "invalid sandbox ID"))
        )
        return None
    accounts: Accounts = ws.app.state.accounts
    try:
        principal = authenticate(accounts, ws, "key_or_jwt")
    except ApiError:
        principal = None
    await ws.accept()
    extra = {"fatal": True} if fatal else {}
    if principal is None:
        token = None
        with anyio.move_on_after(AUTH_DEADLINE):
            first = await _receive_json(ws)
            if first and first.get("type") == "auth" and isinstance(first.get("token"), str):
                token = first["token"]
        try:
            if token is None:
                raise ApiError(401, "unauthorized", "authentication failed")
            user = accounts.check_jwt(token)
            principal = Principal(team_id=user.team_id, kind="user", actor_id=user.id, user=user)
        except ApiError:
            await _end(ws, {"type": "error", "data": "authentication failed", **extra})
            return None
    manager: CapsuleManager = ws.app.state.capsules
    try:
        record = manager.get(principal, capsule_id)
    except ApiError:
        await _end(ws, {"type": "error", "data": "sandbox not found", **extra})
        return None
    if record.status != "running" or record.sandbox is None:
        await _end(
            ws,
            {"type": "error", "data": f"sandbox is not running (status: {record.status})", **extra},
        )
        return None
    return principal, record


async def _end(ws: WebSocket, message: dict[str, Any], code: int = 1000) -> None:
    try:
        await ws.send_json(message)
        await ws.close(code)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


class _Text:
    """Turns a byte stream into text without splitting multi-byte characters."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, data: bytes) -> str:
        return self._decoder.decode(data)


async def _relay_output(ws: WebSocket, channel: AgentChannel) -> None:
    """Agent frames to exec-style JSON frames, until ``exit`` (then close)."""
    decoders = {b"O": _Text(), b"E": _Text()}
    names = {b"O": "stdout", b"E": "stderr"}
    while True:
        got = await channel.receive()
        if got is None:
            raise StreamEnd({"type": "error", "data": "the process stream broke"})
        kind, payload = got
        if kind in decoders:
            text = decoders[kind](payload)
            if text:
                await ws.send_json({"type": names[kind], "data": text})
        elif kind == b"J":
            message = json.loads(payload)
            if "error" in message:
                raise StreamEnd({"type": "error", "data": message.get("message", "failed")})
            await ws.send_json({"type": "exit", "exit_code": int(message["exit_code"])})
            return


async def _watch_client(ws: WebSocket, scope: anyio.CancelScope) -> None:
    """Read client frames of an exec/attach stream: ``stop`` or a disconnect detaches."""
    try:
        while True:
            message = await _receive_json(ws)
            if message and message.get("type") == "stop":
                break
    except WebSocketDisconnect:
        pass
    scope.cancel()


async def _run_exec_like(ws: WebSocket, record: CapsuleRecord, request: dict[str, Any]) -> None:
    assert record.sandbox is not None
    try:
        async with record.sandbox.agent.open(request) as channel:
            first = await channel.receive_json()
            record.touch()
            start: dict[str, Any] = {"type": "start"}
            if first.get("pid"):
                start["pid"] = first["pid"]
            await ws.send_json(start)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_client, ws, tg.cancel_scope)
                await _relay_output(ws, channel)
                tg.cancel_scope.cancel()
        await _end_quietly(ws)
    except AgentFailure as exc:
        await _end(ws, {"type": "error", "data": exc.message or exc.code})
    except StreamEnd as end:
        await _end(ws, end.message)
    except WebSocketDisconnect:
        return


async def _end_quietly(ws: WebSocket) -> None:
    try:
        await ws.close(1000)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


async def exec_stream(ws: WebSocket) -> None:
    opened = await _open(ws, fatal=False)
    if opened is None:
        return
    _, record = opened
    try:
        first = await _receive_json(ws)
    except WebSocketDisconnect:
        return
    if (
        not first
        or first.get("type") != "start"
        or not isinstance(first.get("cmd"), str)
        or not first["cmd"]
    ):
        await _end(
            ws, {"type": "error", "data": "first message must be type 'start' with a 'cmd' field"}
        )
        return
    args = first.get("args") or []
    envs = first.get("envs") or {}
    if (
        not isinstance(args, list)
        or not all(isinstance(a, str) for a in args)
        or not (isinstance(envs, dict) and all(isinstance(v, str) for v in envs.values()))
    ):
        await _end(ws, {"type": "error", "data": "args must be strings and envs a string map"})
        return
    request = {
        "op": "exec",
        "stream": True,
        "cmd": first["cmd"],
        "args": args,
        "envs": envs,
        "cwd": first.get("cwd") if isinstance(first.get("cwd"), str) else None,
        "timeout": None,
    }
    await _run_exec_like(ws, record, request)


async def process_stream(ws: WebSocket) -> None:
    opened = await _open(ws, fatal=False)
    if opened is None:
        return
    _, record = opened
    await _run_exec_like(ws, record, {"op": "attach", "selector": ws.path_params["selector"]})


# --- PTY ------------------------------------------------------------------------------


async def pty(ws: WebSocket) -> None:
    opened = await _open(ws, fatal=True)
    if opened is None:
        return
    _, record = opened
    assert record.sandbox is not None
    try:
        first = await _receive_json(ws)
    except WebSocketDisconnect:
        return
    kind = first.get("type") if first else None
    request: dict[str, Any]
    if kind == "start":
        assert first is not None
        cols, rows = first.get("cols") or 80, first.get("rows") or 24
        request = {
            "op": "pty_start",
            "cmd": first.get("cmd") or "/bin/bash",
            "args": first.get("args") or [],
            "cols": cols,
            "rows": rows,
            "envs": first.get("envs") or {},
            "cwd": first.get("cwd"),
        }
        if not (isinstance(cols, int) and isinstance(rows, int) and cols > 0 and rows > 0):
            await _end(
                ws, {"type": "error", "data": "cols and rows must be positive", "fatal": True}
            )
            return
    elif kind == "connect":
        assert first is not None
        tag = first.get("tag")
        if not isinstance(tag, str) or not tag:
            await _end(
                ws, {"type": "error", "data": "connect requires a 'tag' field", "fatal": True}
            )
            return
        request = {"op": "pty_connect", "tag": tag}
    else:
        await _end(
            ws,
            {
                "type": "error",
                "data": "first message must be type 'start' or 'connect'",
                "fatal": True,
            },
        )
        return
    try:
        async with record.sandbox.agent.open(request) as channel:
            started = await channel.receive_json()
            record.touch()
            if kind == "start":
                await ws.send_json(
                    {"type": "started", "tag": started["tag"], "pid": started["pid"]}
                )
            exit_code = await _pty_session(ws, record, channel)
        if exit_code is not None:
            await ws.send_json({"type": "exit", "exit_code": exit_code})
            # As the real server: keep the socket until the client speaks or closes.
            with anyio.move_on_after(EXIT_LINGER):
                await ws.receive()
            await _end_quietly(ws)
    except AgentFailure as exc:
        data = "pty session not found" if exc.code == "not_found" else (exc.message or exc.code)
        await _end(ws, {"type": "error", "data": data, "fatal": True})
    except WebSocketDisconnect:
        return


async def _pty_session(ws: WebSocket, record: CapsuleRecord, channel: AgentChannel) -> int | None:
    """Relay both ways until the process exits (its code) or the client leaves (None)."""
    result: list[int] = []
    interval = float(ws.app.state.pty_ping_interval)

    async def output() -> None:
        while True:
            got = await channel.receive()
            if got is None:
                return
            kind, payload = got
            if kind == b"O":
                await ws.send_bytes(payload)
            elif kind == b"J":
                message = json.loads(payload)
                if "exit_code" in message:
                    result.append(int(message["exit_code"]))
                    return

    async def client_input() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                record.touch()
                await channel.send(b"I", message["bytes"])
                continue
            try:
                frame = json.loads(message.get("text") or "")
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "input" and isinstance(frame.get("data"), str):  # SDK 0.2.0 framing
                try:
                    await channel.send(b"I", base64.b64decode(frame["data"], validate=True))
                    record.touch()
                except ValueError:
                    continue
            elif kind == "resize":
                cols, rows = frame.get("cols"), frame.get("rows")
                if isinstance(cols, int) and isinstance(rows, int) and cols > 0 and rows > 0:
                    await channel.send_json({"type": "resize", "cols": cols, "rows": rows})
            elif kind == "kill":
                await channel.send_json({"type": "kill"})

    async def keepalive() -> None:
        while True:
            await anyio.sleep(interval)
            await ws.send_json({"type": "ping"})

    async with anyio.create_task_group() as tg:

        async def run(part: Any) -> None:
            try:
                await part()
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(run, output)
        tg.start_soon(run, client_input)
        tg.start_soon(run, keepalive)
    return result[0] if result else None


def routes() -> list[WebSocketRoute]:
    return [
        WebSocketRoute("/v1/capsules/{id}/exec/stream", exec_stream),
        WebSocketRoute("/v1/capsules/{id}/processes/{selector}/stream", process_stream),
        WebSocketRoute("/v1/capsules/{id}/pty", pty),
    ]
