"""wrenn_local's WebSocket endpoints, driven by the `websockets` library (not our client)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

import wrenn_local
from tests.localserver import FAST, new_capsule, sh


class Peer:
    """A `websockets` sync connection driven from async code through a worker thread."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    async def send(self, message: str | bytes | dict[str, Any]) -> None:
        data = json.dumps(message) if isinstance(message, dict) else message
        await anyio.to_thread.run_sync(self.conn.send, data)

    async def recv(self, timeout: float = 10) -> str | bytes:
        return await anyio.to_thread.run_sync(lambda: self.conn.recv(timeout=timeout))

    async def recv_json(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            message = await self.recv(timeout)
            if isinstance(message, str):
                value: dict[str, Any] = json.loads(message)
                return value

    async def frames_until(self, kind: str, timeout: float = 10) -> list[dict[str, Any]]:
        out = []
        while True:
            frame = await self.recv_json(timeout)
            out.append(frame)
            if frame["type"] in (kind, "error"):
                return out

    async def closed(self, timeout: float = 10) -> bool:
        try:
            await self.recv(timeout)
        except ConnectionClosed:
            return True
        except TimeoutError:
            return False
        return False


@asynccontextmanager
async def peer(url: str, headers: dict[str, str]) -> AsyncIterator[Peer]:
    def open_in_thread() -> tuple[Any, ClientConnection]:
        # connect() does the blocking handshake itself: never on the event loop's thread
        # no keepalive pings: hypercorn (trio) can answer one while it closes the
        # connection, and trio refuses the two concurrent sends (an upstream race)
        manager = connect(
            url, additional_headers=headers, open_timeout=10, max_size=None, ping_interval=None
        )
        return manager, manager.__enter__()

    manager, conn = await anyio.to_thread.run_sync(open_in_thread)
    try:
        yield Peer(conn)
    finally:
        await anyio.to_thread.run_sync(manager.__exit__, None, None, None)


@asynccontextmanager
async def setup() -> AsyncIterator[tuple[wrenn_local.LocalServer, httpx.AsyncClient, str, str]]:
    async with (
        wrenn_local.serve(options=FAST, pty_ping_interval=0.3) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
        ) as http,
    ):
        cid = await new_capsule(http)
        ws_base = server.base_url.replace("http://", "ws://") + f"/v1/capsules/{cid}"
        yield server, http, cid, ws_base


async def test_exec_stream() -> None:
    async with (
        setup() as (server, _, _, base),
        peer(base + "/exec/stream", {"X-API-Key": server.api_key}) as ws,
    ):
        await ws.send(
            {
                "type": "start",
                "cmd": "/bin/sh",
                "args": ["-c", "echo out; echo err >&2; echo é$X; exit 5"],
                "envs": {"X": "x"},
                "cwd": "/tmp",
            }
        )
        frames = await ws.frames_until("exit")
        assert frames[0]["type"] == "start"
        assert frames[0]["pid"] > 0
        out = "".join(f["data"] for f in frames if f["type"] == "stdout")
        err = "".join(f["data"] for f in frames if f["type"] == "stderr")
        assert (out, err) == ("out\né\u0078\n".replace("\u0078", "x"), "err\n")
        assert frames[-1] == {"type": "exit", "exit_code": 5}
        assert await ws.closed()


async def test_exec_stream_errors_and_auth() -> None:
    async with setup() as (server, http, cid, base):
        key = {"X-API-Key": server.api_key}
        async with peer(base + "/exec/stream", key) as ws:
            await ws.send({"type": "nope"})
            frame = await ws.recv_json()
            assert frame == {
                "type": "error",
                "data": "first message must be type 'start' with a 'cmd' field",
            }
            assert await ws.closed()
        # a wrong key still gets the 101, then an in-band error and the close (§2.2)
        async with peer(base + "/exec/stream", {"X-API-Key": "wrn_" + "0" * 32}) as ws:
            await ws.send({"type": "start", "cmd": "true"})
            assert await ws.recv_json() == {"type": "error", "data": "authentication failed"}
            assert await ws.closed()
        # a browser-style JWT in the first frame works
        await http.post(
            "/v1/auth/signup", json={"email": "w@x.io", "password": "12345678", "name": "W"}
        )
        token = (
            await http.post("/v1/auth/login", json={"email": "w@x.io", "password": "12345678"})
        ).json()["token"]
        async with peer(base + "/exec/stream", {}) as ws:
            await ws.send({"type": "auth", "token": token})
            # W's team does not own the capsule: authenticated, but not found for W
            assert await ws.recv_json() == {"type": "error", "data": "capsule not found"}
        with pytest.raises(InvalidStatus) as info:
            async with peer(base.replace(cid, "cl-bad") + "/exec/stream", key):
                pass
        assert info.value.response.status_code == 400
        await http.post(f"/v1/capsules/{cid}/pause")
        with anyio.fail_after(10):
            while (await http.get(f"/v1/capsules/{cid}")).json()["status"] != "paused":
                await anyio.sleep(0.05)
        async with peer(base + "/exec/stream", key) as ws:
            frame = await ws.recv_json()
            assert frame["data"] == "capsule is not running (status: paused)"


async def test_stop_detaches_without_killing() -> None:
    async with (
        setup() as (server, http, cid, base),
        peer(base + "/exec/stream", {"X-API-Key": server.api_key}) as ws,
    ):
        await ws.send(
            {
                "type": "start",
                "cmd": "/bin/sh",
                "args": ["-c", "sleep 1; echo finished > /tmp/done"],
            }
        )
        assert (await ws.recv_json())["type"] == "start"
        await ws.send({"type": "stop"})
        assert await ws.closed()
        await anyio.sleep(1.5)
        assert (await sh(http, cid, "cat /tmp/done"))["stdout"] == "finished\n"


async def test_process_attach() -> None:
    async with setup() as (server, http, cid, base):
        key = {"X-API-Key": server.api_key}
        await sh(
            http,
            cid,
            "i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.05; done",
            background=True,
            tag="ticker",
        )
        async with peer(base + "/processes/ticker/stream", key) as ws:
            start = await ws.recv_json()
            assert start["type"] == "start"
            ticks = [await ws.recv_json() for _ in range(3)]
            assert all(t["type"] == "stdout" and t["data"].startswith("tick") for t in ticks)
            await http.delete(f"/v1/capsules/{cid}/processes/ticker")
            frames = await ws.frames_until("exit")
            assert frames[-1] == {"type": "exit", "exit_code": -1}
        async with peer(base + "/processes/nobody/stream", key) as ws:
            assert await ws.recv_json() == {"type": "error", "data": "process not found"}
            assert await ws.closed()


async def _read_until(ws: Peer, needle: bytes, timeout: float = 10) -> bytes:
    seen = b""
    with anyio.fail_after(timeout):
        while needle not in seen:
            message = await ws.recv(timeout)
            if isinstance(message, bytes):
                seen += message
    return seen


async def test_pty_session_resize_reattach_and_exit() -> None:
    async with setup() as (server, _, _, base):
        key = {"X-API-Key": server.api_key}
        async with peer(base + "/pty", key) as ws:
            await ws.send(
                {"type": "start", "cmd": "/bin/bash", "cols": 80, "rows": 24, "envs": {"PS1": "$ "}}
            )
            started = await ws.recv_json()
            assert started["type"] == "started"
            assert started["tag"].startswith("pty-")
            tag = started["tag"]
            await ws.send(b"echo $((6*7))\n")
            assert b"42" in await _read_until(ws, b"42")
            await ws.send({"type": "resize", "cols": 120, "rows": 40})
            await ws.send(b"stty size\n")
            assert b"40 120" in await _read_until(ws, b"40 120")
            # legacy 0.2.0 framing: base64 text input
            await ws.send({"type": "input", "data": base64.b64encode(b"echo legacy\n").decode()})
            await _read_until(ws, b"legacy")
            # the server pings; answering is optional
            assert (await ws.recv_json())["type"] in ("ping",)
        # the shell outlived the socket: reattach by tag
        async with peer(base + "/pty", key) as ws:
            await ws.send({"type": "connect", "tag": tag})
            await ws.send(b"echo again\n")
            await _read_until(ws, b"again")
            await ws.send(b"exit 3\n")
            frames = await ws.frames_until("exit")
            assert frames[-1] == {"type": "exit", "exit_code": 3}
        async with peer(base + "/pty", key) as ws:
            await ws.send({"type": "connect", "tag": tag})
            frame = await ws.recv_json()
            assert frame["type"] == "error"
            assert frame["fatal"] is True
            assert await ws.closed()


async def test_pty_kill_and_bad_first_frames() -> None:
    async with setup() as (server, _, _, base):
        key = {"X-API-Key": server.api_key}
        async with peer(base + "/pty", key) as ws:
            await ws.send({"type": "start", "cmd": "/bin/sh"})
            assert (await ws.recv_json())["type"] == "started"
            await ws.send({"type": "kill"})
            frames = await ws.frames_until("exit")
            assert frames[-1] == {"type": "exit", "exit_code": -1}
        for first, data in (
            ({"type": "bogus"}, "first message must be type 'start' or 'connect'"),
            ({"type": "connect"}, "connect requires a 'tag' field"),
        ):
            async with peer(base + "/pty", key) as ws:
                await ws.send(first)
                assert await ws.recv_json() == {"type": "error", "data": data, "fatal": True}
        async with peer(base + "/pty", {"X-API-Key": "wrn_" + "1" * 32}) as ws:
            await ws.send({"type": "start"})
            assert await ws.recv_json() == {
                "type": "error",
                "data": "authentication failed",
                "fatal": True,
            }


async def test_pty_sizes_a_terminal_cannot_have() -> None:
    # a raw client can send what the SDK refuses: a start with one is refused, a resize
    # to one is dropped, and neither ends the session or the agent (it used to: 1011)
    async with setup() as (server, _, cid, base):
        key = {"X-API-Key": server.api_key}
        for cols, rows in ((70000, 24), (80, 65536), (True, 24), (-3, 24)):
            async with peer(base + "/pty", key) as ws:
                await ws.send({"type": "start", "cmd": "/bin/sh", "cols": cols, "rows": rows})
                assert await ws.recv_json() == {
                    "type": "error",
                    "data": "cols and rows must be 1 to 65535",
                    "fatal": True,
                }
        async with peer(base + "/pty", key) as ws:
            await ws.send({"type": "start", "cmd": "/bin/sh", "cols": 100, "rows": 30})
            assert (await ws.recv_json())["type"] == "started"
            resizes: list[tuple[object, object]] = [
                (65536, 10),
                (10, 70000),
                (True, 10),
                (0, 10),
                ("x", 10),
            ]
            for wide, high in resizes:
                await ws.send({"type": "resize", "cols": wide, "rows": high})
            await ws.send(b"stty size\n")
            await _read_until(ws, b"30 100")
            await ws.send(b"exit 6\n")
            frames = await ws.frames_until("exit")
            assert frames[-1] == {"type": "exit", "exit_code": 6}

        # the agent itself, below the server's checks: sizes clamped to what a winsize holds
        record = server.capsules.capsules[cid]
        assert record.sandbox is not None
        agent = record.sandbox.agent
        async with agent.pty_start(
            "/bin/sh", args=[], envs={"PS1": ""}, cwd=None, cols=70000, rows=-5
        ) as term:
            await term.write(b"stty size\n")
            seen = b""
            with anyio.fail_after(10):
                while b"1 65535" not in seen:
                    got = await term.next()
                    assert isinstance(got, bytes), (got, seen)
                    seen += got
            raw: list[tuple[object, object]] = [(65536, 70000), ("x", 5), (None, None)]
            for wide, high in raw:
                await term.resize(wide, high)  # type: ignore[arg-type]
            await term.write(b"stty size; exit 2\n")
            seen = b""
            with anyio.fail_after(10):
                while True:
                    got = await term.next()
                    if not isinstance(got, bytes):
                        break
                    seen += got
            assert b"65535 65535" in seen
            assert got is not None
            assert got.exit_code == 2
