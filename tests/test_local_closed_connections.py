"""A client that closes its connection to the local server leaves nothing there.

Hypercorn (0.18) kept a connection its client had closed while idle until the server's
keep-alive timeout (30 s): its socket sat in CLOSE_WAIT, one descriptor per client that
went away, so a program that opens and closes clients in a loop (or a CLI run per
command) made the server hold hundreds (``_asgi._peer_gone_lets_the_connection_go``).
Each kind of connection here is closed by its client and must be gone from the server
(this process: server and client both live here) well within that timeout.
"""

from __future__ import annotations

import anyio
import pytest

from tests.descriptors import fd_targets, open_fds, settled_fds
from tests.localserver import local_http, new_capsule
from wrenn import AsyncWrennClient

pytestmark = pytest.mark.anyio

GONE_WITHIN = 3.0  # seconds; the keep-alive timeout it used to wait for is 30


async def raw_request(port: int, key: str) -> None:
    """One keep-alive HTTP/1.1 request by hand, its answer read, then the socket closed."""
    async with await anyio.connect_tcp("127.0.0.1", port) as sock:
        await sock.send(
            b"GET /v1/capsules HTTP/1.1\r\nHost: localhost\r\n"
            b"X-API-Key: " + key.encode() + b"\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await sock.receive()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


@pytest.mark.parametrize("kind", ["raw", "run", "stream"])
async def test_a_connection_its_client_closed_is_let_go_at_once(kind: str) -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        await anyio.sleep(0.2)
        fds, before = open_fds(), fd_targets()
        for _ in range(3):
            if kind == "raw":
                port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
                await raw_request(port, server.api_key)
                continue
            async with AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as c:
                cap = await c.connect(cid)
                if kind == "run":
                    assert (await cap.commands.run("echo hi")).stdout == "hi\n"
                else:
                    async with cap.commands.stream("echo hi") as run:
                        async for _event in run:
                            pass
        left = await settled_fds(fds, within=GONE_WITHIN)
        assert left <= fds, fd_targets() - before
