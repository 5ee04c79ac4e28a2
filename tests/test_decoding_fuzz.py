"""Hypothesis over everything that decodes what a server sends: whatever arrives, the
SDK answers with data or a WrennError — never a foreign exception, never a hang.

Covered: the model converter (random JSON, and valid answers with fields replaced by
random JSON), error bodies, the exec stream protocol, the Jupyter cell reader, the SSE
parser and the exec REST answer. (WebSocket frames are fuzzed in test_ws_fuzz.py.)
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wrenn import WrennError, models
from wrenn._exceptions import error_from_response
from wrenn._protocol.exec_stream import ExecStreamProtocol
from wrenn._protocol.jupyter import CellReader
from wrenn._protocol.sse import SSEParser
from wrenn._resources.converter import structure, structure_list
from wrenn._resources.processes import decode_output

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["running", "2026-01-01T00:00:00Z", "not-a-date", "", "cl-" + "a" * 25]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)

MODELS = [cls for name in models.__all__ if attrs.has(cls := getattr(models, name))]

VALID: dict[str, dict[str, Any]] = {
    "Capsule": {
        "id": "cl-" + "a" * 25,
        "status": "running",
        "template": "minimal",
        "vcpus": 1,
        "memory_mb": 512,
        "timeout_sec": 0,
        "created_at": "2026-01-01T00:00:00Z",
        "metadata": {"k": "v"},
    },
    "FileEntry": {"name": "a", "path": "/a", "type": "file", "size": 1},
    "ProcessInfo": {"pid": 1, "tag": "t", "cmd": "sh", "args": []},
}


def attempt(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except WrennError:
        pass


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=json_values)
def test_any_json_into_any_model(cls: type, data: Any) -> None:
    attempt(structure, data, cls)
    attempt(structure_list, data, cls)


@pytest.mark.parametrize("name", sorted(VALID))
@settings(max_examples=80, deadline=None)
@given(field=st.text(max_size=12), value=json_values, drop=st.booleans())
def test_valid_answers_with_one_field_spoiled(
    name: str, field: str, value: Any, drop: bool
) -> None:
    body = dict(VALID[name])
    key = sorted(body)[sum(map(ord, field)) % len(body)] if drop or not field else field
    if drop:
        body.pop(key)
    else:
        body[key] = value
    attempt(structure, body, getattr(models, name))


def test_the_valid_samples_are_valid() -> None:
    for name, body in VALID.items():
        structure(body, getattr(models, name))  # the spoiled tests start from real answers


@settings(max_examples=150, deadline=None)
@given(
    status=st.integers(100, 599),
    body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())),
)
def test_any_error_body(status: int, body: bytes) -> None:
    error = error_from_response(status, body, retry_after=None, context="GET /x")
    assert isinstance(error, WrennError)
    assert str(error)


frames = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=50),
    st.binary(max_size=50),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["start", "stdout", "stderr", "exit", "error", "x"])},
        optional={
            "data": json_values,
            "pid": json_values,
            "exit_code": json_values,
            "message": json_values,
            "fatal": json_values,
        },
    ).map(json.dumps),
)


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(frames, max_size=12), close=st.one_of(st.none(), st.integers(1000, 4999)))
def test_any_exec_stream(messages: list[str | bytes], close: int | None) -> None:
    protocol = ExecStreamProtocol()
    for message in messages:
        try:
            protocol.receive(message)
        except WrennError:
            return  # an error ends the stream: the SDK raises it to the caller
    try:
        protocol.ended(close, "")
    except WrennError:
        return
    # ending without an error is only allowed after a real exit
    assert protocol.exit_code is not None


kernel_frames = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=40),
    st.fixed_dictionaries(
        {
            "parent_header": st.just({"msg_id": "m"}) | json_values,
            "msg_type": st.sampled_from(
                [
                    "stream",
                    "execute_result",
                    "display_data",
                    "error",
                    "status",
                    "execute_input",
                    "execute_reply",
                ]
            ),
            "content": json_values,
        },
        optional={"header": json_values, "channel": json_values},
    ).map(json.dumps),
)


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(kernel_frames, max_size=12))
def test_any_kernel_messages(messages: list[str]) -> None:
    reader = CellReader("m")
    for message in messages:
        try:
            reader.feed(message)
        except WrennError:
            return


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=80) | st.text(max_size=80).map(str.encode), max_size=10))
def test_any_event_stream_bytes(chunks: list[bytes]) -> None:
    parser = SSEParser(max_line=256)
    for chunk in chunks:
        try:
            list(parser.feed(chunk))
        except WrennError:
            return


@settings(max_examples=150, deadline=None)
@given(data=json_values)
def test_any_exec_answer(data: Any) -> None:
    attempt(decode_output, data)
