"""Bulk bytes: downloads hand chunks on as they arrive, never larger than asked, and the
sync API crosses into its event loop once per batch of chunks, not once per chunk."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

import wrenn_local
from tests.fakeapi import FakeAPI
from tests.localserver import FAST, server_process
from wrenn import AsyncWrennClient, WrennClient, WrennConnectionError, WrennValidationError
from wrenn._sync.files import BATCH_BYTES, _Batches
from wrenn._sync.portal import PortalRunner

KEY = "wrn_" + "x" * 32


async def test_a_download_hands_on_each_chunk_as_it_arrives(fake_api: FakeAPI) -> None:
    # A fake server, because a real one cannot be told to hold the rest of a body until
    # the client has shown it received the first bytes.
    first_seen = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await first_seen.wait()
        yield b"b" * 3000

    async def handler(_: Request) -> Response:
        return StreamingResponse(body(), media_type="application/octet-stream")

    fake_api.on("POST", "/v1/capsules/cl-1/files/stream/read", handler)
    async with AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url) as client:
        # a re-chunker waiting to fill 1 MiB would never hand over the first 1000 bytes
        with anyio.fail_after(20):
            async with client.files.read_stream("cl-1", "f.bin", chunk_size=1 << 20) as chunks:
                first = await anext(chunks)
                first_seen.set()
                rest = [chunk async for chunk in chunks]
    assert first == b"a" * 1000
    assert b"".join(rest) == b"b" * 3000


async def test_chunks_are_never_larger_than_asked() -> None:
    data = os.urandom(700_000)
    async with (
        wrenn_local.serve(options=FAST) as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
        client.capsule() as cap,
    ):
        await cap.files.write("d.bin", data)
        for size in (10_000, 256 * 1024, 4 << 20):
            async with cap.files.read_stream("d.bin", chunk_size=size) as chunks:
                got = [chunk async for chunk in chunks]
            assert all(0 < len(chunk) <= size for chunk in got)
            assert b"".join(got) == data
        with pytest.raises(WrennValidationError, match="chunk_size"):
            async with cap.files.read_stream("d.bin", chunk_size=0) as chunks:
                pass


async def test_a_batch_keeps_the_chunks_before_a_failure() -> None:
    async def breaks_off() -> AsyncIterator[bytes]:
        yield b"one"
        yield b"two"
        raise WrennConnectionError("the body broke off")

    batches = _Batches(breaks_off())
    assert await batches.next_batch() == [b"one", b"two"]
    with pytest.raises(WrennConnectionError, match="broke off"):
        await batches.next_batch()


async def test_a_batch_is_about_batch_bytes() -> None:
    async def many() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * (BATCH_BYTES // 4)

    batches = _Batches(many())
    sizes = []
    while batch := await batches.next_batch():
        sizes.append(len(batch))
    assert sizes == [4, 4, 2]


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_sync_download_crosses_into_the_loop_once_per_batch(
    server: dict[str, str], backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(9 << 20)
    with (
        WrennClient(
            api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"], backend=backend
        ) as client,
        client.capsule() as cap,
    ):
        cap.files.write("big.bin", data)
        crossings = 0
        call = PortalRunner.call

        def counted(self: PortalRunner, fn: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal crossings
            crossings += 1
            return call(self, fn, *args, **kwargs)

        # instrumentation, not a stand-in: the real crossing still runs
        monkeypatch.setattr(PortalRunner, "call", counted)
        with cap.files.read_stream("big.bin", chunk_size=64 * 1024) as chunks:
            got = list(chunks)
        monkeypatch.undo()
    assert b"".join(got) == data
    assert max(len(chunk) for chunk in got) <= 64 * 1024
    # 9 MiB in 64 KiB chunks is 144 chunks; batches of about 4 MiB take 3 crossings and
    # one more to find the end
    assert crossings <= 4, crossings


async def test_chunk_size_is_a_whole_number_of_bytes(client: AsyncWrennClient) -> None:
    # before: 1.5 gave an ExceptionGroup[TypeError] (async) or a TypeError (sync), None
    # and "3" a TypeError; refused before any request (a missing file would say so)
    async with client.capsule() as cap:
        await cap.files.write("d.bin", b"abc")
        bad_sizes: list[Any] = [1.5, None, "3", True, False, 0, -1]
        for bad in bad_sizes:
            for path in ("d.bin", "/no/such/file"):
                with pytest.raises(WrennValidationError, match="chunk_size"):
                    async with cap.files.read_stream(path, chunk_size=bad) as chunks:
                        raise AssertionError(chunks)
                with pytest.raises(WrennValidationError, match="chunk_size"):
                    reading = client.files.read_stream(cap.capsule_id, path, chunk_size=bad)
                    async with reading as chunks:
                        raise AssertionError(chunks)
                with pytest.raises(WrennValidationError, match="chunk_size"):
                    async for chunk in cap.files.download_stream(path, chunk_size=bad):
                        raise AssertionError(chunk)
        async with cap.files.read_stream("d.bin", chunk_size=1) as chunks:
            assert [chunk async for chunk in chunks] == [b"a", b"b", b"c"]


def test_body_chunks_refuse_a_bad_chunk_size() -> None:
    from wrenn._transport.http import BodyChunks

    for bad in (1.5, None, "3", True, 0):
        with pytest.raises(WrennValidationError, match="chunk_size"):
            BodyChunks(None, bad, "read")  # type: ignore[arg-type]
