"""Streamed uploads and downloads moved by a worker thread (wrenn._transport.offload):
exact bytes through the real local server, cancellation at many points (the cancellation
comes out, the socket and the worker are released, the next transfer works), and
servers that stall or break off (a small hostile server over a real socket: the real one
cannot be told to stall mid-body)."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import anyio.abc
import pytest

import wrenn._transport.offload as offload
from tests.descriptors import open_fds, settled_fds
from tests.localserver import server_process
from wrenn import (
    AsyncWrennClient,
    WrennConnectionError,
    WrennNotFoundError,
    WrennTimeoutError,
)

KEY = "wrn_" + "x" * 32
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _chunks(data: bytes, step: int = MIB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]


async def test_large_random_bytes_round_trip_exactly_through_the_thread(
    server: dict[str, str], anyio_backend_name: str
) -> None:
    data = os.urandom(24 * MIB + 12345)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        # plain HTTP, our own transport, asyncio: offloaded (trio: the event-loop path)
        assert (c.files._offload() is not None) == (anyio_backend_name == "asyncio")
        await cap.files.write("chunked.bin", _chunks(data, 3 * MIB + 7))  # chunked
        await cap.files.write("sized.bin", data)  # Content-Length
        for name in ("chunked.bin", "sized.bin"):
            async with cap.files.read_stream(name, chunk_size=100_000) as pieces:
                got = [piece async for piece in pieces]
            assert max(map(len, got)) <= 100_000
            assert b"".join(got) == data


@pytest.mark.parametrize("direction", ["upload", "download"])
async def test_cancelled_at_many_points_the_cancellation_comes_out_and_nothing_leaks(
    server: dict[str, str], direction: str
) -> None:
    data = os.urandom(8 * MIB)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        await cap.files.write("big.bin", data)

        async def transfer(after: int) -> None:
            # cancelled by itself after `after` chunks (0: before the first one)
            with anyio.CancelScope() as scope:
                if direction == "upload":

                    async def source() -> AsyncIterator[bytes]:
                        for i in range(0, len(data), MIB):
                            if i == after * MIB:
                                scope.cancel()
                            yield data[i : i + MIB]

                    await cap.files.write("up.bin", source())
                else:
                    async with cap.files.read_stream("big.bin", chunk_size=256 * 1024) as pieces:
                        n = 0
                        async for _ in pieces:
                            n += 1
                            if n == after:
                                scope.cancel()
                        if after == 0:
                            scope.cancel()
                await anyio.lowlevel.checkpoint()  # a cancellation after the last piece
            assert scope.cancelled_caught == (after < 10_000)  # it came out, no WrennError

        await transfer(10_000)  # a complete one first: the worker pool is warm
        fds, threads = open_fds(), threading.active_count()
        for after in (0, 1, 2, 3, 5, 7, 9, 31, 32) if direction == "download" else range(8):
            await transfer(after)
            assert await settled_fds(fds) <= fds
            # and the next transfer on the same client works
            async with cap.files.read_stream("big.bin") as pieces:
                assert b"".join([p async for p in pieces]) == data
        assert await settled_fds(fds) <= fds
        assert threading.active_count() <= threads + 1  # workers are reused, none stuck
        if direction == "upload":
            await cap.files.write("up.bin", _chunks(data))
            assert await cap.files.read("up.bin", format="bytes") == data


async def test_a_large_write_cancelled_at_many_points_leaves_nothing_behind(
    server: dict[str, str],
) -> None:
    data = os.urandom(32 * MIB)  # one buffer: sent by one blocking sendall in a worker
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        await cap.files.write("warm.bin", data)
        # the small calls below keep their idle keep-alive connections (the fast path's
        # pool and httpcore2's): open them before counting, so only transfers are counted
        assert await cap.files.exists("warm.bin")
        assert await cap.files.read("warm.bin", format="bytes") == data
        await cap.files.remove("warm.bin")
        await cap.files.write("next.bin", b"fine")
        fds, threads = open_fds(), threading.active_count()
        for delay in (0, 0.0005, 0.002, 0.005, 0.01, 0.03, 0.06):
            with anyio.move_on_after(delay) as scope:
                await cap.files.write("cut.bin", data)
            if scope.cancelled_caught and await cap.files.exists("cut.bin"):
                # cut after the last byte went: whole; before: the server kept nothing
                assert await cap.files.read("cut.bin", format="bytes") == data
                await cap.files.remove("cut.bin")
            assert await settled_fds(fds) <= fds
            await cap.files.write("next.bin", b"fine")  # the next transfer works
        assert threading.active_count() <= threads + 1
        await cap.files.write("cut.bin", data)
        assert await cap.files.read("cut.bin", format="bytes") == data


# --- a hostile server ------------------------------------------------------------------


async def _hostile(
    behaviour: Callable[[anyio.abc.SocketStream], Awaitable[None]],
    test: Callable[[AsyncWrennClient], Awaitable[None]],
) -> None:
    async with anyio.create_task_group() as tg:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await behaviour(stream)

        async def serve() -> None:
            async with listener:
                await listener.serve(handle)

        tg.start_soon(serve)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with AsyncWrennClient(api_key=KEY, base_url=f"http://127.0.0.1:{port}") as c:
            await test(c)
        tg.cancel_scope.cancel()


async def _read_head(stream: anyio.abc.SocketStream) -> bytes:
    got = b""
    while b"\r\n\r\n" not in got:
        got += await stream.receive()
    return got


@pytest.fixture
def asyncio_only(anyio_backend_name: str) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("transfers are offloaded under asyncio only (trio: the event-loop path)")


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch, asyncio_only: None) -> None:
    # the socket's bound on each wait (60 s in use): short, so a stall fails fast
    monkeypatch.setattr(offload, "SOCKET_WAIT", 0.5)


async def test_a_download_that_stalls_mid_body_times_out(short_wait: None) -> None:
    async def stall(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789")
        await anyio.sleep_forever()

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(10), pytest.raises(WrennTimeoutError):
            async with c.files.read_stream("cl-1", "f.bin") as pieces:
                async for _ in pieces:
                    pass

    await _hostile(stall, test)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n",
    ],
)
async def test_a_download_that_breaks_off_raises_a_connection_error(
    answer: bytes, asyncio_only: None
) -> None:
    async def breaks(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.send(answer)
        await stream.aclose()

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(10), pytest.raises(WrennConnectionError):
            async with c.files.read_stream("cl-1", "f.bin") as pieces:
                async for _ in pieces:
                    pass

    await _hostile(breaks, test)


async def test_an_upload_the_server_stops_reading_times_out(short_wait: None) -> None:
    async def deaf(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await anyio.sleep_forever()  # reads nothing more: the client's socket fills up

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(10), pytest.raises(WrennTimeoutError):
            data = b"x" * (64 * MIB)
            await c.files._write_stream("cl-1", "f.bin", _once(data), size=len(data), whole=True)

    await _hostile(deaf, test)


async def test_an_early_error_answer_wins_over_the_broken_upload(asyncio_only: None) -> None:
    async def refuses(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        body = b'{"error":{"code":"not_found","message":"no such capsule"}}'
        await stream.send(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            + body
        )
        await stream.aclose()

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(10), pytest.raises(WrennNotFoundError):
            data = b"x" * (64 * MIB)
            await c.files._write_stream("cl-1", "f.bin", _once(data), size=len(data), whole=True)

    await _hostile(refuses, test)
