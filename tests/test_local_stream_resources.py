"""What an open stream holds in the local server is let go of when it ends, however it ends.

The client here is a raw WebSocket (wsproto over a TCP socket, in this process) so that it
can vanish the way a crashed or unplugged client does: the socket closed, or reset, with
no close frame. The server runs in this process too, so its tasks and fds are counted
directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from collections import Counter
from typing import Any

import anyio
import anyio.abc
import httpx
from starlette.websockets import WebSocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

import wrenn_local
from tests.descriptors import open_fds
from tests.localserver import local_http, new_capsule
from wrenn_local._app import WrennApp


class RawStream:
    """One exec stream over a bare socket: the client side of PROTOCOL §7, by hand."""

    def __init__(self, sock: anyio.abc.SocketStream, conn: WSConnection) -> None:
        self.sock = sock
        self.conn = conn
        self.pid = 0

    @classmethod
    async def upgrade(cls, server: wrenn_local.LocalServer, path: str) -> tuple[RawStream, Any]:
        """Ask for the upgrade of ``path``; the stream and the server's first event."""
        sock = await anyio.connect_tcp(server.host, server.port)
        conn = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=f"{server.host}:{server.port}",
            target=path,
            extra_headers=[(b"x-api-key", server.api_key.encode())],
        )
        await sock.send(conn.send(request))
        stream = cls(sock, conn)
        return stream, await stream._next_event()

    @classmethod
    async def open(cls, server: wrenn_local.LocalServer, path: str) -> RawStream:
        stream, event = await cls.upgrade(server, path)
        assert isinstance(event, AcceptConnection), event
        return stream

    async def _next_event(self) -> Any:
        while True:
            for event in self.conn.events():
                return event
            self.conn.receive_data(await self.sock.receive())

    async def send(self, frame: dict[str, Any]) -> None:
        await self.sock.send(self.conn.send(TextMessage(data=json.dumps(frame))))

    async def frame(self) -> dict[str, Any] | None:
        """The next JSON frame, ``None`` once the server closed."""
        text = ""
        while True:
            event = await self._next_event()
            if isinstance(event, CloseConnection):
                return None
            if isinstance(event, TextMessage):
                text += event.data
                if event.message_finished:
                    value: dict[str, Any] = json.loads(text)
                    return value

    async def start(self, cmd: str, *args: str) -> int:
        await self.send({"type": "start", "cmd": cmd, "args": list(args)})
        first = await self.frame()
        assert first is not None
        assert first["type"] == "start", first
        self.pid = int(first["pid"])
        return self.pid

    async def vanish(self, *, reset: bool) -> None:
        """Go away without a close frame: FIN, or (``reset``) RST."""
        if reset:
            raw = self.sock.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.sock.aclose()

    async def close(self) -> None:
        """The clean way: a close frame, then the server's close frame."""
        await self.sock.send(self.conn.send(CloseConnection(code=1000)))
        with anyio.move_on_after(10):
            while await self.frame() is not None:
                pass
        await self.sock.aclose()


async def _quiet_counts() -> tuple[int, int]:
    """Tasks and fds once neither has changed for a while (the warm stream's last
    tasks ending), bounded."""
    last = (len(anyio.get_running_tasks()), open_fds())
    with anyio.move_on_after(5):
        steady = 0
        while steady < 5:
            await anyio.sleep(0.05)
            now = (len(anyio.get_running_tasks()), open_fds())
            steady = steady + 1 if now == last else 0
            last = now
    return last


def _task_names() -> Counter[str]:
    """The running tasks by name: what a failed count shows (the ones left over)."""
    return Counter(task.name or "?" for task in anyio.get_running_tasks())


def _fd_targets() -> Counter[str]:
    """This process's descriptors by what they point at (``socket:[…]`` as ``socket``)."""
    found: Counter[str] = Counter()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[os.readlink(f"/proc/self/fd/{fd}").split(":[")[0]] += 1
    return found


async def _running(http: httpx.AsyncClient, cid: str) -> set[int]:
    resp = await http.get(f"/v1/capsules/{cid}/processes")
    assert resp.status_code == 200, resp.text
    return {int(p["pid"]) for p in resp.json()["processes"]}


async def _settle(
    http: httpx.AsyncClient, cid: str, pids: set[int], tasks: int, fds: int
) -> tuple[set[int], int, int]:
    """Wait (bounded) until the pids are gone and tasks and fds are back where they were;
    returns what was left when the wait ended."""
    left = (pids, len(anyio.get_running_tasks()), open_fds())
    with anyio.move_on_after(15):
        while True:
            left = (pids & await _running(http, cid), len(anyio.get_running_tasks()), open_fds())
            if not left[0] and left[1] <= tasks and left[2] <= fds:
                break
            await anyio.sleep(0.05)
    return left


async def test_a_client_that_vanishes_without_a_close_frame_releases_its_process() -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        path = f"/v1/capsules/{cid}/exec/stream"
        # warm: the first stream loads what later ones reuse
        warm = await RawStream.open(server, path)
        await warm.start("true")
        await warm.close()
        tasks, fds = await _quiet_counts()
        pids = set()
        for reset in (False, True):
            stream = await RawStream.open(server, path)
            pid = await stream.start("sleep", "300")
            assert pid in await _running(http, cid)
            pids.add(pid)
            await stream.vanish(reset=reset)
        left = await _settle(http, cid, pids, tasks, fds)
        assert left == (set(), tasks, fds)


async def test_many_streams_opened_and_closed_leave_tasks_and_fds_where_they_started() -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        path = f"/v1/capsules/{cid}/exec/stream"
        warm = await RawStream.open(server, path)
        await warm.start("true")
        await warm.close()
        tasks, fds = await _quiet_counts()
        names, targets = _task_names(), _fd_targets()
        streams: list[RawStream] = []
        for i in range(24):  # under /v1 and /api/v1 alike
            stream = await RawStream.open(server, path if i % 2 else "/api" + path)
            await stream.start("sleep", "300")
            streams.append(stream)
        pids = {s.pid for s in streams}
        assert len(pids) == len(streams)
        assert pids <= await _running(http, cid)
        assert len(anyio.get_running_tasks()) > tasks  # they are open, holding their tasks

        async def end(i: int, stream: RawStream) -> None:
            # a third close cleanly, a third vanish (FIN), a third reset (RST)
            if i % 3 == 0:
                await stream.close()
            else:
                await stream.vanish(reset=i % 3 == 1)

        async with anyio.create_task_group() as tg:
            for i, stream in enumerate(streams):
                tg.start_soon(end, i, stream)
        left = await _settle(http, cid, pids, tasks, fds)
        extra = (_task_names() - names, _fd_targets() - targets)
        assert left == (set(), tasks, fds), extra


async def test_streams_under_api_and_unknown_paths_route_as_before() -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        stream = await RawStream.open(server, f"/api/v1/capsules/{cid}/exec/stream")
        await stream.send({"type": "start", "cmd": "/bin/sh", "args": ["-c", "echo hi"]})
        frames = []
        while (frame := await stream.frame()) is not None:
            frames.append(frame)
        assert [f["type"] for f in frames] == ["start", "stdout", "exit"]
        assert frames[1]["data"] == "hi\n"
        await stream.sock.aclose()
        # a path no route serves is still refused before the upgrade (Starlette's answer)
        for path in (f"/v1/capsules/{cid}/exec/streams", f"/api/v2/capsules/{cid}/exec/stream"):
            refused, event = await RawStream.upgrade(server, path)
            assert isinstance(event, RejectConnection), event
            await refused.sock.aclose()


async def test_the_app_hands_websocket_routes_their_params_and_itself() -> None:
    # A route table of one fake endpoint: what the app passes it is the point here, and
    # a real peer cannot observe the scope an endpoint gets.
    from starlette.routing import WebSocketRoute

    seen: list[WebSocket] = []

    async def endpoint(ws: WebSocket) -> None:
        seen.append(ws)

    route = WebSocketRoute("/v1/capsules/{id}/x", endpoint)
    app = WrennApp(websockets=[route], routes=[route])

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        pass

    for path in ("/v1/capsules/cl-1/x", "/api/v1/capsules/cl-2/x"):
        scope: dict[str, Any] = {"type": "websocket", "path": path, "root_path": "", "headers": []}
        await app(scope, receive, send)
    assert [ws.path_params for ws in seen] == [{"id": "cl-1"}, {"id": "cl-2"}]
    assert all(ws.app is app for ws in seen)
