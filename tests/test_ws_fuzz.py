"""Hypothesis drives what a server sends; our client must never hang, never raise a
foreign exception, and never report a clean end it did not see."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import WSConnection
from wsproto.frame_protocol import FrameProtocol

from tests.wspeers import raw_server
from wrenn import WrennError, WrennWebSocketClosedError
from wrenn._transport.websocket import connect_websocket

MAX = 4096

text = st.text(max_size=64)
binary = st.binary(max_size=64)
action = st.one_of(
    st.tuples(st.just("text"), text, st.integers(1, 3)),
    st.tuples(st.just("bytes"), binary, st.integers(1, 3)),
    st.tuples(st.just("ping"), st.binary(max_size=8), st.just(1)),
    st.tuples(st.just("bad_utf8"), st.just(b"\xff\xfe"), st.just(1)),
    st.tuples(st.just("oversize"), st.just(b""), st.just(1)),
)
close_code = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 3000, 4999])


def encode(actions: list[tuple[str, Any, int]], code: int | None) -> tuple[bytes, list[Any], bool]:
    """Server bytes, the messages a client should get before any error, and whether the
    stream is well-formed enough that a clean close must be seen as one."""
    proto = FrameProtocol(client=False, extensions=[])
    out = b""
    expected: list[Any] = []
    clean = True
    for kind, payload, pieces in actions:
        if kind in ("text", "bytes"):
            size = max(1, len(payload) // pieces) if payload else 1
            parts = [payload[i : i + size] for i in range(0, len(payload), size)] or [payload]
            for index, part in enumerate(parts):
                out += proto.send_data(part, index == len(parts) - 1)
            if clean:
                expected.append(payload)
        elif kind == "ping":
            out += proto.ping(payload)
        elif kind == "bad_utf8":
            out += b"\x81\x02" + payload
            clean = False
        elif kind == "oversize":
            out += proto.send_data(b"o" * (MAX + 1), True)
            clean = False
    if code is not None:
        out += proto.close(code, "bye")
    return out, expected, clean


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    actions=st.lists(action, max_size=6),
    code=st.one_of(st.none(), close_code),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
async def test_client_survives_whatever_the_server_sends(
    actions: list[tuple[str, Any, int]], code: int | None, cut: int | None
) -> None:
    data, expected, clean = encode(actions, code)
    truncated = data if cut is None else data[:cut]

    async def script(stream: anyio.abc.SocketStream, ws: WSConnection) -> None:
        if truncated:
            await stream.send(truncated)
        if cut is not None or code is None:
            return  # the TCP connection drops here, with or without a close frame
        with anyio.move_on_after(2):
            while True:
                try:
                    await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return

    got: list[Any] = []
    outcome: BaseException | None = None
    async with raw_server(script) as url:
        with anyio.fail_after(10):
            try:
                async with connect_websocket(url, max_message_size=MAX, close_timeout=1) as ws:
                    async for message in ws:
                        got.append(message)  # noqa: PERF401 - kept when an error ends it
            except WrennError as exc:
                outcome = exc
    full = cut is None or cut >= len(data)
    if full and clean and code in (1000, 1001):
        assert outcome is None, outcome  # a clean close seen is a clean end
        assert got == expected
    if not full or code is None:
        # the close frame never arrived: that must be an error, never a clean end
        assert isinstance(outcome, WrennError), (got, outcome)
    if isinstance(outcome, WrennWebSocketClosedError) and code is None and clean:
        assert not outcome.ok
    assert got == expected[: len(got)]  # whatever arrived, arrived intact and in order
