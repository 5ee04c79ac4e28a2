"""Streamed uploads and downloads moved by a thread (wrenn._transport.offload):
exact bytes through the real local server, cancellation at many points (the cancellation
comes out, the socket and the worker are released, the next transfer works), and
servers that stall or break off (a small hostile server over a real socket: the real one
cannot be told to stall mid-body)."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import wrenn
import wrenn._transport.offload as offload
from tests.descriptors import open_fds, settled_fds
from tests.localserver import server_process
from wrenn import (
    AsyncWrennClient,
    WrennConnectionError,
    WrennNotFoundError,
    WrennProtocolError,
    WrennTimeoutError,
)
from wrenn._transport.http import BodyChunks, httpx

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
    server: dict[str, str],
) -> None:
    data = os.urandom(24 * MIB + 12345)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        # plain HTTP, our own transport: downloads read by a thread (asyncio and trio)
        assert c.files._offload() is not None
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
    **options: Any,
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
        async with AsyncWrennClient(
            api_key=KEY, base_url=f"http://127.0.0.1:{port}", **options
        ) as c:
            await test(c)
        tg.cancel_scope.cancel()


async def _read_head(stream: anyio.abc.SocketStream) -> bytes:
    got = b""
    while b"\r\n\r\n" not in got:
        got += await stream.receive()
    return got


async def _until_closed(stream: anyio.abc.SocketStream) -> None:
    """Read (and drop) what the client sends until it closes the connection."""
    try:
        while True:
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


@pytest.fixture
def asyncio_only(anyio_backend_name: str) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("whole-buffer uploads go through a worker thread under asyncio only")


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch, asyncio_only: None) -> None:
    # the socket's bound on each wait (60 s in use): short, so a stall fails fast
    monkeypatch.setattr(offload, "SOCKET_WAIT", 0.5)


@pytest.fixture
def short_read_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # downloads are read by a thread under both backends
    monkeypatch.setattr(offload, "SOCKET_WAIT", 0.5)


async def test_a_download_that_stalls_mid_body_times_out(short_read_wait: None) -> None:
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
async def test_a_download_that_breaks_off_raises_a_connection_error(answer: bytes) -> None:
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


# --- the download's reader thread (asyncio and trio) -------------------------------------
# A scripted peer over a real socket: the real server cannot be told to pause between
# chunks, to split a size line across segments or to outpace a slow reader on demand.


def _download_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wrenn download"]


async def test_a_piece_is_handed_on_while_the_body_pauses_before_its_next_chunk() -> None:
    # The peer sends one chunk and the start of the next (its CRLF), then sends no more
    # until the client has had the first piece: a reader that held pieces back until
    # the next one came would wait forever here (fail_after fails the test).
    first_seen = anyio.Event()

    async def pauses(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await stream.send(b"5\r\nfirst\r\n")
        await first_seen.wait()
        await stream.send(b"6\r\nsecond\r\n0\r\n\r\n")

    async def test(c: AsyncWrennClient) -> None:
        got = []
        with anyio.fail_after(10):
            async with c.files.read_stream("cl-1", "f.bin") as pieces:
                async for piece in pieces:
                    got.append(piece)
                    first_seen.set()
        assert got == [b"first", b"second"]

    await _hostile(pauses, test)


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_body_trickled_in_odd_splits_comes_out_exact(framing: str) -> None:
    # Bytes arrive in small odd pieces with pauses around the reader's hold time, so its
    # shortened receive timeout strikes inside size lines, inside the CRLF after a
    # chunk's data and inside the data: nothing may be lost or read twice.
    rng = __import__("random").Random(20261201)
    data = bytes(rng.randrange(256) for _ in range(300_000))
    if framing == "chunked":
        wire = bytearray()
        at = 0
        while at < len(data):
            size = rng.choice([1, 7, 255, 4096, 70_000])
            part = data[at : at + size]
            wire += b"%x\r\n" % len(part) + part + b"\r\n"
            at += size
        wire += b"0\r\nX-Trailer: yes\r\n\r\n"
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    else:
        wire = bytearray(data)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data)

    async def trickles(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.send(head)
        at = 0
        while at < len(wire):
            step = rng.choice([1, 2, 3, 5, 64, 1000, 40_000])
            await stream.send(bytes(wire[at : at + step]))
            at += step
            await anyio.sleep(rng.choice([0, 0, 0.0005, 0.002, 0.004]))

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(60):
            async with c.files.read_stream("cl-1", "f.bin", chunk_size=50_000) as pieces:
                got = [piece async for piece in pieces]
        assert max(map(len, got)) <= 50_000
        assert b"".join(got) == data

    await _hostile(trickles, test)


async def test_a_slow_reader_holds_at_most_one_batch_read_ahead() -> None:
    # The peer sends 64 MiB as fast as it can; the reader takes a piece now and then.
    # What the thread read ahead stays within its bound, and leaving early stops it.
    async def floods(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 * MIB))
        block = b"z" * MIB
        with pytest.raises((anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)):
            for _ in range(64):
                await stream.send(block)

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(30):
            async with c.files.read_stream("cl-1", "f.bin", chunk_size=256 * 1024) as pieces:
                assert isinstance(pieces, offload.OffloadBody)
                for _ in range(4):
                    await pieces.__anext__()
                    await anyio.sleep(0.2)  # the thread reads ahead meanwhile, up to its bound
                    assert pieces._backlog <= offload.BATCH_BYTES + 256 * 1024
                    assert pieces._backlog >= offload.BATCH_BYTES  # it did read ahead
            assert not _download_threads()  # stopped and joined on leaving

    await _hostile(floods, test)


@pytest.mark.parametrize("leave", ["done", "early", "error", "cancelled"])
async def test_leaving_a_download_any_way_joins_its_thread(
    server: dict[str, str], leave: str
) -> None:
    data = os.urandom(4 * MIB)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        await cap.files.write("f.bin", data)
        fds = open_fds()
        raised: list[BaseException] = []
        with anyio.CancelScope() as scope:
            try:
                async with cap.files.read_stream("f.bin") as pieces:
                    # 4 MiB: more than the thread reads ahead, so it still runs at first
                    assert len(_download_threads()) == 1
                    async for _ in pieces:
                        if leave == "early":
                            break
                        if leave == "error":
                            raise LookupError("the caller's own")
                        if leave == "cancelled":
                            scope.cancel()
                            await anyio.sleep_forever()
            except LookupError as exc:
                raised.append(exc)
        if leave == "error":  # comes out as it is
            assert [type(e) for e in raised] == [LookupError]
            assert str(raised[0]) == "the caller's own"
        assert scope.cancelled_caught == (leave == "cancelled")
        assert not _download_threads()
        assert await settled_fds(fds) <= fds
        with pytest.raises(WrennNotFoundError):  # a missing file: raised on entering
            async with cap.files.read_stream("missing.bin"):
                pass
        assert not _download_threads()


async def test_a_size_line_split_by_a_pause_while_pieces_are_held_is_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The caller waits; a piece comes with the first bytes of the next size line ("1"
    # of "10"), so the thread holds the piece and reads on with a short receive
    # timeout, which strikes inside the line: the "1" it read must not be lost (the
    # line would read "0", the end, and 16 bytes of data would be taken for trailers).
    monkeypatch.setattr(offload, "HOLD", 0.05)

    async def splits(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await anyio.sleep(0.3)  # the caller waits for a piece by now
        await stream.send(b"5\r\nfirst\r\n1")
        await anyio.sleep(0.3)
        await stream.send(b"0\r\n0123456789abcdef\r")
        await anyio.sleep(0.3)
        await stream.send(b"\n0\r\n\r\n")

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(10):
            async with c.files.read_stream("cl-1", "f.bin") as pieces:
                got = [piece async for piece in pieces]
        assert b"".join(got) == b"first0123456789abcdef"

    await _hostile(splits, test)


# --- hostile framing (a scripted peer: the real server frames every body well) ---------

_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


async def _download_from(
    answer: Callable[[anyio.abc.SocketStream], Awaitable[None]],
    *,
    chunk_size: int = 256 * 1024,
    within: float = 10,
    **options: Any,
) -> bytes:
    """The body of a download from a peer that answers with ``answer`` (what the client
    read; what it raised comes out as it is). No reader thread is left afterwards."""
    got: list[bytes] = []

    async def behaviour(stream: anyio.abc.SocketStream) -> None:
        try:
            await _read_head(stream)
            await answer(stream)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the client closed the connection

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(within):
            async with c.files.read_stream("cl-1", "f.bin", chunk_size=chunk_size) as pieces:
                got.extend([piece async for piece in pieces])

    try:
        await _hostile(behaviour, test, **options)
    except BaseExceptionGroup as group:  # the test's own error, out of _hostile's group
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            group = group.exceptions[0]
        raise group from None
    finally:
        assert not _download_threads()
    return b"".join(got)


@pytest.mark.parametrize(
    "size",
    [b"0x5", b"+5", b"0_5", b"-0", b"5 5", b"1" + b"0" * 16, b"\xd9\xa5", b""],
    ids=["0x", "plus", "underscore", "minus-zero", "inner-space", "17-digits", "arabic", "empty"],
)
async def test_a_chunk_size_that_is_not_plain_hex_is_a_protocol_error(size: bytes) -> None:
    # int(line, 16) took "0x5", "+5" and "0_5" for 5 and "-0" for the last chunk (the
    # body then ended quietly, empty): a size line is 1 to 16 hex digits, as in the
    # small calls' codec (wrenn._protocol.http1), else the framing is the peer's error.
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_CHUNKED + size + b"\r\nhello\r\n0\r\n\r\n")
        await anyio.sleep_forever()

    with pytest.raises(WrennProtocolError, match="malformed chunk size"):
        await _download_from(answer)


@pytest.mark.parametrize(
    "size", [b"5", b"05", b"5;name=value", b"5 ;x", b"5\t", b"0000000000000005"]
)
async def test_a_chunk_size_of_hex_digits_with_extensions_is_read(size: bytes) -> None:
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_CHUNKED + size + b"\r\nhello\r\n0\r\n\r\n")
        await anyio.sleep_forever()  # the end is told by the framing, not by the close

    assert await _download_from(answer) == b"hello"


async def test_endless_trailers_are_a_protocol_error_not_an_endless_read() -> None:
    # After the last chunk the peer sends trailer lines, each short, without end: they
    # were read (and dropped) for as long as it kept sending, the download never ending.
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_CHUNKED + b"5\r\nhello\r\n0\r\n")
        while True:
            await stream.send(b"X-Trailer: " + b"t" * 100 + b"\r\n")

    with pytest.raises(WrennProtocolError, match="trailers"):
        await _download_from(answer)


async def test_trailers_within_the_limit_end_the_body() -> None:
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_CHUNKED + b"5\r\nhello\r\n0\r\n")
        for _ in range(100):
            await stream.send(b"X-Trailer: " + b"t" * 100 + b"\r\n")
        await stream.send(b"\r\n")
        await anyio.sleep_forever()

    assert await _download_from(answer) == b"hello"


# --- one body, several tasks -------------------------------------------------------------


async def test_two_tasks_iterating_one_body_share_its_pieces_exactly(
    server: dict[str, str],
) -> None:
    # Both tasks wait for a piece at once: each waited on the same wake-up socket,
    # which anyio refuses (BusyResourceError, not a WrennError, out of the SDK).
    data = os.urandom(6 * MIB + 321)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        await cap.files.write("f.bin", data)
        for _ in range(3):
            got: list[bytes] = []
            with anyio.fail_after(30):
                async with cap.files.read_stream("f.bin", chunk_size=64 * 1024) as pieces:

                    async def eat(
                        pieces: AsyncIterator[bytes] = pieces, got: list[bytes] = got
                    ) -> None:
                        async for piece in pieces:
                            got.append(piece)  # no checkpoint: appended in the order taken
                            await anyio.lowlevel.checkpoint()

                    async with anyio.create_task_group() as tg:
                        for _ in range(3):
                            tg.start_soon(eat)
            assert b"".join(got) == data
            assert not _download_threads()


async def _hello_then_stall(stream: anyio.abc.SocketStream) -> None:
    """A peer that sends one 5-byte chunk, then nothing until the client closes (and
    then keeps no socket of its own open)."""
    await _read_head(stream)
    await stream.send(_CHUNKED + b"5\r\nhello\r\n")
    await _until_closed(stream)


async def test_closing_a_body_another_task_waits_on_stops_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A task iterates the body while the block that opened it ends (a task group around
    # the block, or a ScopedIterable closed from another task). A scripted peer: the
    # body must stall so that the other task is waiting when the block ends. aclose
    # waited on the wake-up socket the iterating task waited on: BusyResourceError out
    # of the block, the thread never joined, three sockets never closed.
    outcome: list[BaseException | None] = []

    async def test(c: AsyncWrennClient) -> None:
        fds = open_fds()
        with anyio.fail_after(10):
            async with (
                anyio.create_task_group() as tg,
                c.files.read_stream("cl-1", "f.bin") as pieces,
            ):

                async def eat() -> None:
                    try:
                        async for _ in pieces:
                            pass
                        outcome.append(None)
                    except WrennConnectionError as exc:
                        outcome.append(exc)

                tg.start_soon(eat)
                await anyio.sleep(0.2)  # it has the first piece and waits for more
            assert len(outcome) == 1  # it ended (quietly or told so), nothing stuck
        assert not _download_threads()
        assert await settled_fds(fds) <= fds

    await _hostile(_hello_then_stall, test)


async def test_an_interrupted_close_still_closes_the_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under trio a KeyboardInterrupt reaches even a shielded wait, such as aclose's wait
    # for the thread (simulated: that wait raises it, and the thread is made to end only
    # after it). The thread ends later, but nobody closed its three sockets.
    async def test(c: AsyncWrennClient) -> None:
        fds = open_fds()
        real_wait, real_abort = offload.OffloadBody._wait, offload._Conn.abort

        async def interrupted(self: offload.OffloadBody) -> None:
            if self._stopping:
                raise KeyboardInterrupt
            await real_wait(self)

        with anyio.fail_after(10):
            with pytest.raises(KeyboardInterrupt):
                async with c.files.read_stream("cl-1", "f.bin") as pieces:
                    assert isinstance(pieces, offload.OffloadBody)
                    assert await pieces.__anext__() == b"hello"
                    monkeypatch.setattr(offload.OffloadBody, "_wait", interrupted)
                    monkeypatch.setattr(offload._Conn, "abort", lambda self: None)
            assert isinstance(pieces, offload.OffloadBody)
            real_abort(pieces._conn)  # the thread ends now
            while _download_threads():
                await anyio.sleep(0.01)
        assert await settled_fds(fds) <= fds

    await _hostile(_hello_then_stall, test)


@pytest.mark.parametrize("size", [100_000, 10 * MIB])
async def test_reading_a_body_after_its_block_ended_says_so(
    server: dict[str, str], size: int
) -> None:
    # The block ended before the body was read: its read-ahead (up to BATCH_BYTES) was
    # handed out, then the body ended quietly, short (or empty), with no error at all.
    data = os.urandom(size)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        await cap.files.write("f.bin", data)
        async with cap.files.read_stream("f.bin", chunk_size=64 * 1024) as pieces:
            first = await pieces.__anext__()
            await anyio.sleep(0.3)  # the thread reads ahead meanwhile
        with pytest.raises(WrennConnectionError, match="this download is closed"):
            async for _ in pieces:
                pass
        with pytest.raises(WrennConnectionError, match="this download is closed"):
            await pieces.__anext__()  # and again
        assert isinstance(pieces, offload.OffloadBody)
        assert pieces.take_ready(100) == []
        assert first == data[: len(first)]
        assert not _download_threads()


async def test_a_body_of_tiny_chunks_read_ahead_stays_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A peer frames the body in 1-byte chunks (a scripted peer: the real server's chunks
    # are large). Each is a piece of its own: counted by its bytes alone, the read-ahead
    # held BATCH_BYTES pieces, each a bytes object and a deque slot (~50 times the
    # bound in memory). (A smaller bound: the same count, reached sooner.)
    monkeypatch.setattr(offload, "BATCH_BYTES", 64 * 1024)

    async def tiny(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.send(_CHUNKED)
        block = b"1\r\nx\r\n" * 10_000
        with pytest.raises((anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)):
            for _ in range(1000):
                await stream.send(block)

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(30):
            async with c.files.read_stream("cl-1", "f.bin") as pieces:
                assert isinstance(pieces, offload.OffloadBody)
                assert await pieces.__anext__() == b"x"
                while pieces._backlog < offload.BATCH_BYTES:  # the thread reads ahead
                    await anyio.sleep(0.05)
                await anyio.sleep(0.1)  # (and would read on, were it not bounded)
                with pieces._lock:
                    held = sum(sys.getsizeof(piece) + 8 for piece in pieces._ready)
                assert held <= offload.BATCH_BYTES + 256 * 1024
                assert b"".join([await pieces.__anext__() for _ in range(100)]) == b"x" * 100
            assert not _download_threads()

    await _hostile(tiny, test)


# --- more hostile answers: each must end as the framing says, or with a WrennError ------


async def test_a_body_framed_by_the_close_after_interim_answers_comes_out_exact() -> None:
    data = os.urandom(3 * MIB + 17)

    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await stream.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n")
        await stream.send(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        for at in range(0, len(data), 100_000):
            await stream.send(data[at : at + 100_000])
        await stream.aclose()  # the end of the body

    assert await _download_from(answer, chunk_size=70_000) == data


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_whole_body_ends_the_download_though_the_peer_keeps_the_connection(
    framing: str,
) -> None:
    data = os.urandom(MIB + 5)

    async def answer(stream: anyio.abc.SocketStream) -> None:
        if framing == "length":
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        else:
            await stream.send(_CHUNKED + b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n")
        await _until_closed(stream)

    assert await _download_from(answer) == data


async def test_a_head_over_its_limit_is_a_protocol_error() -> None:
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"HTTP/1.1 200 OK\r\n")
        while True:
            await stream.send(b"X-Padding: " + b"p" * 1000 + b"\r\n")

    with pytest.raises(WrennProtocolError, match="over 65536 bytes"):
        await _download_from(answer)


async def test_a_size_line_over_its_limit_is_a_protocol_error() -> None:
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_CHUNKED + b"5\r\nhello\r\n" + b"0" * 5000)
        await _until_closed(stream)

    with pytest.raises(WrennProtocolError, match="over 1024 bytes"):
        await _download_from(answer)


async def test_an_error_answer_whose_body_never_ends_is_raised_by_the_call_timeout() -> None:
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n")
        await stream.send(b'22\r\n{"error":{"code":"not_found","message"\r\n')
        while True:  # the rest trickles, never ending
            await stream.send(b"1\r\n \r\n")
            await anyio.sleep(0.01)

    with pytest.raises(WrennNotFoundError):
        await _download_from(answer, timeout=1.0)


async def test_a_peer_that_trickles_bytes_around_the_hold_time_gives_the_exact_body() -> None:
    # One byte at a time, pauses around HOLD: holds start and end inside size lines,
    # data and CRLFs; the consumer waits throughout.
    rng = __import__("random").Random(7)
    data = bytes(rng.randrange(256) for _ in range(3000))
    wire = bytearray()
    for at in range(0, len(data), 37):
        part = data[at : at + 37]
        wire += b"%x;ext=%d\r\n" % (len(part), at) + part + b"\r\n"
    wire += b"0\r\n\r\n"

    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_CHUNKED)
        for i in range(len(wire)):
            await stream.send(bytes(wire[i : i + 1]))
            if i % 3 == 0:
                await anyio.sleep(rng.choice([0.001, 0.002, 0.003]))
        await _until_closed(stream)

    assert await _download_from(answer, chunk_size=16, within=60) == data


@pytest.mark.parametrize("after", [0.0, 0.001, 0.002, 0.005, 0.02, 0.05])
async def test_cancelled_before_the_head_or_during_a_hold_nothing_is_left(after: float) -> None:
    # The head comes after 20 ms, then a body that trickles (pieces held while the
    # consumer waits): cancelled at points before the head and during holds.
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep(0.02)
        await stream.send(_CHUNKED)
        while True:
            await stream.send(b"3\r\nabc\r\n")
            await anyio.sleep(0.001)

    async def test(c: AsyncWrennClient) -> None:
        fds = open_fds()
        with anyio.fail_after(10):
            with anyio.CancelScope() as scope:
                scope.deadline = anyio.current_time() + after
                async with c.files.read_stream("cl-1", "f.bin") as pieces:
                    async for _ in pieces:
                        pass
            assert scope.cancelled_caught  # the cancellation came out, nothing else
        assert not _download_threads()
        assert await settled_fds(fds) <= fds

    async def behaviour(stream: anyio.abc.SocketStream) -> None:
        try:
            await _read_head(stream)
            await answer(stream)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the client closed the connection

    await _hostile(behaviour, test)


# --- a whole program: Ctrl-C and exits with a download under way -------------------------

_PROGRAM = """
import os, sys, threading, time
import anyio
from wrenn import AsyncWrennClient

backend, leave = sys.argv[1], sys.argv[2]

def download_threads():
    return [t for t in threading.enumerate() if t.name == "wrenn download"]

async def main():
    async with AsyncWrennClient() as c, c.capsule() as cap:
        await cap.files.write("big.bin", os.urandom(16 * 1024 * 1024))
        if leave == "abandoned":  # entered, never left: the thread reads on
            block = cap.files.read_stream("big.bin", chunk_size=65536)
            pieces = await block.__aenter__()
            await pieces.__anext__()
            print("reading", flush=True)
            return
        async with cap.files.read_stream("big.bin", chunk_size=65536) as pieces:
            n = 0
            async for _ in pieces:
                n += 1
                if n == 1:
                    print("reading", flush=True)
                if leave == "exit" and n == 5:
                    sys.exit(3)
                await anyio.sleep(0.01)  # slow: Ctrl-C comes mid-body

try:
    anyio.run(main, backend=backend)
except KeyboardInterrupt:
    print("interrupted", flush=True)
finally:
    deadline = time.monotonic() + 5
    while download_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("threads left:", len(download_threads()), flush=True)
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("leave", ["ctrl-c", "exit", "abandoned"])
def test_a_program_left_mid_download_ends_promptly_and_quietly(
    server: dict[str, str], backend: str, leave: str
) -> None:
    # Ctrl-C (SIGINT) while the body flows; sys.exit() inside the block; a block entered
    # and never left (the event loop's end finalises it). The program ends at once,
    # with no thread of a download left and nothing on stderr.
    env = {**os.environ, **server, "PYTHONPATH": os.path.dirname(os.path.dirname(wrenn.__file__))}
    with subprocess.Popen(
        # -X faulthandler: should the program ever die of a signal, its stacks say where
        [sys.executable, "-X", "faulthandler", "-c", _PROGRAM, backend, leave],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as program:
        assert program.stdout is not None
        assert program.stdout.readline() == "reading\n"
        if leave == "ctrl-c":
            time.sleep(0.2)
            program.send_signal(signal.SIGINT)
        out, err = program.communicate(timeout=30)
    ended = f"exit status {program.returncode}, stdout {out!r}, stderr {err!r}"
    assert err == "", ended
    assert out.endswith("threads left: 0\n"), ended
    assert program.returncode == (3 if leave == "exit" else 0), ended
    if leave == "ctrl-c":
        assert out.startswith("interrupted\n")


async def test_a_held_piece_is_handed_on_while_the_next_size_line_trickles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The consumer waits; "hello" comes with the first byte of the next size line, so
    # it is held (at most HOLD) while the thread reads on. The rest of that line then
    # trickles in, a byte at a time, each well within HOLD of the last, until the
    # consumer has "hello": the hold must end by its deadline, not go on while bytes
    # keep coming (the line would pass LINE_LIMIT first: a protocol error). (A longer
    # hold, so that the peer's pauses are surely within it.)
    monkeypatch.setattr(offload, "HOLD", 0.05)
    seen = anyio.Event()

    async def answer(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.send(_CHUNKED)
        await anyio.sleep(0.2)  # the consumer waits by now
        await stream.send(b"5\r\nhello\r\n3;")
        for _ in range(2000):
            if seen.is_set():
                break
            await stream.send(b"x")
            await anyio.sleep(0.002)
        await stream.send(b"\r\nend\r\n0\r\n\r\n")
        await _until_closed(stream)

    async def test(c: AsyncWrennClient) -> None:
        got: list[bytes] = []
        with anyio.fail_after(10):
            async with c.files.read_stream("cl-1", "f.bin") as pieces:
                async for piece in pieces:
                    got.append(piece)
                    seen.set()
        assert got == [b"hello", b"end"]

    await _hostile(answer, test)


async def test_an_error_answer_whose_size_line_trickles_is_raised_by_the_call_timeout() -> None:
    # The error's body trickles inside one size line, a byte each 50 ms: each wait of
    # the socket was bounded by the time left when the piece began, so the line went on
    # past the call's timeout (1 s) until the opening's backstop gave up: a timeout
    # instead of the 404 the server answered.
    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n")
        await stream.send(b"3;")
        for _ in range(1000):
            await stream.send(b"x")
            await anyio.sleep(0.05)

    with pytest.raises(WrennNotFoundError):
        await _download_from(answer, timeout=1.0, max_retries=0)


# --- no thread or socket pair to be had --------------------------------------------------


class _NoThreads(threading.Thread):
    def start(self) -> None:
        raise RuntimeError("can't start new thread")


@pytest.mark.parametrize("lacking", ["thread", "socket pair"])
async def test_a_download_that_cannot_start_raises_a_wrenn_error_and_closes_all(
    server: dict[str, str], monkeypatch: pytest.MonkeyPatch, lacking: str
) -> None:
    # (Simulated: a process out of threads or descriptors.) A thread that could not
    # start was waited for (CLOSE_WAIT, 5 s) and its sockets left open, the
    # RuntimeError coming out as it was; without a socket pair the connection was left
    # open and the OSError came out as it was.
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        await cap.files.write("f.bin", b"data")
        assert await cap.files.exists("f.bin")  # (the small calls' connections: open now)
        monkeypatch.setattr(offload, "CLOSE_WAIT", 60.0)
        fds = open_fds()
        with monkeypatch.context() as patch:
            if lacking == "thread":
                patch.setattr(threading, "Thread", _NoThreads)
            else:

                def no_pair() -> tuple[socket.socket, socket.socket]:
                    raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

                patch.setattr(socket, "socketpair", no_pair)
            with anyio.fail_after(10), pytest.raises(WrennConnectionError, match="cannot start"):
                async with cap.files.read_stream("f.bin"):
                    pass
        assert await settled_fds(fds) <= fds
        async with cap.files.read_stream("f.bin") as pieces:  # and the next one works
            assert b"".join([piece async for piece in pieces]) == b"data"


async def test_reading_a_body_after_its_block_ended_says_so_on_the_event_loop_path_too(
    server: dict[str, str],
) -> None:
    # A transport of the caller's own keeps downloads on the event loop (BodyChunks):
    # read after its block, the body ended quietly, empty, as the thread's did.
    data = os.urandom(3 * MIB)
    async with (
        AsyncWrennClient(
            api_key=server["WRENN_API_KEY"],
            base_url=server["WRENN_BASE_URL"],
            http_transport=httpx.AsyncHTTPTransport(),
        ) as c,
        c.capsule() as cap,
    ):
        assert c.files._offload() is None
        await cap.files.write("f.bin", data)
        async with cap.files.read_stream("f.bin", chunk_size=MIB) as pieces:
            assert data.startswith(await pieces.__anext__())
        with pytest.raises(WrennConnectionError, match="this download is closed"):
            await pieces.__anext__()
        assert isinstance(pieces, BodyChunks)
        assert pieces.take_ready(10) == []
        async with cap.files.read_stream("f.bin", chunk_size=MIB) as pieces:
            assert b"".join([piece async for piece in pieces]) == data


async def test_a_head_that_trickles_past_the_call_timeout_says_no_answer() -> None:
    # Each part of the head comes within the socket's wait, the whole head not within
    # the call's timeout: the opening's own WrennTimeoutError comes out (it used to be
    # taken for a socket error, being an OSError too, and reported as "the server sent
    # or took nothing for 60 s").
    async def trickles(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        for part in [b"HTTP/1.1 200 OK\r\n", *(b"X-Slow: %d\r\n" % i for i in range(30))]:
            await stream.send(part)
            await anyio.sleep(0.1)

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(10), pytest.raises(WrennTimeoutError, match="no answer within"):
            async with c.files.read_stream("cl-1", "f.bin"):
                pass

    await _hostile(trickles, test, timeout=0.5, max_retries=0)
