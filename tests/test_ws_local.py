"""Our WebSocket client against wrenn_local (hypercorn): exec stream and PTY round trips."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

import wrenn_local
from tests.localserver import FAST, new_capsule
from wrenn import WrennValidationError
from wrenn._transport.websocket import WebSocket, connect_websocket


@asynccontextmanager
async def capsule_ws(path: str) -> AsyncIterator[tuple[str, dict[str, str]]]:
    async with (
        wrenn_local.serve(options=FAST) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
        ) as http,
    ):
        cid = await new_capsule(http)
        base = server.base_url.replace("http://", "ws://")
        yield f"{base}/v1/capsules/{cid}{path}", {"X-API-Key": server.api_key}


async def next_json(ws: WebSocket) -> dict[str, object]:
    while True:
        message = await ws.receive()
        if isinstance(message, str):
            frame: dict[str, object] = json.loads(message)
            return frame


async def test_exec_stream_through_our_client() -> None:
    async with (
        capsule_ws("/exec/stream") as (url, headers),
        connect_websocket(url, headers=headers) as ws,
    ):
        await ws.send_text(
            json.dumps(
                {"type": "start", "cmd": "/bin/sh", "args": ["-c", "seq 1 2000; echo done >&2"]}
            )
        )
        out, kinds = "", []
        with anyio.fail_after(20):
            while True:
                frame = await next_json(ws)
                kinds.append(str(frame["type"]))
                if frame["type"] == "stdout":
                    out += str(frame["data"])
                if frame["type"] == "exit":
                    assert frame["exit_code"] == 0
                    break
        assert kinds[0] == "start"
        assert out.split() == [str(i) for i in range(1, 2001)]


async def test_pty_round_trip_through_our_client() -> None:
    async with capsule_ws("/pty") as (url, headers), connect_websocket(url, headers=headers) as ws:
        await ws.send_text(
            json.dumps({"type": "start", "cmd": "/bin/bash", "cols": 100, "rows": 30})
        )
        started = json.loads(str(await ws.receive()))
        assert started["type"] == "started"
        await ws.send_bytes(b"echo $((40+2))\n")
        seen = b""
        with anyio.fail_after(10):
            while b"42" not in seen:
                message = await ws.receive()
                if isinstance(message, bytes):
                    seen += message
        await ws.send_text(json.dumps({"type": "kill"}))
        with anyio.fail_after(10):
            while True:
                message = await ws.receive()
                if isinstance(message, str) and json.loads(message)["type"] == "exit":
                    break


async def test_upgrade_refused_before_101_is_mapped() -> None:
    async with capsule_ws("/exec/stream") as (url, headers):
        bad = url.rsplit("/v1/capsules/", 1)[0] + "/v1/capsules/cl-nope/exec/stream"
        with pytest.raises(WrennValidationError):
            async with connect_websocket(bad, headers=headers):
                pass
