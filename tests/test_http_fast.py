"""The fast path for small REST calls (``wrenn._transport.fast``, ``_protocol/http1``).

Three parts:
* the codec, bytes in: every framing the protocol allows, fed whole and split at every
  byte, and the malformed answers it must refuse;
* a hostile HTTP/1.1 peer on a real loopback socket (a thread with a blocking socket,
  so one peer serves async and sync clients alike). It answers as scripted: chunked,
  ``Connection: close``, delimited by the close, interim 1xx, HTTP/1.0, stray bytes,
  truncated, silent, stalled. A well-behaved server (wrenn_local, hypercorn) never
  answers most of these, which is why the peer is hand-written. Each scenario goes
  through the async transport (both backends) and the sync one (the caller's thread),
  and checks the answer, the error and whether the connection was reused;
* cancellation and Ctrl-C at every point of a call: the next call works and gets its
  own answer, and the interrupted connection was closed, never pooled.

End-to-end runs against wrenn_local (sync ``commands.run`` in the caller's thread,
Ctrl-C in a subprocess) are at the bottom.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from tests.localserver import server_process
from wrenn import WrennClient, WrennConnectionError, WrennError, WrennTimeoutError
from wrenn._commands import AsyncCommands
from wrenn._config import ClientConfig
from wrenn._protocol.http1 import HTTP1Error, ResponseParser, encode_request
from wrenn._sync.commands import Commands
from wrenn._transport.http import HTTPTransport

# --- the codec ---------------------------------------------------------------------------


def _parse(data: bytes, *, head: bool = False, split: int = 0) -> ResponseParser:
    """Feed ``data`` in pieces of ``split`` bytes (0: whole), then the end of stream."""
    parser = ResponseParser(head_request=head)
    pieces = [data] if not split else [data[i : i + split] for i in range(0, len(data), split)]
    for piece in pieces:
        if parser.feed(piece):
            continue
    if not parser.complete:
        parser.end_of_stream()
    return parser


GOOD = [
    # (answer, body, reusable)
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    (b"HTTP/1.1 200 \r\ncontent-length: 2\r\nContent-Length: 2\r\n\r\nhi", b"hi", True),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=v\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"hello world!",
        True,
    ),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", b"x", True),
    (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx",
        b"x",
        False,
    ),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", b"x", False),
    (b"HTTP/1.1 200 OK\r\n\r\nuntil the close", b"until the close", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA", b"x", False),  # stray bytes
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"",
        False,  # both framings: chunked wins, the connection is not trusted again
    ),
]


@pytest.mark.parametrize(("answer", "body", "reusable"), GOOD)
def test_answers_parse_the_same_whole_and_split_at_every_byte(
    answer: bytes, body: bytes, reusable: bool
) -> None:
    for split in (0, 1, 2, 3, 7):
        parser = _parse(answer, split=split)
        assert parser.complete
        assert parser.body == body
        assert parser.reusable is reusable, split


def test_an_answer_to_head_has_no_body() -> None:
    parser = _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", head=True)
    assert parser.complete
    assert parser.body == b""
    assert parser.reusable


BAD = [
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # then the close
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"",
]


@pytest.mark.parametrize("answer", BAD)
def test_malformed_or_cut_answers_are_refused(answer: bytes) -> None:
    for split in (0, 1):
        with pytest.raises(HTTP1Error):
            _parse(answer, split=split)


def test_headers_are_bounded() -> None:
    parser = ResponseParser()
    with pytest.raises(HTTP1Error, match="too large"):
        parser.feed(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70_000)


def test_a_request_is_one_buffer_and_header_injection_is_refused() -> None:
    request = encode_request(b"POST", b"/v1/x", [(b"Host", b"h"), (b"Content-Length", b"2")], b"{}")
    assert request == b"POST /v1/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"
    for name, value in [(b"X", b"a\r\nX-Evil: 1"), (b"X: y", b"1"), (b"X", b"a\nb")]:
        with pytest.raises(HTTP1Error):
            encode_request(b"GET", b"/", [(name, value)], None)
    with pytest.raises(HTTP1Error):
        encode_request(b"GET", b"/a b", [], None)


# --- a hostile peer on a real socket -----------------------------------------------------


def _answer(n: int, **extra: Any) -> bytes:
    return json.dumps({"n": n, **extra}).encode()


def _length(n: int) -> list[bytes]:
    body = _answer(n)
    return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body]


def _chunked(n: int) -> list[bytes]:
    body = _answer(n)
    return [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"%x;ext=1\r\n" % 3 + body[:3] + b"\r\n",
        b"%x\r\n" % (len(body) - 3) + body[3:] + b"\r\n",
        b"0\r\nX-Trailer: t\r\n\r\n",
    ]


def _close(n: int) -> list[bytes]:
    body = _answer(n)
    return [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    ]


def _until_close(n: int) -> list[bytes]:
    return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", _answer(n), b"<close>"]


def _interim(n: int) -> list[bytes]:
    return [b"HTTP/1.1 100 Continue\r\n\r\n", *_length(n)]


def _http10(n: int) -> list[bytes]:
    body = _answer(n)
    return [b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body]


def _stray(n: int) -> list[bytes]:
    return [_length(n)[0] + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]


def _error(n: int) -> list[bytes]:
    body = json.dumps({"error": {"code": "not_found", "message": "no such thing"}}).encode()
    return [b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body]


def _truncated(n: int) -> list[bytes]:
    return [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + _answer(n)[:4], b"<close>"]


def _silent(n: int) -> list[bytes]:
    return [b"<close>"]


def _garbage(n: int) -> list[bytes]:
    return [b"HTTP/1.1 2x0 OK\r\n\r\n"]


# Each stall point: what is sent before the peer stops (and waits for the client to go).
STALLS: dict[str, Callable[[int], list[bytes]]] = {
    "no-answer": lambda n: [b"<stall>"],
    "half-head": lambda n: [b"HTTP/1.1 200 OK\r\nContent-Le", b"<stall>"],
    "head-only": lambda n: [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"<stall>"],
    "mid-body": lambda n: [_length(n)[0][:-3], b"<stall>"],
    "mid-chunks": lambda n: [*_chunked(n)[:2], b"<stall>"],
}

REUSED = {"length": _length, "chunked": _chunked, "interim": _interim}
NOT_REUSED = {"close": _close, "until-close": _until_close, "http10": _http10, "stray": _stray}
FAILURES: dict[str, tuple[Callable[[int], list[bytes]], type[WrennError]]] = {
    "truncated": (_truncated, WrennConnectionError),
    "silent": (_silent, WrennConnectionError),
    "garbage": (_garbage, WrennConnectionError),
}


class Peer:
    """Reads one request at a time (head + Content-Length body) and answers per script:
    ``script(n)`` gives the pieces to send for the n-th request (``<close>`` closes,
    ``<stall>`` waits until the client closes). Records connections and requests."""

    def __init__(self) -> None:
        self.script: Callable[[int], list[bytes]] = _length
        # when set, answers by request line instead: router(method, target, body)
        self.router: Callable[[bytes, bytes, dict[str, Any]], list[bytes]] | None = None
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released as the peer closes a connection
        self.stalled = threading.Event()
        self.client_left = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # the accept loop notices close()
        self._closing = False
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in self._threads:
            thread.join(10)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                body, buf = rest[:length], rest[length:]
                request = json.loads(body) if body else {}
                self.requests.append(request)
                method, target, _ = head.split(b" ", 2)
                pieces = (
                    self.router(method, target, request)
                    if self.router
                    else self.script(int(request.get("n", -1)))
                )
                for piece in pieces:
                    if piece == b"<close>":
                        return
                    if piece == b"<stall>":
                        self.stalled.set()
                        conn.settimeout(30)
                        try:
                            while conn.recv(65536):  # until the client closes
                                pass
                        except ConnectionResetError:
                            pass  # closed with our bytes unread: a reset, not a FIN
                        self.client_left.set()
                        return
                    conn.sendall(piece)
        except OSError:
            return
        finally:
            conn.close()
            self.closed.release()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    p.start()
    try:
        yield p
    finally:
        p.close()


def _transport(
    base_url: str, timeout: float = 10, retries: int = 0, max_connections: int = 100
) -> HTTPTransport:
    config = ClientConfig.resolve(
        api_key="wrn_" + "k" * 32,
        token=None,
        base_url=base_url,
        proxy_domain=None,
        timeout=timeout,
        connect_timeout=5,
        max_retries=retries,
        environ={},
    )
    http = HTTPTransport(config, max_connections=max_connections)
    assert http._fast is not None
    assert http._sync_fast is not None
    return http


async def _call(http: HTTPTransport, n: int, timeout: float | None = None) -> Any:
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    resp = await http.request("POST", "/v1/echo", json_body={"n": n}, **kw)
    return resp.json()


def _call_sync(http: HTTPTransport, n: int, timeout: float | None = None) -> Any:
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    resp = http.request_blocking("POST", "/v1/echo", json_body={"n": n}, **kw)
    assert resp is not None
    return resp.json()


@pytest.mark.parametrize("name", [*REUSED, *NOT_REUSED])
async def test_every_framing_reads_the_same_async_and_sync(peer: Peer, name: str) -> None:
    peer.script = {**REUSED, **NOT_REUSED}[name]
    http = _transport(peer.base_url)
    try:
        got = [await _call(http, n) for n in range(3)]
        got += [await anyio.to_thread.run_sync(_call_sync, http, n) for n in range(3, 6)]
    finally:
        await http.aclose()
    assert got == [{"n": n} for n in range(6)]
    # one connection per client when the answers allow reuse, else one per call
    assert peer.connections == (2 if name in REUSED else 6)


async def test_an_error_answer_maps_the_same_on_both_paths(peer: Peer) -> None:
    peer.script = _error
    http = _transport(peer.base_url)
    try:
        with pytest.raises(WrennError) as async_error:
            await _call(http, 1)
        with pytest.raises(WrennError) as sync_error:
            await anyio.to_thread.run_sync(_call_sync, http, 2)
    finally:
        await http.aclose()
    assert type(async_error.value) is type(sync_error.value)
    assert type(async_error.value).__name__ == "WrennNotFoundError"
    assert peer.connections == 2  # an error answer is complete: each path kept its connection


@pytest.mark.parametrize("name", FAILURES)
async def test_a_broken_answer_is_a_wrenn_error_and_the_next_call_works(
    peer: Peer, name: str
) -> None:
    script, error = FAILURES[name]
    http = _transport(peer.base_url)
    try:
        for via_thread in (False, True):
            peer.script = script
            with pytest.raises(error):
                if via_thread:
                    await anyio.to_thread.run_sync(_call_sync, http, 1)
                else:
                    await _call(http, 1)
            peer.script = _length
            if via_thread:
                assert await anyio.to_thread.run_sync(_call_sync, http, 2) == {"n": 2}
            else:
                assert await _call(http, 2) == {"n": 2}
    finally:
        await http.aclose()
    assert peer.connections == 4  # the broken connection was never used again


@pytest.mark.parametrize("point", STALLS)
async def test_cancelled_at_every_point_the_connection_is_dropped(peer: Peer, point: str) -> None:
    http = _transport(peer.base_url)
    try:
        peer.script = _length
        assert await _call(http, 0) == {"n": 0}  # a pooled connection, reused next
        peer.script = STALLS[point]
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_call, http, 1)
                while not peer.stalled.is_set():
                    await anyio.sleep(0.005)
                scope.cancel()
        assert scope.cancelled_caught
        # the client closed the half-read connection (the peer saw it go) ...
        assert await anyio.to_thread.run_sync(peer.client_left.wait, 10)
        peer.script = _length
        # ... and the next call has a connection of its own and its own answer
        assert await _call(http, 2) == {"n": 2}
        assert http._fast is not None
        assert http._fast.idle == 1
    finally:
        await http.aclose()
    assert peer.connections == 2


async def test_a_call_cancelled_before_it_starts_sends_nothing(peer: Peer) -> None:
    http = _transport(peer.base_url)
    try:
        assert await _call(http, 0) == {"n": 0}
        with anyio.CancelScope() as scope:
            scope.cancel()
            await _call(http, 1)
        assert scope.cancelled_caught
        assert await _call(http, 2) == {"n": 2}
    finally:
        await http.aclose()
    assert [r["n"] for r in peer.requests] == [0, 2]
    assert peer.connections == 1


@pytest.mark.parametrize("point", ["no-answer", "mid-body"])
async def test_a_stalled_answer_times_out_on_both_paths(peer: Peer, point: str) -> None:
    http = _transport(peer.base_url)
    try:
        for via_thread in (False, True):
            peer.script = STALLS[point]
            peer.stalled.clear()
            peer.client_left.clear()
            with pytest.raises(WrennTimeoutError):
                if via_thread:
                    await anyio.to_thread.run_sync(_call_sync, http, 1, 0.3)
                else:
                    await _call(http, 1, 0.3)
            assert await anyio.to_thread.run_sync(peer.client_left.wait, 10)
            peer.script = _length
            assert await _call(http, 2) == {"n": 2}
    finally:
        await http.aclose()


def _then_close(n: int) -> list[bytes]:
    return [*_length(n), b"<close>"]  # a keep-alive answer, then the server's idle close


async def test_an_idle_connection_the_server_closed_is_not_used_again(peer: Peer) -> None:
    peer.script = _then_close
    http = _transport(peer.base_url)
    try:
        for n in range(3):
            assert await _call(http, n) == {"n": n}
            assert await anyio.to_thread.run_sync(peer.closed.acquire, True, 10)
            assert await anyio.to_thread.run_sync(_call_sync, http, 10 + n) == {"n": 10 + n}
            assert await anyio.to_thread.run_sync(peer.closed.acquire, True, 10)
    finally:
        await http.aclose()
    assert peer.connections == 6  # each call found its pooled connection closed, and dialled


async def test_concurrent_calls_share_at_most_max_connections(peer: Peer) -> None:
    http = _transport(peer.base_url, max_connections=2)
    got: dict[int, Any] = {}

    async def one(n: int) -> None:
        got[n] = await _call(http, n)

    try:
        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(one, n)
    finally:
        await http.aclose()
    assert got == {n: {"n": n} for n in range(8)}
    assert peer.connections <= 2


async def test_a_host_name_is_resolved_and_its_addresses_tried_in_turn(peer: Peer) -> None:
    # "localhost" may resolve to ::1 first, where nothing listens: the next address is tried
    http = _transport(f"http://localhost:{peer.port}")
    try:
        assert await _call(http, 1) == {"n": 1}
        assert await anyio.to_thread.run_sync(_call_sync, http, 2) == {"n": 2}
    finally:
        await http.aclose()


def test_a_refused_connection_is_retried_and_then_a_connection_error() -> None:
    with socket.socket() as placeholder:  # a port with nothing listening
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    http = _transport(f"http://127.0.0.1:{port}", retries=1)
    with pytest.raises(WrennConnectionError, match="refused"):
        http.request_blocking("POST", "/v1/echo", json_body={})


@contextmanager
def _sigint_when(event: threading.Event) -> Iterator[None]:
    """Send this process a real SIGINT once ``event`` is set."""
    stop = threading.Event()

    def watch() -> None:
        if event.wait(10) and not stop.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
@pytest.mark.parametrize("point", STALLS)
def test_ctrl_c_in_a_blocking_call_drops_its_connection(peer: Peer, point: str) -> None:
    http = _transport(peer.base_url)
    try:
        assert _call_sync(http, 0) == {"n": 0}
        peer.script = STALLS[point]
        with _sigint_when(peer.stalled), pytest.raises(KeyboardInterrupt):
            _call_sync(http, 1)
        assert peer.client_left.wait(10)
        peer.script = _length
        assert _call_sync(http, 2) == {"n": 2}
        assert http._sync_fast is not None
        assert http._sync_fast.idle == 1
    finally:
        anyio.run(http.aclose)
    assert peer.connections == 2


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_ctrl_c_in_a_blocking_run_ends_the_command_it_started(peer: Peer) -> None:
    # wrenn_local ends a foreground command itself when its connection closes, so only a
    # server that does not (this peer) shows the client's own clean-up: after Ctrl-C the
    # client finds the command by its marker and ends it, then lets the interrupt go on.
    killed: list[bytes] = []
    running: list[dict[str, Any]] = []

    def router(method: bytes, target: bytes, body: dict[str, Any]) -> list[bytes]:
        if method == b"POST" and target == b"/v1/capsules/cl-1/exec":
            running.append({"pid": 42, "cmd": body["cmd"], "args": body["args"]})
            return [b"<stall>"]
        if method == b"GET" and target == b"/v1/capsules/cl-1/processes":
            data = json.dumps({"processes": running}).encode()
            return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data) + data]
        if method == b"DELETE" and target.startswith(b"/v1/capsules/cl-1/processes/42"):
            killed.append(target)
            running.clear()
            return [b"HTTP/1.1 204 No Content\r\n\r\n"]
        return [b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"]

    peer.router = router
    with WrennClient(api_key="wrn_" + "k" * 32, base_url=peer.base_url) as client:
        commands = Commands(client._runner, AsyncCommands(client._async.processes, "cl-1"))
        with _sigint_when(peer.stalled), pytest.raises(KeyboardInterrupt):
            commands.run("sleep 300")
    assert killed == [b"/v1/capsules/cl-1/processes/42?signal=SIGTERM"]


# --- end to end, against wrenn_local -----------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def test_sync_run_goes_in_the_callers_thread_and_keeps_its_promises(
    server: dict[str, str],
) -> None:
    with (
        WrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as client,
        client.capsule() as cap,
    ):
        http = client._async._session.http
        result = cap.commands.run("printf out; printf err >&2; exit 3", cwd="/tmp")
        assert (result.stdout, result.stderr, result.exit_code) == ("out", "err", 3)
        assert http._sync_fast is not None
        assert http._sync_fast.idle == 1
        assert cap.commands.run("pwd", cwd="/tmp", envs={"A": "b"}).stdout.strip() == "/tmp"
        assert cap.commands.run("echo $A", envs={"A": "b c"}).stdout == "b c\n"
        assert cap.commands.run("cat", args=["/etc/hostname"]).exit_code == 0
        with pytest.raises(WrennError, match="exit"):
            cap.commands.run("exit 4", check=True)
        with pytest.raises(WrennTimeoutError):
            cap.commands.run("sleep 30; echo wrenn-late-marker", timeout=1)
        # the timed-out command was ended in the capsule, not left running
        assert not [p for p in cap.commands.list() if "wrenn-late-marker" in " ".join(p.args)]
        assert cap.commands.run("echo again").stdout == "again\n"


CTRL_C_PROGRAM = textwrap.dedent(
    """
    import json, sys
    from wrenn import WrennClient

    with WrennClient() as client, client.capsule() as cap:
        print("running", flush=True)
        try:
            cap.commands.run("sleep 300; echo wrenn-ctrl-c-marker", timeout=None)
        except KeyboardInterrupt:
            left = [p.args for p in cap.commands.list()
                    if "wrenn-ctrl-c-marker" in " ".join(p.args)]
            after = cap.commands.run("echo after").stdout
            print(json.dumps({"left": left, "after": after}), flush=True)
    """
)


def test_sigint_during_a_blocking_run_ends_the_command_and_the_client_goes_on(
    server: dict[str, str],
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_PROGRAM],
        env={**os.environ, **server},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "running"
    # wait until the command runs in the capsule, then interrupt the blocked call
    with WrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c:
        for _ in range(500):
            caps = [cap for cap in c.capsules.list() if cap.status == "running"]
            found = [
                p
                for cap in caps
                for p in c.processes.list(cap.id)
                if "wrenn-ctrl-c-marker" in " ".join(p.args)
            ]
            if found:
                break
            time.sleep(0.02)
        assert found
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {"left": [], "after": "after\n"}
