"""Exec-stream frames decode to the same events with orjson (the ``fast`` extra) and with
the stdlib codec, including what only the stdlib accepts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wrenn import StreamStderr, StreamStdout, WrennProtocolError
from wrenn._models.streams import StreamEvent
from wrenn._protocol import exec_stream
from wrenn._protocol.exec_stream import ExecStreamProtocol

orjson = pytest.importorskip("orjson")


def events(messages: list[str]) -> list[StreamEvent | None]:
    protocol = ExecStreamProtocol()
    return [protocol.receive(message) for message in messages]


def both(messages: list[str], monkeypatch: pytest.MonkeyPatch) -> list[StreamEvent | None]:
    assert vars(exec_stream)["_orjson"] is orjson  # installed, so used
    fast = events(messages)
    with monkeypatch.context() as patched:
        patched.setattr(exec_stream, "_orjson", None)
        plain = events(messages)
    assert fast == plain
    return fast


TRICKY = [
    'quote " backslash \\ slash / tab \t nul \x00 bell \x07',
    "\\u0041 is not an escape here",
    "unicode ✓ 日本語 🎉",
    "y\n" * 40_000,
    "",
]


def test_tricky_output_decodes_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = ['{"type": "start", "pid": 7}']
    messages += [json.dumps({"type": "stdout", "data": text}) for text in TRICKY]
    messages += ['{"type":"stderr","data":"compact \\"form\\""}']
    messages += ['{"type": "exit", "exit_code": 3}']
    got = both(messages, monkeypatch)
    assert got[1:6] == [StreamStdout(text) for text in TRICKY]
    assert got[6] == StreamStderr('compact "form"')


def test_what_only_the_stdlib_accepts_still_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    # a lone surrogate escape: orjson refuses it, json (and the server's encoder) do not
    message = '{"type": "stdout", "data": "a\\udcff\\ud800"}'
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(message)
    assert both(['{"type": "start"}', message], monkeypatch)[1] == StreamStdout("a\udcff\ud800")


@pytest.mark.parametrize("codec", ["orjson", "json"])
def test_a_frame_that_is_not_json_is_a_protocol_error(
    codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if codec == "json":
        monkeypatch.setattr(exec_stream, "_orjson", None)
    protocol = ExecStreamProtocol()
    protocol.receive('{"type": "start"}')
    with pytest.raises(WrennProtocolError, match="not JSON"):
        protocol.receive('{"type": "stdout", "data": "cut')


@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_any_text_decodes_the_same(text: str) -> None:
    message = json.dumps({"type": "stdout", "data": text})
    assert exec_stream.decode_frame(message) == json.loads(message)
