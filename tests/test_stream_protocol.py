"""The exec-stream state machine with canned messages (no I/O)."""

from __future__ import annotations

import json

import pytest

from wrenn import (
    StreamExit,
    StreamStart,
    StreamStderr,
    StreamStdout,
    WrennAgentError,
    WrennAuthenticationError,
    WrennConnectionError,
    WrennInvalidStateError,
    WrennNotFoundError,
    WrennProtocolError,
    WrennValidationError,
)
from wrenn._protocol.exec_stream import ExecStreamProtocol


def test_a_whole_stream() -> None:
    p = ExecStreamProtocol()
    events = [
        p.receive(m)
        for m in (
            '{"type":"start","pid":7}',
            '{"type":"stdout","data":"a"}',
            "{}",
            '{"type":"stderr","data":"b"}',
            '{"type":"novel","x":1}',
            '{"type":"stdout"}',
            '{"type":"exit","exit_code":3}',
            '{"type":"stdout","data":"late"}',
        )
    ]
    assert events == [
        StreamStart(7),
        StreamStdout("a"),
        None,
        StreamStderr("b"),
        None,
        StreamStdout(""),
        StreamExit(3),
        None,
    ]
    assert (p.pid, p.exit_code) == (7, 3)
    p.ended(1006)  # after exit any close is fine
    # a binary message on a JSON stream is output it would drop: an error, as for the
    # official SDK (its receive_json); see also tests/test_binary_hostile.py
    q = ExecStreamProtocol()
    q.receive('{"type":"start","pid":7}')
    with pytest.raises(WrennProtocolError, match="binary output subprotocol"):
        q.receive(b"\x00binary")


@pytest.mark.parametrize("close", [1000, 1006, None])
def test_ending_before_exit_is_an_error(close: int | None) -> None:
    p = ExecStreamProtocol()
    p.receive('{"type":"start"}')
    with pytest.raises(WrennConnectionError, match="before the process exited"):
        p.ended(close)


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        ("authentication failed", WrennAuthenticationError),
        ("sandbox not found", WrennNotFoundError),
        ("process not found", WrennNotFoundError),
        ("sandbox is not running (status: paused)", WrennInvalidStateError),
        ("first message must be type 'start' with a 'cmd' field", WrennValidationError),
        ("failed to start exec stream: boom", WrennAgentError),
    ],
)
def test_in_band_errors_are_typed(data: str, cls: type[Exception]) -> None:
    p = ExecStreamProtocol()
    with pytest.raises(cls):
        p.receive(json.dumps({"type": "error", "data": data}))


def test_bad_frames() -> None:
    with pytest.raises(WrennProtocolError):
        ExecStreamProtocol().receive("{not json")
    p = ExecStreamProtocol()
    assert p.receive('{"type":"exit","exit_code":"x"}') == StreamExit(-1)
