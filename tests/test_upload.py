"""Streamed uploads from chunks on the event loop over a raw socket (wrenn._transport.upload),
under asyncio and trio: exact bytes through the real local server (chunked and with a
Content-Length, odd and tiny chunks), cancellation before the head, mid-body and while
waiting for the answer (the cancellation comes out, no socket or thread is left, the
server keeps no file), a source that raises (its exception comes out unchanged), and
servers that stall, break off or answer early (a small hostile server over a real socket:
the real one cannot be told to misbehave). https and callers' transports keep httpx2."""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import wrenn._transport.offload as offload
import wrenn._transport.upload as upload
from tests.descriptors import open_fds, settled_fds
from tests.localserver import server_process
from wrenn import (
    AsyncWrennClient,
    WrennClient,
    WrennConnectionError,
    WrennNotFoundError,
    WrennProtocolError,
    WrennTimeoutError,
)
from wrenn._sync.bulk import bulk_for
from wrenn._transport.http import httpx

KEY = "wrn_" + "x" * 32
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


async def _pieces(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    i = 0
    k = 0
    while i < len(data):
        step = sizes[k % len(sizes)]
        k += 1
        piece = data[i : i + step]
        i += step
        # bytes, bytearray and memoryview chunks, and empty ones, all count as bytes
        yield piece if k % 3 else bytearray(piece) if k % 2 else memoryview(piece)  # type: ignore[misc]
        if k % 5 == 0:
            yield b""


async def test_exact_bytes_chunked_and_sized_with_odd_and_tiny_chunks(
    server: dict[str, str],
) -> None:
    data = os.urandom(9 * MIB + 4321)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        assert c.files._plain() is not None  # plain HTTP, our own transport: the raw path
        cases = {
            "big.bin": [3 * MIB + 7, MIB],  # larger than the batch
            "tiny.bin": [1, 2, 3, 1000, 70_000, 5],  # batched together, and around the batch
        }
        for name, sizes in cases.items():
            await cap.files.write(name, _pieces(data[: 3 * MIB + 99], sizes))
            assert await cap.files.read(name, format="bytes") == data[: 3 * MIB + 99]
        sized = _pieces(data, [MIB + 1])
        await c.files.write_stream(cap.capsule_id, "sized.bin", sized, size=len(data))
        await cap.files.write("empty.bin", _pieces(b"", [1]))
        await cap.files.write("file.bin", io.BytesIO(data))  # no descriptor: chunked
        async with cap.files.read_stream("sized.bin") as chunks:
            assert b"".join([chunk async for chunk in chunks]) == data
        assert await cap.files.read("empty.bin", format="bytes") == b""
        async with cap.files.read_stream("file.bin") as chunks:
            assert b"".join([chunk async for chunk in chunks]) == data


async def _kept(server: dict[str, str], capsule_id: str, path: str) -> bytes | None:
    """The file as the server keeps it (``None``: no file), through a client of its own:
    the uploading client's sockets stay the only ones it has."""
    async with AsyncWrennClient(
        api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]
    ) as other:
        if not await other.files.exists(capsule_id, path):
            return None
        data = await other.files.read(capsule_id, path)
        await other.files.remove(capsule_id, path)
        return data


async def test_cancelled_before_the_head_mid_body_and_waiting_for_the_answer(
    server: dict[str, str],
) -> None:
    data = os.urandom(12 * MIB)
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        await cap.files.write("warm.bin", _pieces(data, [MIB]))
        fds, threads = open_fds(), threading.active_count()
        closed: list[int] = []

        async def cut(after: int, *, sized: bool) -> bool:
            """Cancel the upload after ``after`` chunks (-1: before it connects; 12:
            after the last chunk, while the answer is awaited)."""
            with anyio.CancelScope() as scope:
                if after < 0:
                    scope.cancel()

                async def source() -> AsyncIterator[bytes]:
                    try:
                        for i in range(12):
                            if i == after:
                                scope.cancel()
                            yield data[i * MIB : (i + 1) * MIB]
                        if after == 12:
                            scope.cancel()
                    finally:
                        closed.append(after)  # finalised when abandoned, not by the GC

                size = len(data) if sized else None
                name = f"cut-{after}-{sized}.bin"
                await c.files.write_stream(cap.capsule_id, name, source(), size=size)
                await anyio.lowlevel.checkpoint()
            return scope.cancelled_caught

        for sized in (False, True):
            for after in (-1, 0, 1, 5, 11, 12):
                closed.clear()
                assert await cut(after, sized=sized)  # the cancellation came out
                assert closed == ([] if after < 0 else [after])  # never started: nothing
                assert await settled_fds(fds) <= fds, (after, sized)
                # the next upload works
                await cap.files.write("next.bin", _pieces(data[:MIB], [65536]))
        assert threading.active_count() <= threads  # no thread in this path
        assert await cap.files.read("next.bin", format="bytes") == data[:MIB]
        for sized in (False, True):
            for after in (-1, 0, 1, 5, 11, 12):
                kept = await _kept(server, cap.capsule_id, f"cut-{after}-{sized}.bin")
                # only a body complete before the cancellation may be kept (the server
                # finishes it after the client left), and then whole
                assert kept is None or (after == 12 and kept == data), (after, sized)


class _SourceBroke(Exception):
    pass


@pytest.mark.parametrize(
    "error", [_SourceBroke("mine"), WrennConnectionError("the source's own"), KeyError("k")]
)
async def test_a_source_that_raises_mid_way_comes_out_unchanged_and_nothing_is_kept(
    server: dict[str, str], error: BaseException
) -> None:
    async with (
        AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c,
        c.capsule() as cap,
    ):
        assert await cap.files.exists("nothing.bin") is False
        fds = open_fds()

        async def source() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"x" * MIB
            raise error

        with pytest.raises(type(error)) as caught:
            await cap.files.write("broken.bin", source())
        assert caught.value is error
        assert await settled_fds(fds) <= fds
        assert not await cap.files.exists("broken.bin")


async def test_https_and_a_callers_transport_keep_httpx2(server: dict[str, str]) -> None:
    async with AsyncWrennClient(api_key=KEY, base_url="https://wrenn.invalid") as c:
        assert c.files._plain() is None  # nothing is sent: TLS is httpx2's

    seen: list[str] = []

    class Recording(httpx.AsyncBaseTransport):
        """A real transport over the network, noting each request's path."""

        def __init__(self) -> None:
            self._inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return await self._inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    async with (
        AsyncWrennClient(
            api_key=server["WRENN_API_KEY"],
            base_url=server["WRENN_BASE_URL"],
            http_transport=Recording(),
        ) as c,
        c.capsule() as cap,
    ):
        assert c.files._plain() is None
        data = os.urandom(2 * MIB + 3)
        await cap.files.write("through.bin", _pieces(data, [MIB]))
        assert any(path.endswith("/files/stream/write") for path in seen)
        assert await cap.files.read("through.bin", format="bytes") == data


# --- a hostile server ------------------------------------------------------------------


async def _hostile(
    behaviour: Callable[[anyio.abc.SocketStream], Awaitable[None]],
    test: Callable[[AsyncWrennClient], Awaitable[None]],
) -> None:
    fds = open_fds()
    async with anyio.create_task_group() as tg:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                try:
                    await behaviour(stream)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    pass  # the client closed first

        async def serve() -> None:
            async with listener:
                await listener.serve(handle)

        tg.start_soon(serve)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with AsyncWrennClient(api_key=KEY, base_url=f"http://127.0.0.1:{port}") as c:
            await test(c)
        tg.cancel_scope.cancel()
    assert await settled_fds(fds) <= fds  # the upload's socket is closed (the server's too)


async def _read_head(stream: anyio.abc.SocketStream) -> bytes:
    got = b""
    while b"\r\n\r\n" not in got:
        got += await stream.receive()
    return got


async def _drain(stream: anyio.abc.SocketStream) -> None:
    """Read the whole chunked body (up to its last chunk)."""
    got = b""
    while not got.endswith(b"0\r\n\r\n"):
        got = (got + await stream.receive())[-16:]


async def _chunks(n: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * MIB


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # the bound on each wait of the socket (60 s in use): short, so a stall fails fast
    monkeypatch.setattr(upload, "SOCKET_WAIT", 0.5)


async def test_an_upload_the_server_stops_reading_times_out(short_wait: None) -> None:
    async def deaf(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await anyio.sleep_forever()  # reads nothing more: the client's socket fills up

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(20), pytest.raises(WrennTimeoutError):
            await c.files.write_stream("cl-1", "f.bin", _chunks(256))

    await _hostile(deaf, test)


async def test_a_server_that_never_answers_times_out(short_wait: None) -> None:
    async def mute(stream: anyio.abc.SocketStream) -> None:
        await _drain(stream)
        await anyio.sleep_forever()

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(20), pytest.raises(WrennTimeoutError, match="no answer"):
            await c.files.write_stream("cl-1", "f.bin", _chunks(2))

    await _hostile(mute, test)


async def test_a_server_that_breaks_off_mid_body_raises_a_connection_error() -> None:
    async def breaks(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        await stream.receive()
        # an abortive close (RST): the client's next send fails at once
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(20), pytest.raises(WrennConnectionError):
            await c.files.write_stream("cl-1", "f.bin", _chunks(256))

    await _hostile(breaks, test)


@pytest.mark.parametrize("reads_on", [False, True])
async def test_an_early_error_answer_wins_over_the_broken_upload(reads_on: bool) -> None:
    async def refuses(stream: anyio.abc.SocketStream) -> None:
        await _read_head(stream)
        body = b'{"error":{"code":"not_found","message":"no such capsule"}}'
        await stream.send(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            + body
        )
        if reads_on:
            await _drain(stream)  # a server that reads the rest before it closes
        else:
            await anyio.sleep_forever()  # one that reads nothing more and keeps it open

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(20), pytest.raises(WrennNotFoundError):
            await c.files.write_stream("cl-1", "f.bin", _chunks(256))

    await _hostile(refuses, test)


async def test_a_malformed_answer_is_a_protocol_error() -> None:
    async def garbled(stream: anyio.abc.SocketStream) -> None:
        await _drain(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")
        await stream.aclose()

    async def test(c: AsyncWrennClient) -> None:
        with anyio.fail_after(20), pytest.raises(WrennProtocolError):
            await c.files.write_stream("cl-1", "f.bin", _chunks(1))

    await _hostile(garbled, test)


# --- the sync API: the same path, blocking in the caller's thread ------------------------


def _sync_client(server: dict[str, str]) -> WrennClient:
    return WrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"])


def test_sync_uploads_are_exact_and_a_raising_source_comes_out_unchanged(
    server: dict[str, str],
) -> None:
    data = os.urandom(5 * MIB + 17)
    with _sync_client(server) as client, client.capsule() as cap:
        bulk = bulk_for(client._async._session.http)
        assert bulk is not None
        assert bulk._plain is not None  # plain HTTP: the raw path
        sizes = [1, 2, 70_000, MIB + 3]
        pieces = [data[i : i + s] for i, s in _cuts(len(data), sizes)]
        cap.files.write("chunked.bin", iter(pieces))
        client.files.write_stream(cap.capsule_id, "sized.bin", iter(pieces), size=len(data))
        for name in ("chunked.bin", "sized.bin"):
            assert cap.files.read_bytes(name) == data
        fds = open_fds()
        error = _SourceBroke("mine")

        def source() -> Iterator[bytes]:
            yield from pieces[:4]
            raise error

        with pytest.raises(_SourceBroke) as caught:
            cap.files.write("broken.bin", source())
        assert caught.value is error
        assert open_fds() <= fds  # closed before the call returned
        assert not cap.files.exists("broken.bin")


def _cuts(total: int, sizes: list[int]) -> Iterator[tuple[int, int]]:
    i = k = 0
    while i < total:
        yield i, sizes[k % len(sizes)]
        i += sizes[k % len(sizes)]
        k += 1


def _peer(behaviour: Callable[[socket.socket], None]) -> tuple[str, threading.Thread]:
    """A one-connection server in a thread (the real one cannot be told to misbehave)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                behaviour(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread


def _many() -> Iterator[bytes]:
    chunk = b"x" * MIB
    for _ in range(256):
        yield chunk


def test_a_sync_upload_the_server_stops_reading_times_out(short_wait: None) -> None:
    stop = threading.Event()

    def deaf(conn: socket.socket) -> None:
        stop.wait(20)  # reads nothing more

    url, thread = _peer(deaf)
    fds = open_fds()
    try:
        with WrennClient(api_key=KEY, base_url=url) as client, pytest.raises(WrennTimeoutError):
            client.files.write_stream("cl-1", "f.bin", _many())
    finally:
        stop.set()
        thread.join(10)
    assert open_fds() <= fds
    assert open_fds() <= fds  # the client's socket and the peer's are closed


def test_a_sync_upload_refused_early_raises_the_answers_error() -> None:
    stop = threading.Event()
    body = b'{"error":{"code":"not_found","message":"no such capsule"}}'
    answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    peer_gone = threading.Event()

    def refuse(conn: socket.socket) -> None:
        conn.sendall(answer)
        stop.wait(60)  # and reads nothing more, the connection kept open
        peer_gone.set()

    url, thread = _peer(refuse)
    fds = open_fds()
    try:
        with WrennClient(api_key=KEY, base_url=url) as client, pytest.raises(WrennNotFoundError):
            client.files.write_stream("cl-1", "f.bin", _many())
        # the answer was seen while the peer still held the connection open (not only
        # once it closed: a client that just kept sending would wait for that)
        assert not peer_gone.is_set()
    finally:
        stop.set()
        thread.join(10)
    assert open_fds() <= fds


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_refused_connection_is_tried_again_as_the_retry_policy_allows(
    monkeypatch: pytest.MonkeyPatch, retries: int
) -> None:
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))  # bound, not listening: a connection is refused
    port = bound.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = bound.accept()
        with conn:
            got = b""
            while not got.endswith(b"0\r\n\r\n"):
                got += conn.recv(65536)
            received.append(got)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    original = offload.Offload._connect
    attempts: list[int] = []
    server = threading.Thread(target=serve, daemon=True)

    async def observed(self: offload.Offload, context: str, timeout: float) -> object:
        # the real connect, observed: after the first refusal the server comes up
        attempts.append(1)
        try:
            return await original(self, context, timeout)
        except WrennConnectionError:
            if len(attempts) == 1:
                bound.listen(1)
                server.start()
            raise

    monkeypatch.setattr(offload.Offload, "_connect", observed)
    try:
        async with AsyncWrennClient(
            api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=retries
        ) as c:
            if retries:
                await c.files.write_stream("cl-1", "f.bin", _chunks(1))
                assert len(attempts) == 2
                assert b"x" * 1000 in received[0]
            else:
                with pytest.raises(WrennConnectionError, match="refused"):
                    await c.files.write_stream("cl-1", "f.bin", _chunks(1))
                assert len(attempts) == 1
    finally:
        if server.is_alive():
            with socket.create_connection(("127.0.0.1", port)) as unblock:
                unblock.sendall(b"0\r\n\r\n")
        if server.ident is not None:
            server.join(10)
        bound.close()


def test_ctrl_c_during_a_sync_upload_comes_out_and_keeps_no_file(server: dict[str, str]) -> None:
    # A real SIGINT (Ctrl-C) lands while the caller's thread is inside the raw upload: the
    # KeyboardInterrupt comes out unchanged, the socket is closed before the call returns,
    # the source is finalised and the server keeps no partial file.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is delivered to the main thread")
    chunk = b"c" * MIB
    finalised = threading.Event()

    def source() -> Iterator[bytes]:
        try:
            for _ in range(4096):  # 4 GiB at most: the interrupt lands long before
                yield chunk
        finally:
            finalised.set()

    with _sync_client(server) as client, client.capsule() as cap:
        fds = open_fds()
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                cap.files.write("interrupted.bin", source())
        finally:
            timer.cancel()
        assert finalised.is_set()
        assert open_fds() <= fds
        assert not cap.files.exists("interrupted.bin")
