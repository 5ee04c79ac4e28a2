"""A hostile or buggy server on an exec/attach stream: malformed binary output messages
end the stream with a clear :class:`WrennProtocolError` (never a silent loss of output, a
crash or a hang), and a client that leaves mid-stream closes its socket.

The peer is the `websockets` library's server (tests/wspeers.py) on a real loopback
socket: wrenn_local cannot be made to send these frames, which is why it is not used."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from tests.wspeers import websockets_server
from wrenn import AsyncWrennClient, StreamStart, StreamStdout, WrennError, WrennProtocolError
from wrenn._protocol.exec_stream import BINARY_OUTPUT

START = '{"type":"start","pid":7}'
EXIT = '{"type":"exit","exit_code":0}'


def _script(bad: bytes) -> Any:
    async def handler(ws: Any) -> None:
        await ws.send(START)
        await ws.send(b"\x01ok")
        await ws.send(bad)
        await ws.send(b"\x01lost")
        await ws.send(EXIT)
        await ws.wait_closed()

    return handler


@pytest.mark.parametrize(
    ("bad", "negotiated", "says"),
    [
        (b"", True, "empty binary message"),
        (b"\x09data", True, "tagged 9"),
        (b"\x00data", True, "tagged 0"),
        (b"\x01data", False, "without the binary output subprotocol"),
    ],
)
async def test_malformed_binary_message_is_a_clear_error(
    bad: bytes, negotiated: bool, says: str
) -> None:
    offered = [BINARY_OUTPUT] if negotiated else None
    with websockets_server(_script(bad), subprotocols=offered) as url:
        base = url.replace("ws://", "http://")
        async with AsyncWrennClient(api_key="wrn_" + "k" * 32, base_url=base) as client:
            seen: list[Any] = []
            with anyio.fail_after(10), pytest.raises(WrennProtocolError) as caught:
                async with client.processes.attach("cl-x", 7) as stream:
                    assert stream.binary_frames is negotiated
                    async for event in stream:  # each kept, up to the error
                        seen.append(event)  # noqa: PERF401
    assert says in str(caught.value)
    assert isinstance(caught.value, WrennError)
    assert isinstance(seen[0], StreamStart)
    # what came before the bad message arrived; nothing after it is taken as output
    if negotiated:
        assert seen[1:] == [StreamStdout("ok", raw=b"ok")]
    else:  # the first binary message is already the error
        assert seen[1:] == []


async def test_leaving_mid_stream_closes_the_socket() -> None:
    closed = threading.Event()

    async def endless(ws: Any) -> None:
        await ws.send(START)
        try:
            while True:
                await ws.send(b"\x01" + b"x" * 4096)
        except Exception:  # the client went away: the send fails
            pass
        finally:
            await ws.wait_closed()
            closed.set()

    with websockets_server(endless, subprotocols=[BINARY_OUTPUT]) as url:
        base = url.replace("ws://", "http://")
        async with AsyncWrennClient(api_key="wrn_" + "k" * 32, base_url=base) as client:
            got = 0
            with anyio.move_on_after(30) as scope:
                async with client.processes.attach("cl-x", 7) as stream:
                    async for event in stream:
                        if isinstance(event, StreamStdout):
                            got += 1
                            if got == 20:  # once
                                scope.cancel()  # cancelled mid-stream, not at a boundary
            assert scope.cancel_called
            assert got >= 20  # events already queued may still come before the cancel
            # the server sees the connection end while the client is still open
            with anyio.fail_after(10):
                while not closed.is_set():
                    await anyio.sleep(0.02)
