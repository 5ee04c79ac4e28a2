from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wrenn import WrennProtocolError
from wrenn._protocol.sse import SSEMessage, SSEParser

STREAM = (
    b": keepalive\n\n"
    b"event: capsule.state.changed\n"
    b'data: {"a":\n'
    b"data: 1}\n"
    b"id: 7\n"
    b"\n"
    b"data:no-space\r\n\r\n"
    b"data: cr-only\r\r"
    b"retry: 3000\n"
    b"data: last\n\n"
)
EXPECTED = [
    SSEMessage(data='{"a":\n1}', event="capsule.state.changed", id="7"),
    SSEMessage(data="no-space", id="7"),
    SSEMessage(data="cr-only", id="7"),
    SSEMessage(data="last", id="7", retry_ms=3000),
]


def test_whole_stream() -> None:
    assert SSEParser().feed(STREAM) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    parser = SSEParser()
    out: list[SSEMessage] = []
    bounds = [0, *sorted(cuts), len(STREAM)]
    for a, b in itertools.pairwise(bounds):
        out += parser.feed(STREAM[a:b])
    assert out == EXPECTED


def test_comment_only_and_empty_messages_do_not_dispatch() -> None:
    assert SSEParser().feed(b": ping\n\n\n\nevent: x\n\n") == []


def test_overlong_line_is_an_error() -> None:
    parser = SSEParser(max_line=16)
    with pytest.raises(WrennProtocolError):
        parser.feed(b"data: " + b"x" * 64)
