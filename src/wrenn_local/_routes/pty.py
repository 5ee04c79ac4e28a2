"""The PTY WebSocket (PROTOCOL §9): a terminal in the capsule, started or reattached.

A PTY outlives its WebSocket and can be reattached by its tag. Input arrives as binary
frames (or base64 ``input`` frames, SDK 0.2.0), resizes and kill as JSON; output leaves
as binary frames, with a JSON ``ping`` every ``pty_ping_interval`` seconds.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any, Final, TypeGuard

import anyio
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._agent_client import AgentFailure, Exited, PtySession
from .._capsules import CapsuleRecord
from ._ws import broken_off, end, end_quietly, open_capsule, receive_json

__all__ = ["websocket_routes"]

EXIT_LINGER: Final = 30.0


async def pty(ws: WebSocket) -> None:
    opened = await open_capsule(ws, fatal=True)
    if opened is None:
        return
    _, record = opened
    assert record.sandbox is not None
    try:
        first = await receive_json(ws)
    except WebSocketDisconnect:
        return
    kind = first.get("type") if first else None
    agent = record.sandbox.agent
    opening: contextlib.AbstractAsyncContextManager[PtySession]
    if kind == "start":
        assert first is not None
        cols, rows = first.get("cols") or 80, first.get("rows") or 24
        if not (_is_size(cols) and _is_size(rows)):
            await end(
                ws, {"type": "error", "data": "cols and rows must be 1 to 65535", "fatal": True}
            )
            return
        opening = agent.pty_start(
            first.get("cmd") or "/bin/bash",
            args=first.get("args") or [],
            envs=first.get("envs") or {},
            cwd=first.get("cwd"),
            cols=cols,
            rows=rows,
        )
    elif kind == "connect":
        assert first is not None
        tag = first.get("tag")
        if not isinstance(tag, str) or not tag:
            await end(
                ws, {"type": "error", "data": "connect requires a 'tag' field", "fatal": True}
            )
            return
        opening = agent.pty_connect(tag)
    else:
        await end(
            ws,
            {
                "type": "error",
                "data": "first message must be type 'start' or 'connect'",
                "fatal": True,
            },
        )
        return
    try:
        async with opening as session:
            record.touch()
            if kind == "start":
                started = session.started
                await ws.send_json({"type": "started", "tag": started.tag, "pid": started.pid})
            exit_code = await _pty_session(ws, record, session)
        if exit_code is not None:
            await ws.send_json({"type": "exit", "exit_code": exit_code})
            # As the real server: keep the socket until the client speaks or closes.
            with anyio.move_on_after(EXIT_LINGER):
                await ws.receive()
            await end_quietly(ws)
    except AgentFailure as exc:
        data = "pty session not found" if exc.code == "not_found" else (exc.message or exc.code)
        await end(ws, {"type": "error", "data": broken_off(record, exc, data), "fatal": True})
    except WebSocketDisconnect:
        return


def _is_size(value: object) -> TypeGuard[int]:
    """A terminal's cols or rows: an int the kernel's ``winsize`` holds (1 to 65535)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 0xFFFF


async def _pty_session(ws: WebSocket, record: CapsuleRecord, session: PtySession) -> int | None:
    """Relay both ways until the process exits (its code) or the client leaves (None).

    Raises :class:`AgentFailure` (outside the task group, so the route's handler sees
    it) when the agent's side breaks off: its connection ends or fails."""
    result: list[int] = []
    broken: list[AgentFailure] = []
    interval = float(ws.app.state.pty_ping_interval)

    async def output() -> None:
        while True:
            event = await session.next()
            if event is None:
                raise AgentFailure("agent_error", "the terminal's stream broke")
            if isinstance(event, Exited):
                result.append(event.exit_code)
                return
            await ws.send_bytes(event)

    async def client_input() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                record.touch()
                await session.write(message["bytes"])
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
                    await session.write(base64.b64decode(frame["data"], validate=True))
                    record.touch()
                except ValueError:
                    continue
            elif kind == "resize":
                cols, rows = frame.get("cols"), frame.get("rows")
                if _is_size(cols) and _is_size(rows):  # any other resize is dropped
                    await session.resize(cols, rows)
            elif kind == "kill":
                await session.kill()

    async def keepalive() -> None:
        while True:
            await anyio.sleep(interval)
            await ws.send_json({"type": "ping"})

    async with anyio.create_task_group() as tg:

        async def run(part: Any) -> None:
            try:
                await part()
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass  # the client's side
            except AgentFailure as exc:
                broken.append(exc)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                broken.append(AgentFailure("agent_error", "the terminal's agent connection broke"))
            tg.cancel_scope.cancel()

        tg.start_soon(run, output)
        tg.start_soon(run, client_input)
        tg.start_soon(run, keepalive)
    if broken and not result:
        raise broken[0]
    return result[0] if result else None


def websocket_routes() -> list[WebSocketRoute]:
    return [WebSocketRoute("/v1/capsules/{id}/pty", pty)]
