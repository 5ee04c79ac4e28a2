"""Our WebSocket client against independent peers, under asyncio and trio."""

from __future__ import annotations

import json
import os
import ssl
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from wsproto import WSConnection
from wsproto.events import BytesMessage, Ping, TextMessage
from wsproto.frame_protocol import FrameProtocol

from tests.descriptors import open_fds
from tests.tcp import serve_tcp
from tests.wspeers import raw_server, until_closed, websockets_server
from wrenn import (
    WrennAuthenticationError,
    WrennConnectionError,
    WrennTimeoutError,
    WrennWebSocketClosedError,
)
from wrenn._transport.websocket import READ_SIZE, connect_websocket


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def test_echo_text_and_binary_against_websockets() -> None:
    with websockets_server(echo) as url:
        async with connect_websocket(url + "/echo", headers={"X-API-Key": "k"}) as ws:
            await ws.send_text("héllo")
            assert await ws.receive() == "héllo"
            payload = os.urandom(300_000)
            await ws.send_bytes(payload)
            assert await ws.receive() == payload
            latency = await ws.ping()
            assert 0 <= latency < 5
            assert ws.statistics().ping_latency == latency
        assert ws.closed
        assert ws.close_code == 1000


async def test_clean_close_ends_iteration_and_error_close_raises() -> None:
    async def three_then_close(ws: Any) -> None:
        for i in range(3):
            await ws.send(f"m{i}")
        await ws.close(1000, "done")

    async def then_error(ws: Any) -> None:
        await ws.send("x")
        await ws.close(1011, "server broke")

    with websockets_server(three_then_close) as url:
        async with connect_websocket(url) as ws:
            assert [m async for m in ws] == ["m0", "m1", "m2"]
            assert (ws.close_code, ws.close_reason) == (1000, "done")
    with websockets_server(then_error) as url:
        async with connect_websocket(url) as ws:
            assert await ws.receive() == "x"
            with pytest.raises(WrennWebSocketClosedError) as info:
                await ws.receive()
            assert (info.value.close_code, info.value.reason, info.value.ok) == (
                1011,
                "server broke",
                False,
            )


async def test_abrupt_tcp_close_is_an_error_not_an_end() -> None:
    async def cut(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
        await stream.send(ws.send(TextMessage(data="partial result")))
        await stream.aclose()

    async with raw_server(cut) as url, connect_websocket(url) as ws:
        assert await ws.receive() == "partial result"
        with pytest.raises(WrennWebSocketClosedError) as info:
            await ws.receive()
        assert info.value.close_code == 1006


async def test_frames_glued_to_the_101_are_not_lost() -> None:
    async def idle(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
        await until_closed(stream, ws)

    glue = _frames([TextMessage(data="first"), BytesMessage(data=b"second")])
    async with raw_server(idle, glue=glue) as url, connect_websocket(url) as ws:
        assert await ws.receive() == "first"
        assert await ws.receive() == b"second"


def ConnectionType_SERVER() -> Any:
    from wsproto import ConnectionType

    return ConnectionType.SERVER


def _frames(events: list[TextMessage | BytesMessage]) -> bytes:
    """Server-side frames for ``events`` (unmasked), to send in the same write as the 101."""
    proto = FrameProtocol(client=False, extensions=[])
    return b"".join(proto.send_data(e.data, e.message_finished) for e in events)


async def test_fragments_and_pings_in_between() -> None:
    async def fragmented(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
        data = ws.send(TextMessage(data="he", message_finished=False))
        data += ws.send(Ping(payload=b"p1"))
        data += ws.send(TextMessage(data="llo", message_finished=True))
        await stream.send(data)
        for _ in range(50):  # wait for the client's pong to come back
            ws.receive_data(await stream.receive())
            if any(type(e).__name__ == "Pong" for e in ws.events()):
                break
        await stream.send(ws.send(TextMessage(data="pong seen")))
        await until_closed(stream, ws)

    async with raw_server(fragmented) as url, connect_websocket(url) as ws:
        assert await ws.receive() == "hello"
        with anyio.fail_after(5):
            assert await ws.receive() == "pong seen"


async def test_oversized_message_closes_with_1009() -> None:
    async def big(ws: Any) -> None:
        await ws.send(b"x" * 200_000)
        await anyio.sleep(1)

    with websockets_server(big) as url:
        async with connect_websocket(url, max_message_size=100_000) as ws:
            with pytest.raises(WrennWebSocketClosedError) as info:
                await ws.receive()
            assert info.value.close_code == 1009


async def test_invalid_utf8_is_a_protocol_close() -> None:
    async def bad_text(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
        await stream.send(b"\x81\x02\xff\xfe")  # a text frame that is not UTF-8
        await anyio.sleep(5)

    async with raw_server(bad_text) as url, connect_websocket(url, close_timeout=1) as ws:
        with anyio.fail_after(5), pytest.raises(WrennConnectionError) as info:
            await ws.receive()
        assert isinstance(info.value, WrennWebSocketClosedError)
        assert info.value.close_code == 1007


async def test_handshake_rejection_is_mapped_like_rest() -> None:
    def reject(connection: Any, request: Any) -> Any:
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        body = json.dumps({"error": {"code": "unauthorized", "message": "invalid API key"}})
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return Response(401, "Unauthorized", headers, body.encode())

    with websockets_server(echo, process_request=reject) as url:
        with pytest.raises(WrennAuthenticationError) as info:
            async with connect_websocket(url, headers={"X-API-Key": "wrn_secret_value"}):
                pass
        assert info.value.status_code == 401
        assert "wrn_secret_value" not in str(info.value)


async def test_backpressure_bounds_queued_memory() -> None:
    async def flood(ws: Any) -> None:
        chunk = b"z" * 65536
        for _ in range(400):  # 25 MiB
            await ws.send(chunk)
        await ws.close()

    with websockets_server(flood) as url:
        async with connect_websocket(url, max_queue=16, max_queued_bytes=256 * 1024) as ws:
            await anyio.sleep(0.5)  # the consumer sleeps; the reader must stop reading
            stats = ws.statistics()
            # documented bound: the limit plus what one 256 KiB read can complete
            assert stats.queued_bytes <= 256 * 1024 + READ_SIZE
            assert stats.queued_messages <= 16 + READ_SIZE // 65536
            assert stats.bytes_received < 2 * 1024 * 1024  # reading stopped: no 25 MiB
            total = 0
            async for message in ws:
                total += len(message)
            assert total == 400 * 65536


async def test_tls_with_a_trusted_and_an_unknown_ca() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    with websockets_server(echo, ssl_context=server_ctx) as url:
        assert url.startswith("wss://")
        async with connect_websocket(url, ssl_context=trusted) as ws:
            await ws.send_text("secure")
            assert await ws.receive() == "secure"
        with pytest.raises(WrennConnectionError, match="TLS"):
            async with connect_websocket(url):  # system trust store: unknown CA
                pass


async def test_open_timeout_and_refused_connection() -> None:
    async def never_answers(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep(10)

    async with serve_tcp(never_answers) as port:
        with pytest.raises(WrennTimeoutError):
            async with connect_websocket(f"ws://127.0.0.1:{port}", open_timeout=0.3):
                pass
    with pytest.raises(WrennConnectionError):
        async with connect_websocket(f"ws://127.0.0.1:{port}", open_timeout=2):
            pass


async def test_close_cannot_hang_on_a_silent_peer() -> None:
    async def silent(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
        await anyio.sleep(30)  # never answers the close frame

    async with raw_server(silent) as url:
        start = anyio.current_time()
        async with connect_websocket(url, close_timeout=0.3):
            pass
        assert anyio.current_time() - start < 3


async def test_body_exception_comes_out_bare_and_closes() -> None:
    with websockets_server(echo) as url:
        with pytest.raises(KeyError):
            async with connect_websocket(url) as ws:
                raise KeyError("user bug")
        assert ws.closed


async def _echo_raw(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
    await anyio.sleep(0.05)
    while True:
        ws.receive_data(await stream.receive())
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                await stream.send(ws.send(event))
            elif type(event).__name__ == "CloseConnection":
                await stream.send(ws.send(event.response()))  # type: ignore[attr-defined]
                return


@pytest.mark.parametrize("point", ["open", "receive", "send", "close"])
async def test_cancellation_anywhere_leaves_nothing_behind(point: str) -> None:
    async with raw_server(_echo_raw) as url:
        before = open_fds()
        for delay in (0.0, 0.001, 0.01, 0.05):
            with anyio.move_on_after(delay if point == "open" else 5):
                async with connect_websocket(url, close_timeout=0.5) as ws:
                    if point == "receive":
                        with anyio.move_on_after(delay):
                            await ws.receive()  # nothing comes: cancelled while waiting
                    elif point == "send":
                        with anyio.move_on_after(delay):
                            await ws.send_bytes(b"y" * 5_000_000)
                    elif point == "close":
                        await ws.send_text("bye")
            if point != "open":
                assert ws.closed
        await anyio.sleep(0.1)
        assert open_fds() <= before


async def test_breaking_out_of_iteration_leaves_nothing_to_the_gc() -> None:
    async def many(ws: Any) -> None:
        for i in range(100):
            await ws.send(str(i))
        await anyio.sleep(1)

    with websockets_server(many) as url:
        async with connect_websocket(url, close_timeout=1) as ws:
            async for message in ws:
                if message == "3":
                    break
            assert await ws.receive() == "4"  # iteration can resume where it stopped


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_literal_urls() -> None:
    async def hello(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
        await stream.send(ws.send(TextMessage(data="over v6")))
        await until_closed(stream, ws)

    async with raw_server(hello, host="::1") as url:
        assert url.startswith("ws://[::1]:")
        async with connect_websocket(url + "/path?q=1") as ws:
            assert await ws.receive() == "over v6"


async def test_tls_close_cannot_hang_on_a_peer_that_never_answers() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)

    async def mute(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
        await stream.send(ws.send(TextMessage(data="then silence")))
        await anyio.sleep(30)  # answers neither the close frame nor TLS close-notify

    async with raw_server(mute, tls=server_ctx) as url:
        start = anyio.current_time()
        async with connect_websocket(url, ssl_context=trusted, close_timeout=0.3) as ws:
            assert await ws.receive() == "then silence"
        assert anyio.current_time() - start < 3


async def test_a_cancelled_scope_closes_promptly_while_the_peer_floods() -> None:
    # The caller's cancellation also cancels the connection's reader task; the close
    # must then read the peer's close frame itself instead of waiting out close_timeout.
    from websockets.exceptions import ConnectionClosed

    async def flood(ws: Any) -> None:
        try:
            while True:
                await ws.send(b"x" * 65536)
        except ConnectionClosed:
            pass

    with websockets_server(flood) as url:
        start = anyio.current_time()
        with anyio.move_on_after(0.3):
            async with connect_websocket(url, close_timeout=5) as ws:
                async for _ in ws:
                    await anyio.sleep(0.01)  # a slow consumer: the queue is full
        assert anyio.current_time() - start < 2
        assert ws.closed
