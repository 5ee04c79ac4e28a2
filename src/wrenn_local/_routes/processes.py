"""Commands and processes (PROTOCOL §6, §7, §8): exec, the exec stream WebSocket, the
process list, kill, and the attach WebSocket.

Every relay runs in a task group of its own connection: leaving the handler (client gone,
process ended, server stopping) cancels both directions and closes the agent connection.
A command belongs to the call that started it: a foreground exec whose client goes away,
and an exec stream closed without ``stop``, kill it (the agent does, when its connection
closes). ``stop`` detaches; closing an attach stream leaves the process alone.

Output never piles up in the server: the agent sends it in bounded frames and stops
reading a command's pipe while the server does not take them (the command blocks on
write); a foreground answer keeps the first ``exec_output_limit`` bytes and drops the rest.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import time
from typing import Any, Literal

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._agent_client import AgentFailure, Exited, Output, ProcessStream
from .._capsules import CapsuleRecord
from .._errors import ApiError, bad_request, json_response
from ._http import capsules_of, endpoint, principal_of, read_json
from ._ws import (
    binary_offer,
    broken_off,
    dumps_text,
    end,
    end_quietly,
    open_capsule,
    receive_json,
    send_frame,
)

__all__ = ["routes", "websocket_routes"]


# --- HTTP -------------------------------------------------------------------------------


def _text_or_base64(stdout: bytearray, stderr: bytearray) -> tuple[str, str, str]:
    try:
        return stdout.decode("utf-8"), stderr.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return (base64.b64encode(stdout).decode(), base64.b64encode(stderr).decode(), "base64")


@endpoint("key_or_jwt")
async def exec_command(request: Request) -> Response:
    record = capsules_of(request).running(principal_of(request), request.path_params["id"])
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
    agent = record.sandbox.agent
    if body.get("background"):
        tag = body.get("tag")
        if tag is not None and (not isinstance(tag, str) or not tag):
            raise bad_request("tag must be a non-empty string")
        started = await agent.exec_background(
            cmd, args=args, envs=envs, cwd=cwd, timeout=timeout, tag=tag
        )
        return json_response(
            {"sandbox_id": record.id, "cmd": cmd, "pid": started.pid, "tag": started.tag}, 202
        )
    begun = time.perf_counter()
    limit = request.app.state.options.exec_output_limit
    collected: _Collected | None = None
    failure: Exception | None = None
    # a client that goes away takes its command with it: leaving this block closes the
    # agent connection, and the agent kills the process
    async with (
        agent.exec(cmd, args=args, envs=envs, cwd=cwd, timeout=timeout) as process,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_cancel_on_disconnect, request, tg.cancel_scope)
        try:
            collected = await _collect(process, timeout, limit)
        except Exception as exc:  # raised below, outside the task group (no group)
            failure = exc
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if collected is None:  # the client went away: nobody reads this answer
        return Response(status_code=499)
    output, exit_code, truncated = collected
    del collected  # the output is let go of as soon as it is text
    record.touch()
    stdout, stderr, encoding = _text_or_base64(output["stdout"], output["stderr"])
    del output
    answer: dict[str, Any] = {
        "sandbox_id": record.id,
        "cmd": cmd,
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": exit_code,
        "duration_ms": int((time.perf_counter() - begun) * 1000),
        "encoding": encoding,
    }
    if truncated:
        answer["truncated"] = True
    del stdout, stderr
    return json_response(answer)


_Collected = tuple[dict[str, bytearray], int, bool]


async def _collect(process: ProcessStream, timeout: float, limit: int) -> _Collected:
    """A foreground command's output (its first ``limit`` bytes), exit code, and whether
    output was dropped."""
    output = {"stdout": bytearray(), "stderr": bytearray()}
    room = limit
    truncated = False
    with anyio.fail_after(timeout + 10):
        while True:
            try:
                event = await process.next()
            except AgentFailure as exc:
                if exc.code == "timeout":
                    raise ApiError(
                        502, "agent_error", f"command timed out after {timeout}s and was killed"
                    ) from None
                raise
            if event is None:
                raise AgentFailure("agent_error", "the command's stream broke")
            if isinstance(event, Exited):
                return output, event.exit_code, truncated
            kept = event.data[: max(room, 0)]
            output[event.stream] += kept
            room -= len(kept)
            truncated = truncated or len(kept) < len(event.data)


async def _cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` when the HTTP client goes away (its body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


@endpoint("key_or_jwt")
async def list_processes(request: Request) -> Response:
    record = capsules_of(request).running(principal_of(request), request.path_params["id"])
    record.touch()
    assert record.sandbox is not None
    processes = []
    for proc in await record.sandbox.agent.processes():
        entry: dict[str, Any] = {"pid": proc["pid"], "cmd": proc["cmd"]}
        if proc.get("tag"):
            entry["tag"] = proc["tag"]
        if proc.get("args"):
            entry["args"] = proc["args"]
        processes.append(entry)
    return json_response({"processes": processes})


@endpoint("key_or_jwt")
async def kill_process(request: Request) -> Response:
    record = capsules_of(request).running(principal_of(request), request.path_params["id"])
    record.touch()
    assert record.sandbox is not None
    selector = request.path_params["selector"]
    signal_name: Literal["SIGTERM", "SIGKILL"] = (
        "SIGTERM" if request.query_params.get("signal") == "SIGTERM" else "SIGKILL"
    )
    await record.sandbox.agent.kill(selector, signal_name)
    return Response(status_code=204)


# --- WebSockets: exec stream and attach ---------------------------------------------------


class _Text:
    """Turns a byte stream into text without splitting multi-byte characters."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, data: bytes) -> str:
        return self._decoder.decode(data)


_TAGS = {"stdout": b"\x01", "stderr": b"\x02"}  # binary output frames (_ws.BINARY_OUTPUT)
_HEADS = {"stdout": '{"type":"stdout","data":', "stderr": '{"type":"stderr","data":'}


async def _relay_output(ws: WebSocket, process: ProcessStream, *, binary: bool = False) -> None:
    """Process output to exec-style frames, until ``exit`` (then close): JSON text, or
    with ``binary`` (the client's offer accepted) one binary message per chunk."""
    decoders: dict[str, _Text] = {}  # made on a stream's first output (most streams wait)
    while True:
        event = await process.next()  # (AgentFailure: see _follow)
        if event is None:
            raise AgentFailure("agent_error", "the process stream broke")
        if isinstance(event, Output):
            if binary:
                if event.data:
                    await ws.send_bytes(_TAGS[event.stream] + event.data)
                continue
            decoder = decoders.get(event.stream)
            if decoder is None:
                decoder = decoders[event.stream] = _Text()
            text = decoder(event.data)
            if text:  # the hot path: only the text is encoded
                await ws.send_text(_HEADS[event.stream] + dumps_text(text) + "}")
        else:
            await send_frame(ws, {"type": "exit", "exit_code": event.exit_code})
            return


async def _watch_client(ws: WebSocket, process: ProcessStream, scope: anyio.CancelScope) -> None:
    """Read client frames of an exec/attach stream until ``stop`` (which detaches: the
    process keeps running) or a disconnect (which ends the stream; for an exec stream,
    the agent then kills the command)."""
    try:
        while True:
            message = await receive_json(ws)
            if message and message.get("type") == "stop":
                # (an agent already gone cannot be told: the relay sees it go)
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await process.detach()
                break
    except WebSocketDisconnect:
        pass
    scope.cancel()


async def _follow(
    ws: WebSocket,
    record: CapsuleRecord,
    opening: contextlib.AbstractAsyncContextManager[ProcessStream],
    *,
    binary: bool = False,
) -> None:
    """Relay a process (started or attached) to the client until it exits or detaches."""
    try:
        async with opening as process:
            record.touch()
            start: dict[str, Any] = {"type": "start"}
            if process.started.pid:
                start["pid"] = process.started.pid
            await send_frame(ws, start)
            del start
            failure: AgentFailure | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_client, ws, process, tg.cancel_scope)
                try:
                    await _relay_output(ws, process, binary=binary)
                except AgentFailure as exc:  # raised below, outside the group (no group)
                    failure = exc
                tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
        await end_quietly(ws)
    except AgentFailure as exc:
        await end(ws, {"type": "error", "data": broken_off(record, exc, exc.message or exc.code)})
    except WebSocketDisconnect:
        return


async def exec_stream(ws: WebSocket) -> None:
    offer = binary_offer(ws)
    opened = await open_capsule(ws, fatal=False, subprotocol=offer)
    if opened is None:
        return
    _, record = opened
    try:
        first = await receive_json(ws)
    except WebSocketDisconnect:
        return
    if (
        not first
        or first.get("type") != "start"
        or not isinstance(first.get("cmd"), str)
        or not first["cmd"]
    ):
        await end(
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
        await end(ws, {"type": "error", "data": "args must be strings and envs a string map"})
        return
    assert record.sandbox is not None
    opening = record.sandbox.agent.exec(
        first["cmd"],
        args=args,
        envs=envs,
        cwd=first.get("cwd") if isinstance(first.get("cwd"), str) else None,
        timeout=None,
        stream=True,
    )
    del first, args, envs  # the start frame is not kept for the life of the stream
    await _follow(ws, record, opening, binary=offer is not None)


async def process_stream(ws: WebSocket) -> None:
    offer = binary_offer(ws)
    opened = await open_capsule(ws, fatal=False, subprotocol=offer)
    if opened is None:
        return
    _, record = opened
    assert record.sandbox is not None
    attaching = record.sandbox.agent.attach(ws.path_params["selector"])
    await _follow(ws, record, attaching, binary=offer is not None)


def routes() -> list[Route]:
    return [
        Route("/v1/capsules/{id}/exec", exec_command, methods=["POST"]),
        Route("/v1/capsules/{id}/processes", list_processes, methods=["GET"]),
        Route("/v1/capsules/{id}/processes/{selector}", kill_process, methods=["DELETE"]),
    ]


def websocket_routes() -> list[WebSocketRoute]:
    return [
        WebSocketRoute("/v1/capsules/{id}/exec/stream", exec_stream),
        WebSocketRoute("/v1/capsules/{id}/processes/{selector}/stream", process_stream),
    ]
