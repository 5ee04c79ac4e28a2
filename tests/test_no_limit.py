"""A client with no time limit at all (``timeout=None``, ``connect_timeout=math.inf``, or
any value of a billion seconds or more) works on every path: REST, the small calls' fast
path, exec streams over WebSocket, streamed and whole-file transfers, through the async
API on both backends and through the sync API. (Blocking sockets cannot wait ``inf``
seconds, and the WebSocket client once refused an infinite open timeout as a bad limit.)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator

import pytest

from tests.localserver import server_process
from wrenn import AsyncWrennClient, WrennClient

DATA = os.urandom(3 * 1024 * 1024 + 7)  # past the streaming thresholds


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


@pytest.mark.parametrize("timeouts", [(None, math.inf), (1e12, 1e300)])
async def test_the_async_api_with_no_time_limit(
    server: dict[str, str], timeouts: tuple[float | None, float]
) -> None:
    timeout, connect_timeout = timeouts
    async with (
        AsyncWrennClient(
            api_key=server["WRENN_API_KEY"],
            base_url=server["WRENN_BASE_URL"],
            timeout=timeout,
            connect_timeout=connect_timeout,
        ) as client,
        client.capsule() as cap,
    ):
        assert (await cap.commands.run("echo a")).stdout == "a\n"
        async with cap.commands.stream("echo b") as run:
            assert [event async for event in run]
        await cap.files.write("f.bin", DATA)
        assert await cap.files.read_bytes("f.bin") == DATA
        got = bytearray()
        async with cap.files.read_stream("f.bin") as parts:
            async for part in parts:
                got += part
        assert got == DATA


@pytest.mark.parametrize("timeouts", [(None, math.inf), (1e12, 1e300)])
def test_the_sync_api_with_no_time_limit(
    server: dict[str, str], timeouts: tuple[float | None, float]
) -> None:
    timeout, connect_timeout = timeouts
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # no socket left to the GC
        with (
            WrennClient(
                api_key=server["WRENN_API_KEY"],
                base_url=server["WRENN_BASE_URL"],
                timeout=timeout,
                connect_timeout=connect_timeout,
            ) as client,
            client.capsule() as cap,
        ):
            assert cap.commands.run("echo s").stdout == "s\n"
            with cap.commands.stream("echo t") as run:
                assert list(run)
            cap.files.write("f.bin", DATA)
            assert cap.files.read_bytes("f.bin") == DATA
            with cap.files.read_stream("f.bin") as parts:
                assert b"".join(parts) == DATA
