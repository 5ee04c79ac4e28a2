"""Uploads and downloads through the real local server: exact bytes at every chunk and
batch boundary, on the Content-Length path (bytes, regular files) and the chunked path
(iterables), through the async API on both backends and through the sync API; cancelled
transfers leave no connection busy; on asyncio before 3.12 connections write and read
the socket directly (wrenn._transport.direct)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.fakeapi import FakeAPI
from tests.localserver import server_process
from wrenn import AsyncWrennClient, WrennClient, WrennValidationError
from wrenn._files import FILE_READ, STREAM_THRESHOLD
from wrenn._sync.files import BATCH_BYTES
from wrenn._transport.direct import YIELD_BYTES

KEY = "wrn_" + "x" * 32
KIB = 1024
MIB = 1024 * KIB
# every boundary a transfer has: the agent's 64/256 KiB chunks, the file reads (1 MiB),
# the direct stream's yield budget (1 MiB), the sync batches (4 MiB), the single-request
# threshold (8 MiB)
EDGES = sorted(
    {
        edge + delta
        for edge in (64 * KIB, 256 * KIB, FILE_READ, YIELD_BYTES, BATCH_BYTES, STREAM_THRESHOLD)
        for delta in (-1, 0, 1)
    }
)
SIZES = [0, 1, *EDGES, 9 * MIB + 3]


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def _data(size: int) -> bytes:
    return os.urandom(size)


def _pool(client: Any) -> Any:
    return client._session.http.client._transport._pool


def _busy(client: Any) -> list[Any]:
    return [c for c in _pool(client).connections if not c.is_idle() and not c.is_closed()]


async def _odd_chunks(data: bytes) -> AsyncIterator[bytes]:
    # chunk sizes that line up with no boundary, one of them empty
    view, start, step = memoryview(data), 0, 1
    while start < len(view):
        yield bytes(view[start : start + step])
        start += step
        step = step * 7 + 3 if step < 3 * MIB else step + 1
    yield b""


async def test_uploads_and_downloads_are_exact_at_every_boundary(
    server: dict[str, str], tmp_path: Path
) -> None:
    big = _data(max(SIZES))
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        for size in SIZES:
            data = big[:size]
            local = tmp_path / "f.bin"
            local.write_bytes(data)
            with local.open("rb") as fh:
                await cap.files.write("by-file.bin", fh)  # Content-Length, read 1 MiB at a time
            await cap.files.write("by-bytes.bin", data)  # > 8 MiB: Content-Length, one piece
            await cap.files.write("by-chunks.bin", _odd_chunks(data))  # chunked encoding
            for name in ("by-file.bin", "by-bytes.bin", "by-chunks.bin"):
                async with cap.files.read_stream(name, chunk_size=256 * KIB) as chunks:
                    got = b"".join([chunk async for chunk in chunks])
                assert len(got) == size, (name, size)
                assert got == data, (name, size)
        assert _busy(c) == []


async def test_a_file_object_is_sent_from_its_position(
    server: dict[str, str], tmp_path: Path
) -> None:
    data = _data(STREAM_THRESHOLD + 5)
    local = tmp_path / "f.bin"
    local.write_bytes(data)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        with local.open("rb") as fh:
            fh.seek(1000)
            await cap.files.write("tail.bin", fh)
        await cap.files.write("buffer.bin", io.BytesIO(data))  # no descriptor: chunked
        assert await cap.files.read("tail.bin", format="bytes") == data[1000:]
        assert await cap.files.read("buffer.bin", format="bytes") == data


async def test_sizes_that_do_not_match_the_data_are_refused_and_nothing_is_written(
    server: dict[str, str],
) -> None:
    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b"x" * 1000

    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        cid = cap.capsule_id
        with pytest.raises(WrennValidationError, match="grew past"):
            await c.files.write_stream(cid, "more.bin", chunks(3), size=2500)
        with pytest.raises(WrennValidationError, match="ended after 2000 of 2500"):
            await c.files.write_stream(cid, "less.bin", chunks(2), size=2500)
        assert not await cap.files.exists("more.bin")
        assert not await cap.files.exists("less.bin")
        await c.files.write_stream(cid, "exact.bin", chunks(3), size=3000)
        assert await cap.files.read("exact.bin", format="bytes") == b"x" * 3000
        assert _busy(c) == []


async def test_a_known_size_goes_as_content_length_and_an_unknown_one_chunked(
    fake_api: FakeAPI,
) -> None:
    # A fake server, because the real one does not report how a request body was framed.
    seen: list[tuple[str | None, str | None, int]] = []

    async def handler(request: Request) -> Response:
        body = await request.body()
        seen.append(
            (
                request.headers.get("content-length"),
                request.headers.get("transfer-encoding"),
                len(body),
            )
        )
        return Response(status_code=204)

    fake_api.on("POST", "/v1/capsules/cl-1/files/stream/write", handler)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a" * 10
        yield b"b" * 20

    async with AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url) as client:
        await client.files.write_stream("cl-1", "f.bin", chunks(), size=30)
        await client.files.write_stream("cl-1", "f.bin", chunks())
    (length, encoding, size), (length2, encoding2, size2) = seen
    assert encoding is None
    assert length == str(size)
    assert size > 30
    assert encoding2 == "chunked"
    assert length2 is None
    assert size2 == size


async def test_a_cancelled_upload_leaves_no_connection_busy_and_no_file(
    server: dict[str, str],
) -> None:
    started = anyio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"x" * (4 * MIB)  # bigger than the socket buffers: part of it has to wait
        started.set()
        await anyio.sleep_forever()
        yield b""

    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        big = _data(48 * MIB)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cap.files.write, "stalled.bin", stalls())
                await started.wait()
                tg.cancel_scope.cancel()
            # and cancelled in the middle of a large write (the socket full, waiting)
            with anyio.move_on_after(0.05):
                await cap.files.write("halfway.bin", big)
            assert _busy(c) == []
            assert not await cap.files.exists("stalled.bin")
            for _ in range(3):
                await cap.files.write("after.bin", b"fine")
                assert await cap.files.read("after.bin") == "fine"
        assert _busy(c) == []


async def test_a_download_left_midway_releases_its_connection(server: dict[str, str]) -> None:
    data = _data(16 * MIB)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        await cap.files.write("big.bin", data)
        with anyio.fail_after(30):
            for _ in range(3):
                async with cap.files.read_stream("big.bin") as chunks:
                    await anext(chunks)  # the rest is still on its way
                with anyio.move_on_after(0.01):  # and cancelled while waiting for bytes
                    async with cap.files.read_stream("big.bin", chunk_size=64 * KIB) as chunks:
                        async for _ in chunks:
                            pass
                assert _busy(c) == []
            async with cap.files.read_stream("big.bin") as chunks:
                assert b"".join([chunk async for chunk in chunks]) == data


async def test_connections_use_direct_socket_io_where_the_transport_would_copy(
    server: dict[str, str], anyio_backend_name: str
) -> None:
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        # a whole-file (multipart) write goes through httpcore2's pool (small calls take
        # the fast path's own connections, streamed uploads and downloads sockets of
        # their own: wrenn._transport.upload and .offload)
        await cap.files.write("whole.bin", b"whole" * 1000)
        streams = [type(conn._connection._network_stream).__name__ for conn in _pool(c).connections]
    direct = anyio_backend_name == "asyncio" and sys.version_info < (3, 12)
    assert streams
    assert all((name == "_DirectWriteStream") == direct for name in streams), streams


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_uploads_and_downloads_are_exact(
    server: dict[str, str], backend: Any, tmp_path: Path
) -> None:
    sizes = [0, 1, BATCH_BYTES - 1, BATCH_BYTES, BATCH_BYTES + 1, STREAM_THRESHOLD + 1]
    big = _data(max(sizes))
    with (
        WrennClient(
            api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"], backend=backend
        ) as client,
        client.capsule() as cap,
    ):
        for size in sizes:
            data = big[:size]
            local = tmp_path / "f.bin"
            local.write_bytes(data)
            with local.open("rb") as fh:
                cap.files.write("by-file.bin", fh)
            cap.files.write("by-bytes.bin", data)
            cap.files.write(
                "by-chunks.bin", (data[i : i + 300_001] for i in range(0, size, 300_001))
            )
            for name in ("by-file.bin", "by-bytes.bin", "by-chunks.bin"):
                with cap.files.read_stream(name, chunk_size=MIB) as chunks:
                    got = b"".join(chunks)
                assert got == data, (name, size)
