"""The sync API's file transfers in the caller's thread (wrenn._sync.bulk), against the
real local server: exact bytes at the boundaries, the async path's errors for the same
failures, KeyboardInterrupt in the calling thread (from the chunk source, the loop body
and a signal during a blocking receive) leaves no busy connection, and closing the client
closes the pool."""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import wrenn._transport.offload as offload
from tests.descriptors import fd_links
from tests.localserver import server_process
from wrenn import (
    AsyncWrennClient,
    WrennClient,
    WrennConnectionError,
    WrennError,
    WrennInternalError,
    WrennNotFoundError,
    WrennTimeoutError,
)
from wrenn._files import FILE_READ, STREAM_THRESHOLD
from wrenn._sync.bulk import SyncBulk, bulk_for
from wrenn._transport.http import READ_SIZE, httpx

KIB = 1024
MIB = 1024 * KIB
SIZES = sorted(
    {0, 1} | {e + d for e in (READ_SIZE, FILE_READ, STREAM_THRESHOLD) for d in (-1, 0, 1)}
)


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def _client(server: dict[str, str], **kw: Any) -> WrennClient:
    kw.setdefault("api_key", server["WRENN_API_KEY"])
    return WrennClient(base_url=server["WRENN_BASE_URL"], **kw)


def _bulk(client: WrennClient) -> SyncBulk:
    bulk = bulk_for(client._async._session.http)
    assert bulk is not None
    return bulk


def _conns(client: WrennClient) -> list[Any]:
    return list(_bulk(client)._client._transport._pool.connections)  # type: ignore[attr-defined]


def _busy(client: WrennClient) -> list[Any]:
    return [c for c in _conns(client) if not c.is_idle() and not c.is_closed()]


def _sockets() -> set[str]:
    """This process's open sockets (a streamed download over plain HTTP has a raw one of
    its own, outside the pool)."""
    return {target for target in fd_links().values() if target.startswith("socket:")}


def _portal_requests(client: WrennClient) -> int:
    """How many requests the portal's (async) pool has sent so far."""
    pool = client._async._session.http.client._transport._pool  # type: ignore[attr-defined]
    return sum(c._connection._request_count for c in pool.connections if c._connection)


def test_transfers_are_exact_at_the_boundaries_and_go_through_the_callers_thread(
    server: dict[str, str], tmp_path: Path
) -> None:
    big = os.urandom(max(SIZES))
    with _client(server) as client, client.capsule() as cap:
        portal_requests = _portal_requests(client)
        cid = cap.capsule_id
        for size in SIZES:
            data = big[:size]
            local = tmp_path / "f.bin"
            local.write_bytes(data)
            with local.open("rb") as fh:
                cap.files.write("by-file.bin", fh)
            cap.files.write("by-bytes.bin", data)
            cap.files.upload_stream(
                "by-chunks.bin", (data[i : i + 70_001] for i in range(0, size, 70_001))
            )
            client.files.write_stream(cid, "by-size.bin", [data[:7], data[7:]], size=size)
            for name in ("by-file.bin", "by-bytes.bin", "by-chunks.bin", "by-size.bin"):
                with cap.files.read_stream(name, chunk_size=100_000) as chunks:
                    parts = list(chunks)
                assert all(len(p) <= 100_000 for p in parts)
                assert b"".join(parts) == data, (name, size)
            assert b"".join(cap.files.download_stream("by-bytes.bin")) == data
            assert cap.files.read_bytes("by-file.bin") == data
            assert client.files.read(cid, "by-chunks.bin") == data
        client.files.write(cid, "small.txt", "héllo")
        assert cap.files.read("small.txt") == "héllo"
        # the transfers used the bulk pool; the portal's pool opened nothing for them
        assert _conns(client)
        assert _portal_requests(client) == portal_requests
        assert _busy(client) == []


def _async_error(
    server: dict[str, str], op: str, cid: str = "cl-none", path: str = "x", **kw: Any
) -> type[BaseException]:
    """The error the async API raises for the same request (the reference)."""

    async def run() -> type[BaseException]:
        kw.setdefault("api_key", server["WRENN_API_KEY"])
        kw.setdefault("base_url", server["WRENN_BASE_URL"])
        async with AsyncWrennClient(**kw) as c:
            try:
                if op == "read":
                    await c.files.read(cid, path)
                else:
                    async with c.files.read_stream(cid, path):
                        pass
            except WrennError as exc:
                return type(exc)
        raise AssertionError("no error")

    return anyio.run(run)


def test_errors_are_the_async_paths(server: dict[str, str]) -> None:
    with _client(server) as client, client.capsule() as cap:
        cid = cap.capsule_id
        cap.files.make_dir("adir")
        cases = {
            ("missing", cid, "no/such/file"),
            ("directory", cid, "adir"),
            ("no capsule", "cl-doesnotexist", "x"),
        }
        for what, capsule, path in cases:
            for op in ("read", "stream"):
                expected = _async_error(server, op, cid=capsule, path=path)
                with pytest.raises(WrennError) as info:
                    if op == "read":
                        client.files.read(capsule, path)
                    else:
                        with client.files.read_stream(capsule, path):
                            pass
                assert type(info.value) is expected, (what, op)
                assert _busy(client) == []
        with pytest.raises(WrennNotFoundError):
            cap.files.read("no/such/file")
    # a wrong key: the same authentication error on both paths, the key in no message
    bad = "wrn_" + "z" * 32
    expected = _async_error(server, "read", api_key=bad)
    with _client(server, api_key=bad) as client:
        with pytest.raises(WrennError) as info:
            client.files.read("cl-none", "x")
        assert type(info.value) is expected
        assert bad not in str(info.value)
        with pytest.raises(expected):
            client.files.write_stream("cl-none", "x", [b"abc"])


def test_connection_refused_and_timeouts_map_as_on_the_async_path() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # closed again before use: nothing listens
    url = f"http://127.0.0.1:{port}"
    with WrennClient(api_key="wrn_" + "x" * 32, base_url=url, max_retries=0) as client:
        with pytest.raises(WrennConnectionError, match="refused"):
            client.files.read("cl-1", "x")
        with pytest.raises(WrennConnectionError), client.files.read_stream("cl-1", "x"):
            pass
    # a peer that accepts and never answers (the kernel completes the handshake)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with WrennClient(api_key="wrn_" + "x" * 32, base_url=url, timeout=0.3) as client:
            with pytest.raises(WrennTimeoutError):
                client.files.read("cl-1", "x")
            with pytest.raises(WrennTimeoutError):
                client.files.read("cl-1", "x", timeout=0.2)
            with pytest.raises(WrennTimeoutError), client.files.read_stream("cl-1", "x"):
                pass
            assert _busy(client) == []


def _peer(listener: socket.socket, pause: float, seen: threading.Event) -> None:
    """Answers one request with headers and part of a body, the rest after ``pause``."""
    conn, _ = listener.accept()
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 1000)
        time.sleep(pause)
        conn.sendall(b"y" * 1000)
        seen.set()


def test_a_download_waits_for_more_body_longer_than_the_call_timeout() -> None:
    # As on the async path: the client's timeout bounds the opening, not each wait for
    # more body (60 s).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        done = threading.Event()
        thread = threading.Thread(target=_peer, args=(listener, 0.6, done), daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with (
            WrennClient(api_key="wrn_" + "x" * 32, base_url=url, timeout=0.3) as client,
            client.files.read_stream("cl-1", "slow.bin") as chunks,
        ):
            assert b"".join(chunks) == b"x" * 1000 + b"y" * 1000
        assert done.is_set()
        thread.join(10)


class _Stop(KeyboardInterrupt):
    pass


def test_keyboard_interrupt_in_the_calling_thread_releases_the_connection(
    server: dict[str, str],
) -> None:
    data = os.urandom(24 * MIB)
    with _client(server) as client, client.capsule() as cap:
        cap.files.write("big.bin", data)

        def source() -> Iterator[bytes]:
            yield data[: 8 * MIB]
            raise _Stop  # as Ctrl-C would, in the thread that sends

        for sized in (False, True):
            with pytest.raises(_Stop):
                if sized:
                    client.files.write_stream(cap.capsule_id, "half.bin", source(), size=len(data))
                else:
                    cap.files.write("half.bin", source())
            assert _busy(client) == []
            assert not cap.files.exists("half.bin")
        before = _sockets()
        with pytest.raises(_Stop), cap.files.read_stream("big.bin", chunk_size=64 * KIB) as chunks:
            assert _sockets() - before  # the download's own connection
            for _ in chunks:
                raise _Stop  # mid-body, most of the file still to come
        assert _sockets() <= before  # closed
        assert _busy(client) == []
        for _ in range(3):  # the client still works, on reused connections
            assert cap.files.read_bytes("big.bin") == data
        assert _busy(client) == []


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_ctrl_c_during_a_blocking_receive_gets_out_and_closes_the_connection() -> None:
    # A peer that sends headers and part of a body, then nothing: the download blocks in
    # recv (for the rest of its first piece); a real SIGINT interrupts it.
    peer_saw_close = threading.Event()
    stalled = threading.Event()

    def serve(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000
            )
            stalled.set()
            conn.settimeout(10)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                return
            peer_saw_close.set()

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        thread = threading.Thread(target=serve, args=(listener,), daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with WrennClient(api_key="wrn_" + "x" * 32, base_url=url) as client:
            got = 0

            def interrupt() -> None:
                if stalled.wait(10):
                    time.sleep(0.3)  # the download is blocked in recv by now
                    os.kill(os.getpid(), signal.SIGINT)

            before = _sockets()
            timer = threading.Thread(target=interrupt, daemon=True)
            timer.start()
            with (
                pytest.raises(KeyboardInterrupt),
                client.files.read_stream("cl-1", "big.bin") as chunks,
            ):
                for chunk in chunks:
                    got += len(chunk)
            timer.join(10)
            # a piece is the chunk size (256 KiB) or the end: the 1000 bytes came in none
            assert got == 0
            assert _busy(client) == []
            assert peer_saw_close.wait(10)
        thread.join(10)
        assert _sockets() <= before  # the download's connection too (and the peer's end)


def test_closing_the_client_closes_the_pool(server: dict[str, str]) -> None:
    client = _client(server)
    with client.capsule() as cap:
        cap.files.write("a.bin", b"a" * (STREAM_THRESHOLD + 1))
        assert cap.files.read_bytes("a.bin")[:1] == b"a"
        bulk = _bulk(client)
        conns = _conns(client)
        assert conns
    client.close()
    assert bulk.closed
    assert bulk_for(client._async._session.http) is None
    assert all(c.is_closed() for c in conns)
    assert bulk._client._transport._pool.connections == []  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if "wrenn" in t.name.lower() and t.is_alive()]


def test_a_transport_of_the_callers_own_keeps_the_portal_path(server: dict[str, str]) -> None:
    with (
        _client(server, http_transport=httpx.AsyncHTTPTransport()) as client,
        client.capsule() as cap,
    ):
        assert bulk_for(client._async._session.http) is None
        cap.files.write("f.bin", (b"x" * 1000 for _ in range(3)))
        with cap.files.read_stream("f.bin") as chunks:
            assert b"".join(chunks) == b"x" * 3000
        assert client.files.read(cap.capsule_id, "f.bin") == b"x" * 3000


# -- a small hostile peer over a real socket: the real server cannot be told to stall
# -- mid-body, break off or trickle its head

BREAKS_OFF = [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n",
]


def _hostile_download(
    answer: list[bytes], pause: float, *, hold: bool = True, chunk_size: int = 8, **client: Any
) -> tuple[BaseException, float, bytes]:
    """What a sync streamed download raises, after how many seconds, and the bytes it
    handed over first, against a peer that reads the request and sends ``answer``'s parts
    ``pause`` seconds apart, then holds the connection open (until the client closes it,
    at most 10 s) or, without ``hold``, closes it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                try:
                    for part in answer:
                        conn.sendall(part)
                        time.sleep(pause)
                    conn.settimeout(10)
                    while hold and conn.recv(65536):
                        pass
                except OSError:
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        before = _sockets()
        started = time.monotonic()
        got = b""
        try:
            with (
                WrennClient(api_key="wrn_" + "x" * 32, base_url=url, **client) as c,
                c.files.read_stream("cl-1", "f.bin", chunk_size=chunk_size) as chunks,
            ):
                for chunk in chunks:
                    assert len(chunk) <= chunk_size
                    got += chunk
        except BaseException as exc:  # what came out is the result
            took = time.monotonic() - started
            thread.join(15)
            assert _sockets() <= before  # nothing left open, whatever the failure
            return exc, took, got
        raise AssertionError("the download ended without an error")


def test_a_sync_download_that_stalls_mid_body_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offload, "SOCKET_WAIT", 0.5)  # each wait's bound (60 s in use)
    exc, took, _ = _hostile_download(
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789"], 0
    )
    assert isinstance(exc, WrennTimeoutError), exc
    # within twice the wait's bound (the first wait hands on the part of a piece that
    # came), not the peer's 10 s
    assert took < 4


@pytest.mark.parametrize("answer", BREAKS_OFF)
def test_a_sync_download_that_breaks_off_raises_a_connection_error(answer: bytes) -> None:
    exc, _, got = _hostile_download([answer], 0, hold=False, chunk_size=4)
    assert isinstance(exc, WrennConnectionError), exc
    assert b"0123456789abcdef".startswith(got)  # what came, in order, before the break


def test_a_sync_download_whose_head_trickles_past_the_timeout_times_out() -> None:
    # Each part comes within the socket's wait, but the whole head not within the
    # call's timeout (0.5 s): the opening is bounded as a whole.
    parts = [b"HTTP/1.1 200 OK\r\n"] + [b"X-Slow: %d\r\n" % i for i in range(12)] + [b"\r\n"]
    exc, took, _ = _hostile_download(parts, 0.15, timeout=0.5, max_retries=0)
    assert isinstance(exc, WrennTimeoutError), exc
    assert "no answer within" in str(exc)
    assert took < 1.5  # the call's 0.5 s, not the head's 2 s


def test_a_sync_download_of_an_error_answer_raises_it_mapped() -> None:
    body = b'{"code": "not_found", "message": "no such file"}'
    answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    exc, _, _ = _hostile_download([answer], 0)
    assert isinstance(exc, WrennNotFoundError), exc


def test_an_error_answer_whose_body_stalls_is_raised_within_the_call_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(offload, "SOCKET_WAIT", 8.0)  # far past the call's timeout
    head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\n"
    exc, took, _ = _hostile_download([head + b'{"co'], 0, timeout=0.5, max_retries=0)
    assert isinstance(exc, WrennInternalError), exc  # the status, not a timeout
    assert took < 4  # the call's 0.5 s, not a wait of 8 s


def test_a_sync_download_with_no_timeout_at_all(server: dict[str, str]) -> None:
    data = os.urandom(3 * MIB + 5)
    with (
        _client(server, timeout=math.inf, connect_timeout=math.inf) as client,
        client.capsule() as cap,
    ):
        assert cap.commands.run("echo hi").stdout == "hi\n"  # the small calls' fast path
        cap.files.write("f.bin", data)  # the bulk client (httpx2)
        assert cap.files.read_bytes("f.bin") == data
        before = _sockets()
        with cap.files.read_stream("f.bin", chunk_size=MIB) as chunks:
            assert b"".join(chunks) == data
        assert _sockets() <= before
        with pytest.raises(WrennNotFoundError), cap.files.read_stream("nope.bin"):
            pass
        assert _sockets() <= before


def test_chunks_read_after_their_block_ended_say_so(server: dict[str, str]) -> None:
    with _client(server) as client, client.capsule() as cap:
        cap.files.write("big.bin", os.urandom(4 * MIB))
        before = _sockets()
        block = cap.files.read_stream("big.bin")
        chunks = block.__enter__()
        block.__exit__(None, None, None)  # (or the block's object dropped: the same)
        assert _sockets() <= before
        with pytest.raises(WrennConnectionError, match="inside the `with"):
            next(iter(chunks))  # was "Bad file descriptor"


def test_an_error_answer_whose_size_line_trickles_is_raised_within_the_call_timeout() -> None:
    # A byte of the error body's size line every 0.1 s, for 20 s: each piece's waits
    # were bounded by the time left when the piece began, not by the call's deadline.
    head = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;"
    exc, took, _ = _hostile_download([head] + [b"x"] * 200, 0.1, timeout=0.5, max_retries=0)
    assert isinstance(exc, WrennNotFoundError), exc  # the status, not a timeout
    assert took < 10  # the call's 0.5 s, not the peer's 20 s
